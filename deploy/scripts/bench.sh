#!/usr/bin/env bash
# make bench: the queue's own micro-benchmark, then the system benchmark (deploy/bench:
# the real stack, and the River peer on a private PostgreSQL that it starts and stops;
# table and JSON). BENCH_ARGS are passed to deploy/bench, e.g. -quick.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .run/bench
echo "== queue logic (in-memory store): go test -bench . ./internal/domain/queue"
go test -count=1 -run '^$' -bench . -benchtime 20000x ./internal/domain/queue | grep -E '^(Benchmark|ok|FAIL)'
echo
echo "== whole system: go run ./deploy/bench ${BENCH_ARGS:-}"
# shellcheck disable=SC2086
go run ./deploy/bench -out .run/bench/results.json ${BENCH_ARGS:-}
