#!/usr/bin/env bash
# Builds daprd, placement, scheduler, sentry (runtime v$DAPR_RUNTIME_VERSION, -tags allcomponents) and the
# dapr CLI (v$DAPR_CLI_VERSION) from the Go module proxy into a per-version cache, once.
# Prints the runtime root (the directory holding .dapr/bin) on stdout.
# A runtime installed by `dapr init` in $HOME/.dapr/bin is reused when its version matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../versions.env
source "$here/../versions.env"

cache=${TASKGRID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/taskgrid}
root="$cache/dapr-$DAPR_RUNTIME_VERSION-cli-$DAPR_CLI_VERSION"
bin="$root/.dapr/bin"

log() { echo "install-dapr: $*" >&2; }

have_version() { # binary wanted-version
  [ -x "$1" ] && "$1" --version 2>/dev/null | grep -q "$2"
}

# Reuse a runtime that `dapr init` installed, when it is the pinned version.
if [ -z "${TASKGRID_FORCE_BUILD:-}" ] && have_version "$HOME/.dapr/bin/daprd" "$DAPR_RUNTIME_VERSION" \
  && [ -x "$HOME/.dapr/bin/placement" ] && [ -x "$HOME/.dapr/bin/scheduler" ] \
  && command -v dapr >/dev/null && dapr --version 2>/dev/null | grep -q "CLI version: $DAPR_CLI_VERSION"; then
  mkdir -p "$bin"
  for b in daprd placement scheduler; do ln -sf "$HOME/.dapr/bin/$b" "$bin/$b"; done
  ln -sf "$(command -v dapr)" "$bin/dapr"
fi

if have_version "$bin/daprd" "$DAPR_RUNTIME_VERSION" && [ -x "$bin/placement" ] && [ -x "$bin/scheduler" ] && [ -x "$bin/sentry" ] && [ -x "$bin/dapr" ]; then
  echo "$root"
  exit 0
fi

command -v go >/dev/null || { log "Go is not installed (need go >= $GO_MIN_VERSION)"; exit 1; }
mkdir -p "$bin"
tmp="$bin.tmp.$$"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

export GOFLAGS=-mod=mod
if ! have_version "$bin/daprd" "$DAPR_RUNTIME_VERSION" || [ ! -x "$bin/placement" ] || [ ! -x "$bin/scheduler" ]; then
  log "building Dapr runtime v$DAPR_RUNTIME_VERSION (first time only: ~3 min download + ~6 min compile on 2 cores)"
  dir=$(go mod download -json "github.com/dapr/dapr@v$DAPR_RUNTIME_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { log "could not download github.com/dapr/dapr@v$DAPR_RUNTIME_VERSION from the Go module proxy"; exit 1; }
  (cd "$dir" && go build -trimpath -tags allcomponents \
    -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.gitversion=v$DAPR_RUNTIME_VERSION -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_RUNTIME_VERSION" \
    -o "$tmp/" ./cmd/daprd ./cmd/placement ./cmd/scheduler)
  mv "$tmp/daprd" "$tmp/placement" "$tmp/scheduler" "$bin/"
fi
if [ ! -x "$bin/sentry" ]; then
  # The certificate authority for mTLS between sidecars (no components: a short build).
  log "building Dapr sentry v$DAPR_RUNTIME_VERSION"
  dir=$(go mod download -json "github.com/dapr/dapr@v$DAPR_RUNTIME_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  (cd "$dir" && go build -trimpath \
    -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.gitversion=v$DAPR_RUNTIME_VERSION -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_RUNTIME_VERSION" \
    -o "$tmp/" ./cmd/sentry)
  mv "$tmp/sentry" "$bin/"
fi
if [ ! -x "$bin/dapr" ]; then
  log "building Dapr CLI v$DAPR_CLI_VERSION"
  dir=$(go mod download -json "github.com/dapr/cli@v$DAPR_CLI_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { log "could not download github.com/dapr/cli@v$DAPR_CLI_VERSION"; exit 1; }
  (cd "$dir" && go build -trimpath -ldflags "-s -w -X main.version=$DAPR_CLI_VERSION -X main.apiVersion=1.0" -o "$tmp/dapr" .)
  mv "$tmp/dapr" "$bin/dapr"
fi
log "Dapr binaries ready in $bin"
echo "$root"
