#!/usr/bin/env bash
# `sessionsync renormalize` (docs/benchmarks.md, "Renormalize"): rows rebuilt per second from the
# stored raw, with no vendor request.
#
#   scripts/bench-renormalize.sh [N=200000]
#
# For each source (SOURCES, default "takecontrol mluvii superoffice"): `sessionsync simulate` holds
# N sessions over 30 days; they are synced into a fresh database at the simulator's own rate (the
# baseline: the fastest any re-read through the vendor API can be, with no rate limit at all, and
# what the same re-read costs at the default requests_per_second of 5, from its request count).
# Then every row is made to look as an older read wrote it (another fingerprint; SuperOffice's
# closed_by emptied), statistics stay as they were (autovacuum is off), and `renormalize --source S`
# is timed (wall time, sessions/s, peak RSS), then a second run that finds nothing changed.
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server; a database
# sessionsync_bench_renormalize is created afresh on it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGOPTIONS="-c client_min_messages=warning"
N=${1:-200000}
SOURCES=${SOURCES:-takecontrol mluvii superoffice}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=sessionsync_bench_renormalize
BIN=target/release/sessionsync
work=$(mktemp -d)
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin sessionsync
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
db_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$ADMIN_URL" "$DB")
q() { psql -At "$db_url" -c "$1"; }

table_of() { case $1 in takecontrol) echo takecontrol_sessions;; mluvii) echo mluvii_sessions;; superoffice) echo superoffice_chat_sessions;; esac; }
older_sql() {
  case $1 in
    superoffice) echo "UPDATE sessionsync.superoffice_chat_sessions SET content_hash = 'older', closed_by = NULL";;
    *) echo "UPDATE sessionsync.$(table_of "$1") SET content_hash = 'older'";;
  esac
}
timed() { # timed OUT ARGS... -> "wall_s rss_kb"
  local out=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/time" "$BIN" --config "$work/bench.toml" --log-format json "$@" >"$out" 2>"$work/err" \
    || { cat "$out" "$work/err" >&2; exit 1; }
  cat "$work/time"
}

printf 'renormalize, %s sessions per source (this machine: %s CPUs, PostgreSQL %s on the same host)\n' \
  "$N" "$(nproc)" "$(psql -At "$ADMIN_URL" -c 'show server_version' | cut -d' ' -f1)"
for source in $SOURCES; do
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  "$BIN" simulate --source "$source" --sessions "$N" --days 30 --listen 127.0.0.1:0 >"$work/sim.out" 2>"$work/sim.err" &
  sim_pid=$!
  for _ in $(seq 1 3000); do grep -q '^start = ' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
  { printf '[warehouse]\nurl = "%s"\n' "$db_url"
    sed -n '/^\[\[/,$p' "$work/sim.out" | grep -v '^requests_per_second'
    printf 'requests_per_second = 10000\ntimeout = "120s"\n'
    [ "$source" = takecontrol ] || printf 'page_size = 1000\n'
  } >"$work/bench.toml"
  read -r sync_s sync_kb < <(timed "$work/sync.out" sync)
  kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null || true; sim_pid=""
  table=$(table_of "$source")
  rows=$(q "SELECT count(*) FROM sessionsync.$table")
  requests=$(q "SELECT coalesce(sum(requests), 0) FROM sessionsync.sync_runs WHERE stream <> 'audit'")
  q "$(older_sql "$source")" >/dev/null
  read -r r_s r_kb < <(timed "$work/renorm.out" renormalize --source "$source")
  read -r u_s u_kb < <(timed "$work/again.out" renormalize --source "$source")
  grep -q "rebuilt $rows," "$work/renorm.out" || { echo "expected every row rebuilt:" >&2; cat "$work/renorm.out" >&2; exit 1; }
  grep -q "rebuilt 0, unchanged $rows" "$work/again.out" || { echo "expected nothing rebuilt:" >&2; cat "$work/again.out" >&2; exit 1; }
  python3 - "$source" "$rows" "$sync_s" "$sync_kb" "$requests" "$r_s" "$r_kb" "$u_s" "$u_kb" <<'PY'
import sys
s, rows, sync_s, sync_kb, req, r_s, r_kb, u_s, u_kb = sys.argv[1:]
rows, req = int(rows), int(req)
sync_s, r_s, u_s = float(sync_s), float(r_s), float(u_s)
limited = req / 5.0
def span(sec):
    return f"{sec / 3600:.1f} h" if sec >= 3600 else f"{sec / 60:.1f} min" if sec >= 60 else f"{sec:.1f} s"
print(f"{s:<12} {rows} sessions")
print(f"  baseline: sync from the local simulator {sync_s:.1f} s ({rows / sync_s:,.0f} sessions/s, {req} requests, peak RSS {int(sync_kb) / 1024:.0f} MB);"
      f" at requests_per_second 5 the same re-read takes {span(limited)}")
print(f"  renormalize, every row rewritten: {r_s:.1f} s, {rows / r_s:,.0f} sessions/s, peak RSS {int(r_kb) / 1024:.0f} MB, 0 requests"
      f" (speed: {sync_s / r_s:.2g}x the unlimited sync's, {limited / r_s:,.2g}x the rate-limited re-read's)")
print(f"  renormalize, nothing changed:     {u_s:.1f} s, {rows / u_s:,.0f} sessions/s, peak RSS {int(u_kb) / 1024:.0f} MB")
PY
done
psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
