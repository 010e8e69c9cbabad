#!/usr/bin/env bash
# Runs a command with a real PostgreSQL in $TEST_DATABASE_URL: the one already set, else a server
# on 127.0.0.1:5432 (trust auth, user postgres), else a private throw-away cluster started from
# the installed PostgreSQL binaries and stopped after. Usage: scripts/with-postgres.sh CMD [ARGS]
set -euo pipefail
cd "$(dirname "$0")/.."

pgbin=""
for d in "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then pgbin="$d"; break; fi
done

can_connect() { # url
  if command -v psql >/dev/null 2>&1; then psql "$1" -Atqc 'select 1' >/dev/null 2>&1; else return 1; fi
}

private_dir=""
cleanup() {
  if [ -n "$private_dir" ]; then
    as_owner "$pgbin/pg_ctl" -D "$private_dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$private_dir"
  fi
}
trap cleanup EXIT

as_owner() { # run as the cluster owner (initdb refuses root)
  if [ "$(id -u)" = 0 ]; then runuser -u "$owner" -- "$@"; else "$@"; fi
}

if [ -z "${TEST_DATABASE_URL:-}" ]; then
  if [ -z "${FORCE_PRIVATE_PG:-}" ] && can_connect "postgres://postgres@127.0.0.1:5432/postgres"; then
    export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
  else
    if [ -z "$pgbin" ]; then
      echo "No PostgreSQL server is reachable and no PostgreSQL binaries (initdb, pg_ctl) are installed." >&2
      echo "Install them (Debian: apt-get install postgresql) or set TEST_DATABASE_URL." >&2
      exit 1
    fi
    owner="$(id -un)"
    if [ "$(id -u)" = 0 ]; then
      owner=postgres
      id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home "$owner"
    fi
    private_dir="$(mktemp -d /tmp/sessionsync-pg.XXXXXX)"
    chown "$owner" "$private_dir"
    port=55432
    while can_connect "postgres://postgres@127.0.0.1:$port/postgres" || (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; do port=$((port + 1)); done
    echo "Starting a private PostgreSQL ($pgbin) on 127.0.0.1:$port in $private_dir" >&2
    as_owner "$pgbin/initdb" -D "$private_dir/data" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    as_owner "$pgbin/pg_ctl" -D "$private_dir/data" -l "$private_dir/log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $private_dir -c fsync=off -c max_connections=200" start >/dev/null
    export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  fi
fi
echo "PostgreSQL for \`$*\`: $TEST_DATABASE_URL" >&2
"$@"
