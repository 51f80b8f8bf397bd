#!/usr/bin/env bash
# A private MariaDB server for taskgrid: its own data directory, socket and port on
# 127.0.0.1, never the system's. Used by `make run` (start) and by the test environment
# (init, serve, bootstrap), so both set it up the same way.
#   mariadb.sh init       create the data directory if it does not exist
#   mariadb.sh serve      run mariadbd in the foreground (exec)
#   mariadb.sh bootstrap  create the database and a least-privilege user (idempotent)
#   mariadb.sh start      all three, the server in the background with its PID in $RUN_DIR/pids
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
: "${RUN_DIR:?}" "${TASKGRID_MYSQL_PORT:?}" "${TASKGRID_MYSQL_DATABASE:?}" "${TASKGRID_MYSQL_USER:?}" "${TASKGRID_MYSQL_PASSWORD:?}"

base="$RUN_DIR/data/mariadb"
datadir="$base/data"
sock="$base/mysqld.sock"
# Where the server listens and where its clients are (a MariaDB host pattern): the
# machine's loopback, unless a multi-host test puts the server on a test host's address.
bind="${TASKGRID_MYSQL_BIND:-127.0.0.1}"
clients="${TASKGRID_MYSQL_CLIENT_HOST:-127.0.0.1}"
pidf="$RUN_DIR/pids/mariadb.pid"
mkdir -p "$base" "$RUN_DIR/pids" "$RUN_DIR/logs"
mariadbd=$(command -v mariadbd || echo /usr/sbin/mariadbd)
[ -x "$mariadbd" ] || die "mariadbd not found: run deploy/scripts/install-services.sh"

userargs=()
if [ "$(id -u)" -eq 0 ]; then
  # As root, mariadbd refuses to run without --user; the mysql user must own its files
  # and be able to reach them.
  userargs=(--user=mysql)
fi

init() {
  if [ ${#userargs[@]} -gt 0 ]; then
    chown -R mysql:mysql "$base"
    local d="$base"
    while [ "$d" != / ]; do chmod o+x "$d" 2>/dev/null || true; d=$(dirname "$d"); done
  fi
  [ -d "$datadir/mysql" ] && return 0
  log "initialising MariaDB data directory $datadir"
  local try ilog="$RUN_DIR/logs/mariadb-install.log"
  for try in 1 2 3; do
    if mariadb-install-db --no-defaults --datadir="$datadir" "${userargs[@]}" --auth-root-authentication-method=socket \
      --skip-test-db >"$ilog.$try" 2>&1; then
      cp "$ilog.$try" "$ilog"
      return 0
    fi
    # Seen in full test runs (stacks starting at once, twice in a row within a second),
    # never alone: say why (the log's errors, else its first lines: its end is a help
    # text), and try again from an empty data directory after a pause.
    log "mariadb-install-db failed (try $try of 3); its log ($ilog.$try) says:"
    { grep -i -E 'error|fail|abort|denied|cannot|can.t' "$ilog.$try" || head -n 15 "$ilog.$try"; } | head -n 20 >&2 || true
    rm -rf "$datadir"
    [ "$try" -eq 3 ] || sleep $((try * 2))
  done
  die "mariadb-install-db failed three times; see $ilog.1 to .3"
}

serve() {
  # The analytics' batch work (a trigger's statements every TRIGGER_INTERVAL: most of a core
  # for a fraction of a second at 500 tasks/s) is not on any task's way: MariaDB runs at a
  # lower CPU priority than the task path, so that on a shared machine a trigger waits for
  # the task path rather than delaying it (500/s p99 76/91/79 -> 74/64/67 ms in three
  # alternated pairs; README, "Analytics"). TASKGRID_MYSQL_NICE=0 runs it as the rest.
  exec nice -n "${TASKGRID_MYSQL_NICE:-10}" "$mariadbd" --no-defaults --datadir="$datadir" --socket="$sock" --pid-file="$base/mariadbd.pid" \
    --bind-address="$bind" --port="$TASKGRID_MYSQL_PORT" --log-error="$RUN_DIR/logs/mariadb.log" \
    --skip-name-resolve --innodb-flush-log-at-trx-commit=1 --innodb-buffer-pool-size=64M "${userargs[@]}"
}

bootstrap() {
  local i
  for ((i = 0; i < 100; i++)); do [ -S "$sock" ] && break; sleep 0.1; done
  mariadb --no-defaults --socket="$sock" -uroot <<SQL || die "could not create database $TASKGRID_MYSQL_DATABASE"
CREATE DATABASE IF NOT EXISTS \`$TASKGRID_MYSQL_DATABASE\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '$TASKGRID_MYSQL_USER'@'$clients' IDENTIFIED BY '$TASKGRID_MYSQL_PASSWORD';
ALTER USER '$TASKGRID_MYSQL_USER'@'$clients' IDENTIFIED BY '$TASKGRID_MYSQL_PASSWORD';
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, CREATE TEMPORARY TABLES, ALTER, INDEX, DROP ON \`$TASKGRID_MYSQL_DATABASE\`.* TO '$TASKGRID_MYSQL_USER'@'$clients';
SQL
}

case "${1:-}" in
  init) init ;;
  serve) serve ;;
  bootstrap) bootstrap ;;
  start)
    if pid_alive "$pidf"; then
      log "mariadb already running (pid $(cat "$pidf")), reusing it"
      exit 0
    fi
    need_port mariadb "$TASKGRID_MYSQL_PORT"
    init
    setsid nohup "$0" serve >/dev/null 2>&1 </dev/null & # its own session: Ctrl-C on make run must not stop it
    echo $! >"$pidf"
    wait_port mariadb "$TASKGRID_MYSQL_PORT" 60 "$(cat "$pidf")"
    bootstrap
    log "mariadb up on $bind:$TASKGRID_MYSQL_PORT (pid $(cat "$pidf"), database $TASKGRID_MYSQL_DATABASE, user $TASKGRID_MYSQL_USER)"
    ;;
  *) die "usage: mariadb.sh init|serve|bootstrap|start" ;;
esac
