#!/usr/bin/env bash
# Starts the local infrastructure for `make run`, each process in the background with its PID in
# $RUN_DIR/pids/, its data in $RUN_DIR/data/ and its log in $RUN_DIR/logs/:
#   Redis (state store, actor state), MariaDB (analytics), the local Kafka-protocol broker,
#   Dapr sentry, placement and scheduler, and Prometheus (deploy/prometheus/prometheus.yml: it scrapes the
#   apps, the sidecars, placement and scheduler, and evaluates deploy/prometheus/rules.yml).
# A process that is already running from an earlier `make run` (its PID file names a live process)
# is reused. Everything listens on 127.0.0.1 only. Expects deploy/local.env in the environment
# and BIN_DIR (our built binaries) and DAPR_BIN (the Dapr binaries).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${RUN_DIR:?}" "${BIN_DIR:?}" "${DAPR_BIN:?}"
mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs" "$RUN_DIR/data"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

# start NAME PORT CMD...: start CMD in the background unless NAME is already running.
start() {
  local name=$1 port=$2; shift 2
  local pidf="$RUN_DIR/pids/$name.pid"
  if pid_alive "$pidf"; then
    log "$name already running (pid $(cat "$pidf")), reusing it"
    return 0
  fi
  need_port "$name" "$port"
  # A session of its own (setsid): Ctrl-C on `make run` reaches the foreground process group,
  # and the infrastructure must outlive it (the next `make run` reuses it). One core each
  # (GOMAXPROCS, unless set): the stack shares this machine (see internal/platform/procs).
  GOMAXPROCS=${GOMAXPROCS:-1} setsid nohup "$@" >>"$RUN_DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$pidf"
  wait_port "$name" "$port" 60 "$!"
  log "$name up on 127.0.0.1:$port (pid $(cat "$pidf"), log $RUN_DIR/logs/$name.log)"
}

redis_port=${TASKGRID_REDIS_HOST##*:}
mkdir -p "$RUN_DIR/data/redis"
start redis "$redis_port" redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$RUN_DIR/data/redis" \
  --appendonly yes --appendfsync everysec --save "" --protected-mode yes --daemonize no

"$here/mariadb.sh" start

kafka_port=${TASKGRID_KAFKA_BROKERS##*:}
start kafka "$kafka_port" "$BIN_DIR/kafka-broker" -addr "127.0.0.1:$kafka_port" -data-dir "$RUN_DIR/data/kafka" \
  -topics "$TASKGRID_KAFKA_TOPICS"

# Sentry, the certificate authority for mTLS: at its first start it makes a self-signed root
# and issuer in $RUN_DIR/data/sentry (owner-only); sidecars, placement and scheduler get their
# certificates from it. `make run` gives its sidecars this address (DAPR_SENTRY_ADDRESS); the
# dapr CLI (`make run-cli`) points every sidecar at localhost:50001 when the Configuration
# enables mTLS, so that is its port. (Dapr 1.18.2's sentry binds its healthz and
# metrics ports on every interface whatever the flags say; they serve no secrets.)
mkdir -p "$RUN_DIR/data/sentry" && chmod 700 "$RUN_DIR/data/sentry"
sentry=("$DAPR_BIN/sentry" --listen-address 127.0.0.1 --port "$TASKGRID_SENTRY_PORT"
  --issuer-credentials "$RUN_DIR/data/sentry" --trust-domain localhost --config "$here/../sentry.yaml"
  --healthz-listen-address 127.0.0.1 --healthz-port "$TASKGRID_SENTRY_HEALTHZ_PORT"
  --metrics-listen-address 127.0.0.1 --metrics-port "$TASKGRID_SENTRY_METRICS_PORT" --log-as-json)
# A sentry that makes its root and issuer reloads itself 2 s later (its watch of the
# credentials directory sees its own writes; dapr v1.18.2, cmd/sentry/app), and refuses
# connections while it does: a sidecar asking for its identity then exits. So the first
# start only makes them, and the sentry that serves finds them and writes nothing.
if [ ! -f "$RUN_DIR/data/sentry/ca.crt" ] && ! pid_alive "$RUN_DIR/pids/sentry.pid"; then
  start sentry "$TASKGRID_SENTRY_PORT" "${sentry[@]}"
  pid=$(cat "$RUN_DIR/pids/sentry.pid")
  kill -TERM "$pid"
  for ((i = 0; i < 150; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && die "sentry (pid $pid) did not stop after making its credentials"
  rm -f "$RUN_DIR/pids/sentry.pid"
  log "sentry made its root and issuer; starting it again to serve"
fi
start sentry "$TASKGRID_SENTRY_PORT" "${sentry[@]}"
tls=(--tls-enabled --trust-anchors-file "$RUN_DIR/data/sentry/ca.crt" --sentry-address "127.0.0.1:$TASKGRID_SENTRY_PORT"
  --trust-domain localhost --mode standalone)

start placement "$TASKGRID_PLACEMENT_PORT" "$DAPR_BIN/placement" "${tls[@]}" --listen-address 127.0.0.1 \
  --port "$TASKGRID_PLACEMENT_PORT" --initial-cluster "dapr-placement-0=127.0.0.1:$TASKGRID_PLACEMENT_RAFT_PORT" \
  --healthz-listen-address 127.0.0.1 --healthz-port "$TASKGRID_PLACEMENT_HEALTHZ_PORT" \
  --metrics-listen-address 127.0.0.1 --metrics-port "$TASKGRID_PLACEMENT_METRICS_PORT" --log-as-json

# The scheduler writes its identity for its etcd to files, by default in one directory
# shared by every scheduler on the machine (/tmp/secrets/dapr.io/tls): this one's is its own.
mkdir -p "$RUN_DIR/data/scheduler"
start scheduler "$TASKGRID_SCHEDULER_PORT" "$DAPR_BIN/scheduler" "${tls[@]}" --listen-address 127.0.0.1 \
  --port "$TASKGRID_SCHEDULER_PORT" --override-broadcast-host-port "127.0.0.1:$TASKGRID_SCHEDULER_PORT" \
  --identity-directory-write "$RUN_DIR/data/scheduler-identity" \
  --etcd-data-dir "$RUN_DIR/data/scheduler" --etcd-client-listen-address 127.0.0.1 \
  --etcd-client-port "$TASKGRID_SCHEDULER_ETCD_CLIENT_PORT" \
  --etcd-initial-cluster "dapr-scheduler-server-0=http://127.0.0.1:$TASKGRID_SCHEDULER_ETCD_PEER_PORT" \
  --healthz-listen-address 127.0.0.1 --healthz-port "$TASKGRID_SCHEDULER_HEALTHZ_PORT" \
  --metrics-listen-address 127.0.0.1 --metrics-port "$TASKGRID_SCHEDULER_METRICS_PORT" --log-as-json

# Prometheus scrapes the control plane at once and the apps and sidecars once `make run` has
# started them (until then their targets read down). Its configuration is read in place.
mkdir -p "$RUN_DIR/data/prometheus"
start prometheus "$TASKGRID_PROMETHEUS_PORT" prometheus --config.file "$here/../prometheus/prometheus.yml" \
  --web.listen-address "127.0.0.1:$TASKGRID_PROMETHEUS_PORT" --storage.tsdb.path "$RUN_DIR/data/prometheus" \
  --storage.tsdb.retention.time 7d --web.enable-lifecycle
log "Prometheus UI: http://127.0.0.1:$TASKGRID_PROMETHEUS_PORT/classic/graph (also /classic/targets, /classic/alerts)"
