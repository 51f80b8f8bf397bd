#!/usr/bin/env bash
# make bench: every benchmark with the iteration count that makes its figure meaningful.
# Each system benchmark starts its own real stack (internal/stacktest).
set -euo pipefail
cd "$(dirname "$0")/../.."
run() { echo "== $*"; go test -count=1 -run '^$' "$@" | grep -E '^(Benchmark|ok|FAIL|---)'; }
run -bench . -benchtime 20000x ./internal/queue
run -bench Recovery -benchtime 2x ./internal/e2e/failures
run -bench Ingest -benchtime 5000x ./internal/e2e/analytics
