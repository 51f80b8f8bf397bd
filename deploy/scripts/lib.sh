# Shared shell helpers for deploy/scripts/*. Sourced, not run.
log()  { echo "taskgrid: $*" >&2; }
die()  { echo "taskgrid: error: $*" >&2; exit 1; }

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port NAME PORT SECONDS [PID]: wait until 127.0.0.1:PORT accepts connections.
wait_port() {
  local name=$1 port=$2 secs=$3 pid=${4:-} i
  for ((i = 0; i < secs * 10; i++)); do
    if ! port_free "$port"; then return 0; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      die "$name exited during start-up; see its log"
    fi
    sleep 0.1
  done
  die "$name did not open 127.0.0.1:$port within ${secs}s"
}

# pid_alive FILE: true when FILE holds the PID of a running process.
pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# need_port NAME PORT [FILE]: fail clearly when a port we are about to use is taken.
need_port() {
  port_free "$2" || die "port $2 (for $1) is already in use by another program; stop it or change the port in ${3:-deploy/local.env}"
}
