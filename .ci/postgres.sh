#!/usr/bin/env bash
# Install (Debian's packages) and start a PostgreSQL server on loopback for the multi-machine tests,
# then print the storage URL they use. Idempotent: safe to run again on a machine that has it.
set -euo pipefail
exec 3>&1 1>&2  # only the URL goes to stdout; everything else the tools print goes to stderr
if ! ls /usr/lib/postgresql/*/bin/pg_ctl > /dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql > /dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main > /dev/null
fi
pg_ctlcluster "$version" main start 2> /dev/null || true
for _ in $(seq 30); do
  pg_isready -q -h 127.0.0.1 && break
  sleep 1
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'study'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE study LOGIN PASSWORD 'study-secret'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname = 'study'\"" | grep -q 1 \
  || su postgres -c "createdb -O study study"
echo "postgresql://study:study-secret@127.0.0.1:5432/study" >&3
