#!/usr/bin/env bash
# Makes sure the PostgreSQL the tests use answers: starts a local cluster that is installed
# but stopped. Never fails by itself: the tests decide (they fail when CI=true, skip locally).
set -u
url="${ITERTRACK_TEST_POSTGRES:-postgresql://root@127.0.0.1:5432/test}"
hostport="${url#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$hostport" ] && port=5432

ready() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p "$port"; }

if ready; then
  echo "postgres: $host:$port is accepting connections"
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for version in $(ls /etc/postgresql); do
    echo "postgres: starting local cluster $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>&1 || true
  done
  for _ in $(seq 1 30); do
    ready && { echo "postgres: $host:$port is accepting connections"; exit 0; }
    sleep 1
  done
fi
echo "postgres: $host:$port is not reachable; PostgreSQL tests will skip (or fail when CI=true)"
exit 0
