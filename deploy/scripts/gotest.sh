#!/usr/bin/env bash
# Runs every test (unit and integration, against the real stack) and prints the failures
# and a summary line. Integration tests start their own stack on free loopback ports
# (internal/testharness/stacktest); with CI=true a stack that cannot start fails them, never skips.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .run
go build -o bin/testreport ./deploy/testreport
set +e
(
  go test -json -count=1 -p 2 -timeout 40m "${@:-./...}" 2>&1
  root=$?
  k8s=0
  if [ $# -eq 0 ]; then
    # The Kubernetes chart's offline checks: a module of their own (Helm and the
    # Kubernetes API types stay out of the product's go.mod), in the same report.
    (cd deploy/kubernetes && go test -json -count=1 -timeout 20m ./... 2>&1)
    k8s=$?
  fi
  [ "$root" -eq 0 ] || exit "$root"
  exit "$k8s"
) | tee .run/test.json | bin/testreport
statuses=("${PIPESTATUS[@]}")
set -e
# Either failing fails the run: go test's own statuses catch what the report cannot see.
[ "${statuses[0]}" -eq 0 ] || exit "${statuses[0]}"
exit "${statuses[2]}"
