#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL (scripts/with-postgres.sh finds or starts
# one: $TEST_DATABASE_URL, else 127.0.0.1:5432, else a private throw-away cluster), and fails
# when the tests left a database or a role behind on that server (each test drops what it
# creates; a shared server must be left as it was found).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--inner" ]; then
  exec scripts/with-postgres.sh scripts/test.sh --inner "$@"
fi
shift
objects() { # every database and role on the server, one per line
  psql "$TEST_DATABASE_URL" -Atq -c "SELECT 'database ' || datname FROM pg_database UNION ALL SELECT 'role ' || rolname FROM pg_roles" | LC_ALL=C sort
}
before=$(mktemp)
trap 'rm -f "$before"' EXIT
objects >"$before"
status=0
cargo test --workspace --all-targets --features fault-points "$@" || status=$?
# --all-targets leaves out doc tests: the compile_fail ones hold that a vetted record cannot be
# forged.
[ "$status" = 0 ] && { cargo test --workspace --doc --features fault-points "$@" || status=$?; }
# Dropping happens as each test ends; a database a test's last connection still holds goes a
# moment later.
for _ in 1 2 3 4 5; do
  left=$(objects | LC_ALL=C comm -13 "$before" -)
  [ -z "$left" ] && break
  sleep 1
done
if [ -n "$left" ]; then
  echo "The tests left these on the server at $TEST_DATABASE_URL (each test must drop what it creates):" >&2
  echo "$left" | sed 's/^/  /' >&2
  [ "$status" = 0 ] && status=1
fi
exit "$status"
