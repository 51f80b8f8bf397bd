#!/usr/bin/env bash
# Stops exactly the processes `make run` started, by the PIDs it recorded in $RUN_DIR/pids/:
# first SIGTERM, then SIGKILL after a grace period. Touches no other process.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${RUN_DIR:?}"
[ -d "$RUN_DIR/pids" ] || { log "nothing to stop"; exit 0; }

# Apps and sidecars first (dapr run), then the control plane, then the services they use.
order=(dapr-run prometheus scheduler placement sentry kafka mariadb redis)
stop() {
  local name=$1 pidf="$RUN_DIR/pids/$1.pid" pid i
  [ -f "$pidf" ] || return 0
  pid=$(cat "$pidf")
  if kill -0 "$pid" 2>/dev/null; then
    # dapr run -f is a process group leader (setsid in run.sh): stop its whole group.
    if [ "$name" = dapr-run ]; then kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"; else kill -TERM "$pid"; fi
    for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop in 15s; killing it"
      if [ "$name" = dapr-run ]; then kill -KILL -- "-$pid" 2>/dev/null; else kill -KILL "$pid"; fi
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidf"
}
for n in "${order[@]}"; do stop "$n"; done
# Children of dapr run (daprd, apps) are recorded too, in case the group was left behind.
for f in "$RUN_DIR"/pids/*.pid; do [ -e "$f" ] && stop "$(basename "$f" .pid)"; done
exit 0
