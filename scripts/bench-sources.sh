#!/usr/bin/env bash
# The write path of mluvii and SuperOffice against the same kind of ceiling as scripts/bench.sh:
# N simulated sessions (default 10,000) synced into a fresh database with per-window debug timing;
# the time spent writing (rows, rejects, watermark and commit: the sum of the windows' write_ms and
# commit_ms) is compared with `psql \copy` of the very same rows into empty tables with the same
# keys. Fetching is left out on purpose: both sources read each session by id (two requests per
# session), which the vendors' rate limits bound, not the warehouse.
# Usage: scripts/bench-sources.sh [N]   (needs DATABASE_URL or a local server)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-10000}"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="${admin%/*}/sessionsync_bench_sources"
cargo build --release -q
bin=./target/release/sessionsync
tmp="$(mktemp -d)"
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

bench() { # bench SOURCE TABLE...
  local source=$1; shift
  psql "$admin" -qc "DROP DATABASE IF EXISTS sessionsync_bench_sources WITH (FORCE)"
  psql "$admin" -qc "CREATE DATABASE sessionsync_bench_sources"
  $bin simulate --source "$source" --sessions "$N" --days 7 --listen 127.0.0.1:0 >"$tmp/sim.out" 2>"$tmp/sim.err" &
  sim_pid=$!
  for _ in $(seq 1 600); do grep -q '^start = ' "$tmp/sim.out" 2>/dev/null && break; sleep 0.1; done
  { printf '[warehouse]\nurl = "%s"\n' "$db"
    # The entry without the simulator's own request rate: the benchmark sets it.
    sed -n '/^\[\[/,$p' "$tmp/sim.out" | grep -v '^requests_per_second'
    printf 'requests_per_second = 10000\ntimeout = "120s"\nconcurrency = 16\n'
  } >"$tmp/bench.toml"
  local t0 t1
  t0=$(date +%s.%N)
  RUST_LOG=sessionsync=debug $bin --config "$tmp/bench.toml" --log-format json sync >"$tmp/sync.out" 2>"$tmp/sync.log"
  t1=$(date +%s.%N)
  kill "$sim_pid" 2>/dev/null; wait "$sim_pid" 2>/dev/null || true; sim_pid=""
  local write_ms
  write_ms=$(python3 - "$tmp/sync.log" <<'PY'
import json, sys
total = 0.0
for line in open(sys.argv[1]):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("message") == "window written":
        total += j.get("write_ms", 0) + j.get("commit_ms", 0)
print(f"{total:.0f}")
PY
)
  local rows=0 t
  for t in "$@"; do
    rows=$((rows + $(psql "$db" -Atc "select count(*) from sessionsync.$t")))
    psql "$db" -qc "\\copy sessionsync.$t to '$tmp/$t.csv' csv"
  done
  psql "$db" -q -c "create schema bench_ceiling" >/dev/null
  for t in "$@"; do
    psql "$db" -q -c "create table bench_ceiling.$t (like sessionsync.$t including all)" >/dev/null
  done
  psql "$db" -qc checkpoint
  local c0 c1
  c0=$(date +%s.%N)
  for t in "$@"; do psql "$db" -qc "\\copy bench_ceiling.$t from '$tmp/$t.csv' csv"; done
  c1=$(date +%s.%N)
  local copy_ms sync_s
  copy_ms=$(echo "($c1 - $c0) * 1000" | bc -l)
  sync_s=$(echo "$t1 - $t0" | bc -l)
  printf '%-12s %d sessions, %d rows: write path %.0f ms, COPY %.0f ms, ratio %.2fx  (whole sync with fetching: %.1f s)\n' \
    "$source" "$(psql "$db" -Atc "select count(*) from sessionsync.$1")" "$rows" "$write_ms" "$copy_ms" \
    "$(echo "$write_ms / $copy_ms" | bc -l)" "$sync_s"
}

bench mluvii mluvii_sessions mluvii_session_operators mluvii_routing_events mluvii_session_durations
bench superoffice superoffice_chat_sessions superoffice_chat_messages
