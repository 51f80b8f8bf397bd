#!/usr/bin/env bash
# Runs every test (unit and integration, against the real stack) and prints the failures
# and a summary line. Integration tests start their own stack on free loopback ports
# (internal/testharness/stacktest); with CI=true a stack that cannot start fails them, never skips.
# Fuzzing for new inputs is not part of it: `make fuzz` (deploy/scripts/gofuzz.sh), which CI
# runs after it. The tests run each target's checked-in corpus and seeds.
#
#   deploy/scripts/gotest.sh              # everything, with the chart's and Prometheus checks
#   deploy/scripts/gotest.sh --fuzz       # the fuzz targets only, in the same report form
#   deploy/scripts/gotest.sh ./apps/...   # some packages
set -euo pipefail
cd "$(dirname "$0")/../.."
# The compiler and the test processes collect garbage less often: a cold cache's test builds
# (the Helm chart's checks compile Helm and the Kubernetes API types) take about a quarter less
# CPU. The stack's processes (apps, daprd, Redis, ...) do not inherit it (stacktest drops GOGC
# from their environment): they run as they do in production.
export GOGC="${TASKGRID_BUILD_GOGC:-400}"
mkdir -p .run
go build -o bin/testreport ./deploy/testreport
# Three packages at a time (TASKGRID_TEST_P): a real-stack package mostly waits (for a lease
# to lapse, a killed process to come back, a trigger), so two of them kept 1.2 of the 2
# cores busy; with three the warm suite took 148 s instead of 182 (fuzzing aside), four
# gained 11 s more. Each stack runs on ports of its own.
# Without arguments, the real-stack packages (internal/e2e/...) go first, the longest of
# the last run first (alphabetically when there was none): go test starts packages in the
# order it is given them, and a package of a minute started last ran alone at the end.
fuzz="" whole="" report=.run/test.json
if [ "${1:-}" = --fuzz ]; then
  fuzz=1 report=.run/fuzz.json
  shift
elif [ $# -eq 0 ]; then
  all=$(go list ./...)
  last=""
  [ ! -f .run/test.json ] || last=$(sed -n 's/.*"Action":"\(pass\|fail\)","Package":"\([^"]*\)","Elapsed":\([0-9.]*\)}$/\3 \2/p' .run/test.json)
  e2e=$(grep '/internal/e2e' <<<"$all" | while read -r p; do
    echo "$(awk -v p="$p" '$2 == p { t = $1 } END { print t + 0 }' <<<"$last") $p"
  done | sort -k1,1nr -k2 | cut -d' ' -f2)
  set -- $e2e $(grep -v '/internal/e2e' <<<"$all")
  whole=1
fi
# On a fresh machine the modules the tests import are not downloaded yet (the chart's checks
# alone need Helm's and the Kubernetes client's, about 150). The go command fetches as many at
# once as its GOMAXPROCS, two here, and only when it reaches a module's tests; so they are
# fetched in the background from the start, sixteen at a time, while the product's tests
# compile and run (the chart's modules: 9 s at two at a time, 5 s at sixteen, on an idle
# machine). Nothing is fetched when they are there already (0.6 s of listing). go test reports
# any download error itself.
set +e
(
  # Fuzzing, each target for a bounded time (FUZZTIME): it looks for new failing inputs.
  [ -z "$fuzz" ] || exec deploy/scripts/gofuzz.sh
  prefetch=""
  if [ -n "$whole" ]; then
    (for m in . deploy/kubernetes deploy/prometheus deploy/daprd; do
       (cd "$m" && GOMAXPROCS=16 nice go list -deps -test ./...) || true
     done) >/dev/null 2>&1 &
    prefetch=$!
  fi
  # With the race detector: the tests' own goroutines (the apps' logic under unit tests,
  # the harness under the real-stack ones) are checked for data races; the stack's
  # processes are the binaries make build made, without it.
  go test -json -count=1 -race -p "${TASKGRID_TEST_P:-3}" -timeout 40m "$@" 2>&1
  root=$?
  others=0
  if [ -n "${whole:-}" ]; then
    wait "$prefetch" 2>/dev/null
    # Modules of their own, in the same report: the Kubernetes chart's offline checks (Helm
    # and the Kubernetes API types stay out of the product's go.mod), the Prometheus
    # config, rules and dashboard checks (promtool, the PromQL parser), and daprd's name
    # resolver.
    # The chart's checks compile Helm's engine, which imports the Kubernetes client and every
    # API group: those compile without optimisation (-N -l), as in the runtime's build
    # (deploy/scripts/install-dapr.sh); they render a few templates.
    (cd deploy/kubernetes && go test -json -count=1 -timeout 20m \
      "-gcflags=k8s.io/...=-N -l -dwarf=false" "-gcflags=sigs.k8s.io/...=-N -l -dwarf=false" ./... 2>&1) || others=$?
    (cd deploy/prometheus && go test -json -count=1 -timeout 20m ./... 2>&1) || others=$?
    # The project's name resolver, compiled into daprd (deploy/daprd): its module requires
    # the components-contrib the runtime does, which the product's go.mod does not carry.
    (cd deploy/daprd && go test -json -count=1 -timeout 10m ./... 2>&1) || others=$?
  fi
  [ "$root" -eq 0 ] || exit "$root"
  exit "$others"
) | tee "$report" | bin/testreport
statuses=("${PIPESTATUS[@]}")
set -e
# Either failing fails the run: go test's own statuses catch what the report cannot see.
[ "${statuses[0]}" -eq 0 ] || exit "${statuses[0]}"
exit "${statuses[2]}"
