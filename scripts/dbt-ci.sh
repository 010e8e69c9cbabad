#!/usr/bin/env bash
# CI (run by scripts/with-postgres.sh): the dbt package for real. Installs dbt into .venv-dbt,
# fills a warehouse with `sessionsync demo --once`, fails when dbt/models/sources.yml differs
# from what scripts/dbt-sources.py generates from it, then `dbt build` (models and tests: a
# failing test fails CI), `dbt source freshness` and `dbt docs generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
admin="${TEST_DATABASE_URL:?run through scripts/with-postgres.sh}"
name=sessionsync_dbt
[ -x .venv-dbt/bin/dbt ] || scripts/dbt.sh install
cargo build -q --bin sessionsync
DATABASE_URL="$admin" target/debug/sessionsync demo --once --database "$name" >/tmp/sessionsync-dbt-demo.log 2>&1 \
  || { cat /tmp/sessionsync-dbt-demo.log; exit 1; }
url="${admin%/*}/$name"
generated="$(mktemp)"
trap 'rm -f "$generated"' EXIT
scripts/dbt-sources.py "$url" "$generated"
if ! diff -u dbt/models/sources.yml "$generated"; then
  echo "dbt/models/sources.yml differs from the warehouse's comments: run scripts/dbt-sources.py $url" >&2
  exit 1
fi
export DATABASE_URL="$url"
scripts/dbt.sh build
scripts/dbt.sh source freshness
scripts/dbt.sh docs generate >/dev/null
echo "dbt: build, tests, source freshness and docs generate passed"
