# taskgrid: `make run` runs the whole system locally, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

include deploy/versions.env
RUN_DIR  ?= $(CURDIR)/.run
BIN_DIR  := $(CURDIR)/bin
APPS     := gateway worker storekeeper
# Exported to scripts, dapr run and daprd: the one place local addresses are set.
LOCAL_ENV := set -a && source deploy/local.env && set +a
export RUN_DIR BIN_DIR

# The go command for builds: the compiler with a higher GOGC takes about a quarter less CPU on a
# cold cache (see deploy/scripts/install-dapr.sh). Not for go test: the tests' processes would
# inherit it.
BUILD_GO := GOGC=$${TASKGRID_BUILD_GOGC:-400} go
# Every go command of the recipes (builds, tests, the bench) compiles as the Dapr runtime's build
# does (deploy/scripts/install-dapr.sh): without DWARF, which takes about a tenth less CPU on a
# cold cache (stack traces and profiles do not need it; a debugger does: `make build GOFLAGS=`),
# and with -trimpath. The same flags make the same packages: on a fresh machine the runtime's
# compile then takes the 200-odd standard library packages the apps' build (beside it) has just
# compiled, instead of compiling them again; and the tests' builds take what make build compiled.
export GOFLAGS := $(strip $(GOFLAGS) -trimpath -gcflags=all=-dwarf=false)
GO_SOURCES := $(shell find apps analytics internal deploy -name '*.go' -not -name '*_test.go' 2>/dev/null) go.mod go.sum

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: check-go
check-go:
	@deploy/scripts/check-go.sh

.PHONY: deps
deps: check-go ## install Redis, MariaDB, Prometheus (Debian packages) and build the Dapr runtime once, side by side
	@deploy/scripts/install-services.sh & services=$$!; \
	  deploy/scripts/install-dapr.sh >/dev/null; dapr=$$?; \
	  wait $$services || exit 1; exit $$dapr

.PHONY: test-deps
test-deps: deps ## also install Chromium (Debian package) for the browser test
	@deploy/scripts/install-services.sh --browser

.PHONY: build
build: check-go $(BIN_DIR)/.built ## build the apps and the local Kafka broker into bin/

$(BIN_DIR)/.built: $(GO_SOURCES)
	@mkdir -p $(BIN_DIR)
	$(BUILD_GO) build -o $(BIN_DIR)/ ./apps/gateway ./apps/worker ./apps/storekeeper ./analytics
	$(BUILD_GO) build -o $(BIN_DIR)/kafka-broker ./deploy/kafka
	$(BUILD_GO) build -o $(BIN_DIR)/taskgrid-run ./deploy/run
	@touch $@

# deps and build at once: the apps compile while the Dapr runtime downloads its modules and
# compiles (its links are single-threaded, so two builds keep both cores busy). Downloading
# the runtime's modules first, with the apps' build after it, was tried: the download is
# faster alone (38-45 s against 53-65 s), but the CPU idles meanwhile, and the whole took
# longer (537 and 558 s against 487 s).
.PHONY: prepare
prepare: check-go
	@$(MAKE) --no-print-directory -j2 deps build

.PHONY: up
up: prepare ## start the infrastructure only (Redis, MariaDB, Kafka broker, placement, scheduler)
	@$(LOCAL_ENV) && DAPR_BIN=$$(deploy/scripts/install-dapr.sh)/.dapr/bin deploy/scripts/up.sh

# What `make run` and `make run-cli` export before starting the apps: deploy/local.env,
# the tokens, Sentry's root and address, the runtime.
RUN_ENV = $(LOCAL_ENV) && tokens=$$(deploy/scripts/tokens.sh) && set -a && source "$$tokens" && set +a && \
	  export DAPR_TRUST_ANCHORS="$$(cat $(RUN_DIR)/data/sentry/ca.crt)" && \
	  export DAPR_SENTRY_ADDRESS=127.0.0.1:$$TASKGRID_SENTRY_PORT && \
	  export DAPR_RUNTIME_PATH=$$(deploy/scripts/install-dapr.sh $(1)) && \
	  mkdir -p $(RUN_DIR)/results && echo $$$$ > $(RUN_DIR)/pids/dapr-run.pid && \
	  echo "taskgrid: gateway on http://127.0.0.1:8080 (logs: .dapr/logs/ and $(RUN_DIR)/logs/)"

.PHONY: run
run: up ## run the whole system in the foreground (Ctrl-C stops the apps; `make down` stops everything)
	@deploy/scripts/preflight.sh
	@$(call RUN_ENV) && exec $(BIN_DIR)/taskgrid-run -f dapr.yaml -pid-dir $(RUN_DIR)/pids

.PHONY: run-cli
run-cli: up ## the same with the dapr CLI, `dapr run -f dapr.yaml` (compiles the CLI the first time: minutes)
	@deploy/scripts/preflight.sh
	@$(call RUN_ENV,--cli) && exec $$DAPR_RUNTIME_PATH/.dapr/bin/dapr run -f dapr.yaml

.PHONY: down
down: ## stop exactly what `make run` started, by PID
	@deploy/scripts/down.sh

# What make test and make bench export for the stacks they start: deploy/local.env, the
# runtime, and the apps they have just built into bin/ (stacktest.AppBinEnv).
STACK_ENV = $(LOCAL_ENV) && export TASKGRID_DAPR_BIN=$$(deploy/scripts/install-dapr.sh)/.dapr/bin TASKGRID_APP_BIN=$(BIN_DIR)

.PHONY: test
test: test-deps build ## unit and integration tests against the real stack (prints go test's summary)
	@$(STACK_ENV) && deploy/scripts/gotest.sh

.PHONY: fuzz
fuzz: check-go ## fuzz each target for FUZZTIME (8s each) for new failing inputs; CI runs it after make test
	@deploy/scripts/gotest.sh --fuzz

.PHONY: test-short
test-short: ## unit tests only (no real stack)
	go test -short -count=1 ./...

.PHONY: bench
bench: deps build ## benchmarks of the whole system and the River peer (see README); BENCH_ARGS=-quick for a short run
	@deploy/scripts/install-services.sh --bench
	@$(STACK_ENV) && deploy/scripts/bench.sh

.PHONY: clean
clean: down ## stop everything and delete bin/ and .run/ (local data)
	rm -rf $(BIN_DIR) $(RUN_DIR) .dapr
