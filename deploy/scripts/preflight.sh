#!/usr/bin/env bash
# Before the apps of dapr.yaml start (make run, make run-cli): fail clearly when a port dapr.yaml fixes is taken
# (the CLI checks only some of them, and an app on a taken port would just exit).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
while read -r key port; do
  need_port "${key%:}" "$port" dapr.yaml
done < <(grep -E '^\s+(appPort|daprHTTPPort|daprGRPCPort|daprInternalGRPCPort|metricsPort|PUBLIC_PORT):' "$here/../../dapr.yaml" | awk '{gsub(/"/, "", $2); print $1, $2}')
if pid_alive "$RUN_DIR/pids/dapr-run.pid"; then
  die "taskgrid is already running (dapr run pid $(cat "$RUN_DIR/pids/dapr-run.pid")); stop it with make down"
fi
