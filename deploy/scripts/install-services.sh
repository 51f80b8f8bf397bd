#!/usr/bin/env bash
# Installs Redis, MariaDB, Prometheus (with promtool) and iproute2 from Debian's packages when they
# are missing, with --browser also Chromium (only the browser test of the web page needs it), and with
# --bench also PostgreSQL (only the benchmark's River peer needs it: make bench). Starts
# nothing: the benchmark starts a private PostgreSQL cluster of its own and stops it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
{ command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; } || missing+=(mariadb-server)
command -v mariadb >/dev/null || missing+=(mariadb-client)
# The multi-host test (internal/e2e/multihost) builds its test hosts with ip netns and veth.
command -v ip >/dev/null || missing+=(iproute2)
# make run starts Prometheus on loopback; make test checks its config and rules with promtool.
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
case "${1:-}" in
  --browser) command -v chromium >/dev/null || missing+=(chromium) ;;
  # Debian's server binaries live in /usr/lib/postgresql/<major>/bin, not on the PATH.
  --bench) compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql) ;;
  "") ;;
  *) die "usage: install-services.sh [--browser | --bench]" ;;
esac
[ ${#missing[@]} -eq 0 ] && exit 0

command -v apt-get >/dev/null || die "missing ${missing[*]} and apt-get is not available: install them with your package manager"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "missing ${missing[*]}: run as root or install sudo"
  sudo="sudo -n"
fi
log "installing ${missing[*]} from Debian's packages"
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  # The package would create (and, with systemd, start) a system cluster on port 5432
  # that nothing uses: the benchmark runs its own cluster on a free port and stops it.
  $sudo mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | $sudo tee /etc/postgresql-common/createcluster.d/taskgrid.conf >/dev/null
fi
# The prometheus package would start (and enable) a system-wide server on *:9090 that
# scrapes nothing of ours: make run starts its own on 127.0.0.1. Keep the package's
# maintainer scripts from starting it (policy-rc.d, honoured by invoke-rc.d and
# deb-systemd-invoke) unless the machine already has such a policy, and disable the unit.
policy_added=""
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# taskgrid install-services.sh: no service starts during this install\nexit 101\n' |
    $sudo tee /usr/sbin/policy-rc.d >/dev/null && $sudo chmod 755 /usr/sbin/policy-rc.d && policy_added=1
  trap '[ -n "$policy_added" ] && $sudo rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq || die "apt-get update failed"
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
