#!/usr/bin/env bash
# Runs dbt on the package in dbt/ against $DATABASE_URL (default: the demo's database on the
# local server), e.g. `scripts/dbt.sh build`, `scripts/dbt.sh source freshness`. dbt is taken
# from .venv-dbt (scripts/dbt.sh install makes it, from dbt/requirements.txt), else from PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = install ]; then
  python3 -m venv .venv-dbt
  .venv-dbt/bin/pip install -q -r dbt/requirements.txt
  exit 0
fi
url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/sessionsync_demo}"
eval "$(python3 - "$url" <<'PY'
import shlex, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
vals = {"SESSIONSYNC_DB_HOST": u.hostname or "127.0.0.1", "SESSIONSYNC_DB_PORT": str(u.port or 5432),
        "SESSIONSYNC_DB_USER": urllib.parse.unquote(u.username or "postgres"),
        "SESSIONSYNC_DB_PASSWORD": urllib.parse.unquote(u.password or ""),
        "SESSIONSYNC_DB_NAME": u.path.lstrip("/") or "postgres"}
for k, v in vals.items():
    print(f"export {k}={shlex.quote(v)}")
PY
)"
export DBT_SEND_ANONYMOUS_USAGE_STATS=false
dbt="dbt"
[ -x .venv-dbt/bin/dbt ] && dbt=.venv-dbt/bin/dbt
exec "$dbt" "$@" --project-dir dbt --profiles-dir dbt
