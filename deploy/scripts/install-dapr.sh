#!/usr/bin/env bash
# Builds daprd, placement, scheduler, sentry (runtime v$DAPR_RUNTIME_VERSION) and, with --cli, the
# dapr CLI (v$DAPR_CLI_VERSION) from the Go module proxy into a cache, once, and prints the runtime
# root (the directory holding .dapr/bin) on stdout.
#
# The CLI is only for `make run-cli` (`dapr run -f dapr.yaml`): `make run` starts the apps and
# sidecars with deploy/run, and the CLI's 1,400 packages (Kubernetes and Helm clients) would
# add minutes to a fresh machine's first run.
#
# daprd gets only the components listed in deploy/dapr-components.txt (the ones components/*.yaml
# and components/config.yaml use), not `-tags allcomponents` with every cloud SDK Dapr supports:
# daprd's components register themselves in cmd/daprd/components/<kind>_<name>.go, one file each
# behind build tags, so the build runs in a writable copy of the runtime's module (the module cache is
# read-only; go build -overlay refuses files there) whose components directory holds the listed files
# alone, their build tags dropped. A listed component of the project's own (its name resolver,
# deploy/daprd) has its registration file in deploy/daprd/registration and its package copied
# into the copy's pkg/taskgrid. The cache directory's name carries a hash of the list and of
# those sources, so a changed list or component builds a new daprd.
#
# Progress is one line a step with its elapsed time; the go command's own output goes to a log
# file, whose path is printed on failure. A runtime installed by `dapr init` in $HOME/.dapr/bin
# (all components) is reused when its version matches and nothing was built here yet.
set -euo pipefail
want_cli=""
case "${1:-}" in
  --cli) want_cli=1 ;;
  "") ;;
  *) echo "usage: install-dapr.sh [--cli]" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../versions.env
source "$here/../versions.env"

log() { echo "install-dapr: $*" >&2; }

cache=${TASKGRID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskgrid}
list_file="$here/../dapr-components.txt"
components=$({ sed -e 's/#.*//' -e 's/[[:space:]]//g' "$list_file" | grep -v '^$' || true; } | LC_ALL=C sort -u)
[ -n "$components" ] || { log "no components listed in $list_file"; exit 1; }
own="$here/../daprd" # the project's own components: registration/, and a package a directory
own_sources() { # what goes into daprd from $own, in a stable order (the hash, and make_tree's copy)
  (cd "$own" && find registration -name '*.go' && find . -mindepth 2 -name '*.go' ! -name '*_test.go' ! -path './registration/*') | LC_ALL=C sort
}
hash=$({ printf '%s\n' "$components"; own_sources | while read -r f; do echo "$f"; cat "$own/$f"; done; } | sha256sum | cut -c1-8)
slim_root="$cache/dapr-$DAPR_RUNTIME_VERSION-slim-$hash-cli-$DAPR_CLI_VERSION"
init_root="$cache/dapr-$DAPR_RUNTIME_VERSION-init-cli-$DAPR_CLI_VERSION"

have_version() { # binary wanted-version
  [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$2"
}
# What a finished build writes to $slim_root/ready: the fast path reads it instead of running
# `daprd --version` (about 0.15 s of CPU, and make run asks three times).
stamp="daprd $DAPR_RUNTIME_VERSION cli $DAPR_CLI_VERSION components $hash"
ready() { # root: every binary is there
  local b
  for b in daprd placement scheduler sentry ${want_cli:+dapr}; do [ -x "$1/.dapr/bin/$b" ] || return 1; done
  [ "$1" = "$slim_root" ] && [ "$(cat "$1/ready" 2>/dev/null)" = "$stamp" ] && return 0
  have_version "$1/.dapr/bin/daprd" "$DAPR_RUNTIME_VERSION" || return 1
  [ "$1" != "$slim_root" ] || echo "$stamp" >"$1/ready" 2>/dev/null || true
}

# Fast path: already built (TASKGRID_FORCE_BUILD=1: never use a runtime from `dapr init`).
if ready "$slim_root"; then echo "$slim_root"; exit 0; fi
if [ -z "${TASKGRID_FORCE_BUILD:-}" ] && ready "$init_root"; then echo "$init_root"; exit 0; fi

root=$slim_root
# Reuse a runtime that `dapr init` installed, when it is the pinned version (sentry is built).
if [ -z "${TASKGRID_FORCE_BUILD:-}" ] && have_version "$HOME/.dapr/bin/daprd" "$DAPR_RUNTIME_VERSION" \
  && [ -x "$HOME/.dapr/bin/placement" ] && [ -x "$HOME/.dapr/bin/scheduler" ] \
  && command -v dapr >/dev/null && dapr --version 2>/dev/null | grep -q "CLI version: $DAPR_CLI_VERSION"; then
  root=$init_root
  mkdir -p "$root/.dapr/bin"
  for b in daprd placement scheduler; do ln -sf "$HOME/.dapr/bin/$b" "$root/.dapr/bin/$b"; done
  ln -sf "$(command -v dapr)" "$root/.dapr/bin/dapr"
fi
bin="$root/.dapr/bin"

command -v go >/dev/null || { log "Go is not installed (need go >= $GO_MIN_VERSION)"; exit 1; }
mkdir -p "$bin"
logf="$root/install.log"
: >"$logf"
work=$(mktemp -d "$root/.build.XXXXXX")
ticker_pid=""
cleanup() {
  if [ -n "$ticker_pid" ]; then kill "$ticker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export GOFLAGS=-mod=mod

runtime_bins=()
for b in daprd placement scheduler sentry; do
  if [ "$b" = daprd ]; then have_version "$bin/daprd" "$DAPR_RUNTIME_VERSION" || runtime_bins+=(daprd)
  elif [ ! -x "$bin/$b" ]; then runtime_bins+=("$b"); fi
done
need_cli=""
[ -z "$want_cli" ] || [ -x "$bin/dapr" ] || need_cli=1

t_all=$SECONDS
nstep=0
total=2
[ ${#runtime_bins[@]} -eq 0 ] || total=$((total + 1))
[ -z "$need_cli" ] || total=$((total + 1))
fmt() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
# ticker TITLE: a line every 30 s while a long step runs (killed with its sleep when the step ends).
ticker() {
  local s="" e=0
  trap '[ -n "$s" ] && kill "$s" 2>/dev/null; exit 0' TERM
  while :; do
    sleep 30 & s=$!
    wait "$s"
    e=$((e + 30))
    log "      ... still $1 ($(fmt "$e"))"
  done
}
# step TITLE CMD...: run CMD with its output in the log file, print the step and its time.
step() {
  local title=$1 t0=$SECONDS rc
  shift
  nstep=$((nstep + 1))
  log "[$nstep/$total] $title"
  echo "=== $title" >>"$logf"
  ticker "$title" >/dev/null &
  ticker_pid=$!
  set +e
  ("$@") >>"$logf" 2>&1
  rc=$?
  set -e
  kill "$ticker_pid" 2>/dev/null || true
  wait "$ticker_pid" 2>/dev/null || true
  ticker_pid=""
  if [ "$rc" -ne 0 ]; then
    log "failed: $title (after $(fmt $((SECONDS - t0)))); the last lines of the log:"
    tail -n 15 "$logf" | sed 's/^/    /' >&2
    log "full log: $logf"
    exit "$rc"
  fi
  log "      done in $(fmt $((SECONDS - t0)))"
}

moddir() { # module@version: its directory in the module cache (downloaded when missing)
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

fetch_sources() {
  if [ ${#runtime_bins[@]} -gt 0 ]; then
    moddir "github.com/dapr/dapr@v$DAPR_RUNTIME_VERSION" >"$work/dapr.dir"
    [ -s "$work/dapr.dir" ] || { echo "could not download github.com/dapr/dapr@v$DAPR_RUNTIME_VERSION"; return 1; }
  fi
  if [ -n "$need_cli" ]; then
    moddir "github.com/dapr/cli@v$DAPR_CLI_VERSION" >"$work/cli.dir"
    [ -s "$work/cli.dir" ] || { echo "could not download github.com/dapr/cli@v$DAPR_CLI_VERSION"; return 1; }
  fi
}

# The runtime's source tree, writable (the module cache is read-only): every registration file in
# cmd/daprd/components is deleted except the listed ones, whose build constraint is dropped;
# zz_notag.go (which panics when no tag is given) goes too. A listed component without a
# registration file fails the build.
make_tree() {
  local src=$1 dst="$work/dapr" regs c f missing=()
  cp -R "$src" "$dst"
  chmod -R u+w "$dst"
  regs="$dst/cmd/daprd/components"
  mkdir "$work/regs"
  for c in $components; do
    f="$regs/${c//./_}.go"
    [ -f "$own/registration/${c//./_}.go" ] && f="$own/registration/${c//./_}.go"
    if [ -f "$f" ]; then
      sed '/^\/\/go:build /d' "$f" >"$work/regs/$(basename "$f")"
    else
      missing+=("$c")
    fi
  done
  while read -r f; do # the packages of $own, as the hash saw them
    case $f in registration/*) continue ;; esac
    f=${f#./}
    mkdir -p "$dst/pkg/taskgrid/$(dirname "$f")"
    cp "$own/$f" "$dst/pkg/taskgrid/$f"
  done < <(own_sources)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "no registration in $src/cmd/daprd/components for: ${missing[*]} (see deploy/dapr-components.txt; files are named <kind>_<name>.go)"
    return 1
  fi
  rm -f "$regs"/*.go
  mv "$work/regs"/*.go "$regs/"
  echo "daprd components: $(cd "$regs" && echo *.go)"
  echo "$dst" >"$work/dapr.dir"
}

# The go command fetches as many modules at once as its GOMAXPROCS: two here. Downloading is
# waiting on the network more than computing, so the listing runs with 16: the runtime's 171
# modules took 21 s with 2 and 9 s with 16 on an idle 2-core machine (empty module cache); in
# a fresh `make run` the apps compile meanwhile and the step took 54-60 s with 2.
download_modules() {
  local pids=() p rc=0
  if [ ${#runtime_bins[@]} -gt 0 ]; then
    (cd "$(cat "$work/dapr.dir")" && GOMAXPROCS=16 go list -deps "${runtime_pkgs[@]}" >/dev/null) &
    pids+=($!)
  fi
  if [ -n "$need_cli" ]; then
    (cd "$(cat "$work/cli.dir")" && GOMAXPROCS=16 go list -deps . >/dev/null) &
    pids+=($!)
  fi
  for p in "${pids[@]}"; do wait "$p" || rc=$?; done
  return "$rc"
}

# The compiler collects garbage less often with a higher GOGC: the cold runtime compile takes a
# quarter less CPU with 400 than with Go's 100 (sentry alone: 326 → 246 s of user time, 216 → 171 s
# wall on 2 cores), for more memory per compile (the machine has far more than 2 compiles need).
build_gogc=${TASKGRID_BUILD_GOGC:-400}

# What the compiler leaves out, measured on sentry alone from an empty build cache (GOGC=400,
# wall on 2 cores / user+sys CPU): 172 s / 330 s as Go builds by default; 155 s / 298 s without
# DWARF (-dwarf=false: the links strip it anyway, -w); 141 s / 270 s with the Kubernetes client,
# its API types, the CRD types and controller-runtime also compiled without optimisation and
# inlining (-N -l). Those four are for Kubernetes mode (the operator's client, the injector, the
# Kubernetes secret store and name resolver) and never run in standalone mode, which is what is
# built here; API machinery and k8s.io/utils, which the runtime uses in every mode, stay
# optimised. The binaries behave the same.
# Likewise the cloud SDKs the Kafka and Redis components import for authentication the
# project's components never configure: AWS IAM (the AWS SDK, with the SSM, DynamoDB, Kinesis
# and Secrets Manager clients the Kafka component pulls in, and pgx for RDS, which the SQL
# helpers also import for their PostgreSQL adapter; the sqlite name resolver goes through
# database/sql) and Azure AD (the Azure SDK and MSAL): 56 → 43 s of CPU for their 164 packages
# on a warm standard library. They would run, slower, if a component were configured to use them.
unoptimised=(k8s.io/api/... k8s.io/client-go/... k8s.io/apiextensions-apiserver/... sigs.k8s.io/controller-runtime/...
  github.com/aws/... github.com/jackc/... github.com/Azure/... github.com/AzureAD/...)
gcflags=(-gcflags=all=-dwarf=false)
for p in "${unoptimised[@]}"; do gcflags+=("-gcflags=$p=-N -l -dwarf=false"); done

build_runtime() {
  cd "$(cat "$work/dapr.dir")"
  GOGC=$build_gogc go build -trimpath "${gcflags[@]}" \
    -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.gitversion=v$DAPR_RUNTIME_VERSION -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_RUNTIME_VERSION" \
    -o "$work/out/" "${runtime_pkgs[@]}"
}

build_cli() {
  cd "$(cat "$work/cli.dir")"
  GOGC=$build_gogc go build -trimpath "${gcflags[@]}" -ldflags "-s -w -X main.version=$DAPR_CLI_VERSION -X main.apiVersion=1.0" -o "$work/out/dapr" .
}

runtime_pkgs=()
for b in "${runtime_bins[@]}"; do runtime_pkgs+=("./cmd/$b"); done
mkdir -p "$work/out"
log "building the Dapr binaries into $bin (first time only; log: $logf)"
[ ${#runtime_bins[@]} -eq 0 ] || log "daprd components: $(echo $components)"
step "fetch the sources of Dapr v$DAPR_RUNTIME_VERSION${need_cli:+ and CLI v$DAPR_CLI_VERSION}" fetch_sources
if [ ${#runtime_bins[@]} -gt 0 ]; then
  make_tree "$(cat "$work/dapr.dir")" >>"$logf" 2>&1 || { tail -n 3 "$logf" >&2; log "full log: $logf"; exit 1; }
fi
step "download the modules they import" download_modules
if [ ${#runtime_bins[@]} -gt 0 ]; then
  step "compile ${runtime_bins[*]}" build_runtime
fi
if [ -n "$need_cli" ]; then
  step "compile the dapr CLI" build_cli
fi
for b in "${runtime_bins[@]}"; do mv "$work/out/$b" "$bin/"; done
[ -z "$need_cli" ] || mv "$work/out/dapr" "$bin/dapr"
printf '%s\n' "$components" >"$root/components.txt"
[ "$root" != "$slim_root" ] || echo "$stamp" >"$root/ready"
log "Dapr binaries ready in $bin ($(fmt $((SECONDS - t_all))))"
echo "$root"
