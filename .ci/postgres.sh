#!/usr/bin/env bash
# Install (Debian's packages) and start a PostgreSQL server on loopback for the multi-machine tests.
# Usage: bash .ci/postgres.sh postgresql://USER:PASSWORD@127.0.0.1:5432/DB
# Creates that role and database. Idempotent: safe to run again on a machine that has them.
set -euo pipefail
url=${1:?usage: bash .ci/postgres.sh postgresql://USER:PASSWORD@127.0.0.1:5432/DB}
[[ $url =~ ^postgresql://([^:@/]+):([^@/]+)@[^/]+/([^/?]+)$ ]] \
  || { echo "postgres.sh: expected postgresql://USER:PASSWORD@HOST:PORT/DB, got another form" >&2; exit 2; }
user=${BASH_REMATCH[1]} password=${BASH_REMATCH[2]} db=${BASH_REMATCH[3]}

# The server outlives this script. Whatever starts it (pg_ctlcluster, or apt's postinst on a first
# install) must pass it none of our file descriptors, or whoever reads our output (a CI runner, a
# $(...) substitution) waits for an end of file that never comes. Its output goes to a log, shown
# only when it fails.
detached() {
  local log status=0
  log=$(mktemp)
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      if (( fd > 2 )); then eval "exec $fd>&-" 2> /dev/null || true; fi
    done
    exec "$@"
  ) < /dev/null > "$log" 2>&1 || status=$?
  (( status == 0 )) || tail -n 20 "$log" >&2
  rm -f "$log"
  return $status
}

if ! ls /usr/lib/postgresql/*/bin/pg_ctl > /dev/null 2>&1; then
  detached apt-get update -qq
  detached env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main > /dev/null
fi

pg_lsclusters -h | grep -q "^$version main .* online" || detached pg_ctlcluster "$version" main start

for _ in $(seq 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 1
done
pg_isready -h 127.0.0.1 > /dev/null || { echo "postgres.sh: PostgreSQL $version did not start; see /var/log/postgresql/" >&2; exit 1; }

sql() { su postgres -c "psql -qtAc \"$1\""; }
[[ $(sql "SELECT 1 FROM pg_roles WHERE rolname = '$user'") == 1 ]] \
  || sql "CREATE ROLE $user LOGIN PASSWORD '$password'" > /dev/null
[[ $(sql "SELECT 1 FROM pg_database WHERE datname = '$db'") == 1 ]] \
  || su postgres -c "createdb -O $user $db"
echo "PostgreSQL $version is up on 127.0.0.1 with role $user and database $db" >&2
