#!/usr/bin/env bash
# Fails with a clear message when Go is missing or older than the pinned minimum.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../versions.env"
command -v go >/dev/null || { echo "taskgrid: error: Go is not installed; install Go >= $GO_MIN_VERSION (https://go.dev/dl)" >&2; exit 1; }
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]; then
  echo "taskgrid: error: Go $have is too old; this project needs Go >= $GO_MIN_VERSION" >&2
  exit 1
fi
