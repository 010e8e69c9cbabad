#!/usr/bin/env bash
# Benchmark (issue 6): a full Take Control sync of N simulated sessions (5 chat messages each)
# into a fresh database, against the ceiling: `psql \copy` of the very same rows (CSV written
# beforehand) into tables with the same keys. The simulator runs as its own process, so the
# daemon's peak RSS is its own. Also times a no-op incremental cycle.
# Usage: scripts/bench.sh [N] [RUNS]   (default 200000 and 3; needs DATABASE_URL or a local
# server). With RUNS > 1 the sync and the ceiling are measured RUNS times, alternately, and the
# headline is the median ratio of the sync to the COPY into tables with the same primary keys
# and no foreign keys (the warehouse declares none since migration 0010).
# COMPARE_PRIVACY=1: each run syncs twice, under `keep` and under customer_identity = "hash",
# network = "drop" (issue 20's target: within 1.10x), and the COPY ceiling is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
RUNS="${2:-${RUNS:-3}}"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="${admin%/*}/sessionsync_bench"
cargo build --release -q
bin=./target/release/sessionsync
tmp="$(mktemp -d)"
sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
[ -n "${KEEP_LOG:-}" ] && trap 'cp "$tmp/sync.log" /tmp/bench-sync.log; cleanup' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
$bin simulate --source takecontrol --sessions "$N" --messages 5 --days 7 --listen "127.0.0.1:$port" >"$tmp/sim.out" 2>"$tmp/sim.log" &
sim_pid=$!
for _ in $(seq 1 600); do grep -q "simulator with" "$tmp/sim.out" 2>/dev/null && break; sleep 0.1; done
start=$(grep '^start = ' "$tmp/sim.out" | cut -d'"' -f2)

measure() { # [privacy section]
privacy="${1:-}"
psql "$admin" -qc "DROP DATABASE IF EXISTS sessionsync_bench WITH (FORCE)"
psql "$admin" -qc "CREATE DATABASE sessionsync_bench"

cat >"$tmp/bench.toml" <<TOML
[warehouse]
url = "$db"
$privacy
[[takecontrol]]
account = "bench"
base_url = "http://127.0.0.1:$port"
api_key = "simulated-key"
start = "$start"
window = "${WINDOW:-1d}"
lookback = "1h"
requests_per_second = 10000
timeout = "120s"
TOML

$bin --config "$tmp/bench.toml" migrate >/dev/null
if [ -n "${NO_FK:-}" ]; then  # profiling aid: what the child tables' foreign keys cost
  psql "$db" -qc "alter table sessionsync.takecontrol_chat_messages drop constraint takecontrol_chat_messages_account_session_id_fkey; alter table sessionsync.takecontrol_video_links drop constraint takecontrol_video_links_account_session_id_fkey"
fi
psql "$db" -qc checkpoint
t0=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$tmp/rss" $bin --config "$tmp/bench.toml" --log-format json sync >"$tmp/sync.out" 2>"$tmp/sync.log"
t1=$(date +%s.%N)
sync_s=$(echo "$t1 - $t0" | bc -l)
rows=$(psql "$db" -Atc "select (select count(*) from sessionsync.takecontrol_sessions) + (select count(*) from sessionsync.takecontrol_chat_messages) + (select count(*) from sessionsync.takecontrol_video_links)")
sessions=$(psql "$db" -Atc "select count(*) from sessionsync.takecontrol_sessions")

# No-op incremental cycle: nothing new at the source.
t2=$(date +%s.%N)
$bin --config "$tmp/bench.toml" --log-format json sync >"$tmp/noop.out" 2>/dev/null
t3=$(date +%s.%N)
noop_s=$(echo "$t3 - $t2" | bc -l)
noop_run_ms=$(psql "$db" -Atc "select round(extract(epoch from finished_at - started_at) * 1000) from sessionsync.sync_runs order by run_id desc limit 1")
noop_req=$(psql "$db" -Atc "select requests || ' requests, ' || rows_written || ' rows rewritten, ' || rows_unchanged || ' unchanged' from sessionsync.sync_runs order by run_id desc limit 1")
noop_windows=$(grep -c '"window committed"' "$tmp/noop.out" "$tmp/noop.log" 2>/dev/null | tail -1 || true)

[ -n "${COMPARE_PRIVACY:-}" ] && return 0
# Ceiling: the same rows through COPY into empty tables with the same keys and constraints as
# the sync's own (LIKE ... INCLUDING ALL copies all but the foreign keys, which are added after).
# Measured a second time without the child tables' foreign keys, as a lower bound.
for t in takecontrol_sessions takecontrol_chat_messages takecontrol_video_links; do
  psql "$db" -qc "\\copy sessionsync.$t to '$tmp/$t.csv' csv"
done
copy_ceiling() { # with_fk (yes/no) -> seconds
  psql "$db" -q <<SQL
drop schema if exists bench_ceiling cascade;
create schema bench_ceiling;
create table bench_ceiling.takecontrol_sessions (like sessionsync.takecontrol_sessions including all);
create table bench_ceiling.takecontrol_chat_messages (like sessionsync.takecontrol_chat_messages including all);
create table bench_ceiling.takecontrol_video_links (like sessionsync.takecontrol_video_links including all);
SQL
  if [ "$1" = yes ]; then
    psql "$db" -q <<SQL
alter table bench_ceiling.takecontrol_chat_messages add foreign key (account, session_id) references bench_ceiling.takecontrol_sessions on delete cascade;
alter table bench_ceiling.takecontrol_video_links add foreign key (account, session_id) references bench_ceiling.takecontrol_sessions on delete cascade;
SQL
  fi
  psql "$db" -qc checkpoint
  local c0 c1
  c0=$(date +%s.%N)
  psql "$db" -q <<SQL
\\copy bench_ceiling.takecontrol_sessions from '$tmp/takecontrol_sessions.csv' csv
\\copy bench_ceiling.takecontrol_chat_messages from '$tmp/takecontrol_chat_messages.csv' csv
\\copy bench_ceiling.takecontrol_video_links from '$tmp/takecontrol_video_links.csv' csv
SQL
  c1=$(date +%s.%N)
  echo "$c1 - $c0" | bc -l
}
fks=$(psql "$db" -Atc "select count(*) from pg_constraint where contype = 'f' and connamespace = 'sessionsync'::regnamespace and conrelid::regclass::text like '%takecontrol%'")
if [ "$fks" -gt 0 ]; then
  copy_s=$(copy_ceiling yes)
  copy_nofk_s=$(copy_ceiling no)
else
  copy_s=$(copy_ceiling no)
  copy_nofk_s=""
fi
psql "$db" -qc "drop schema bench_ceiling cascade"

}

if [ -n "${COMPARE_PRIVACY:-}" ]; then
  hashed='[privacy]
customer_identity = "hash"
network = "drop"
hash_key = "bench-key-0123456789abcdef0123456789abcdef"'
  keep_all=(); hash_all=(); pr_all=()
  for run in $(seq 1 "$RUNS"); do
    measure ""; keep_s=$sync_s; keep_rss=$(cat "$tmp/rss")
    measure "$hashed"; hash_s=$sync_s; hash_rss=$(cat "$tmp/rss")
    hashed_rows=$(psql "$db" -Atc "select count(*) from sessionsync.takecontrol_sessions where length(customer_email) = 64")
    r=$(echo "$hash_s / $keep_s" | bc -l)
    keep_all+=("$keep_s"); hash_all+=("$hash_s"); pr_all+=("$r")
    printf 'run %d: keep %.2f s (%.0f sessions/s, %.1f MB), hash %.2f s (%.0f sessions/s, %.1f MB; %d e-mails hashed), ratio %.3fx\n' \
      "$run" "$keep_s" "$(echo "$sessions / $keep_s" | bc -l)" "$(echo "$keep_rss / 1024" | bc -l)" \
      "$hash_s" "$(echo "$sessions / $hash_s" | bc -l)" "$(echo "$hash_rss / 1024" | bc -l)" "$hashed_rows" "$r"
  done
  median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
  printf 'sessions            %d (5 chat messages each), %d rows\n' "$sessions" "$rows"
  printf 'keep                %.2f s median\n' "$(median "${keep_all[@]}")"
  printf 'hash + drop         %.2f s median\n' "$(median "${hash_all[@]}")"
  printf 'RATIO hash/keep     %.3fx  (median of %d runs; target <= 1.10x)\n' "$(median "${pr_all[@]}")" "$RUNS"
  exit 0
fi

sync_all=(); copy_all=(); ratio_all=(); rss_all=()
for run in $(seq 1 "$RUNS"); do
  measure
  ratio=$(echo "$sync_s / $copy_s" | bc -l)
  sync_all+=("$sync_s"); copy_all+=("$copy_s"); ratio_all+=("$ratio"); rss_all+=("$(cat "$tmp/rss")")
  printf 'run %d: sync %.2f s, COPY %.2f s, ratio %.2fx, peak RSS %.1f MB\n' "$run" "$sync_s" "$copy_s" "$ratio" "$(echo "$(cat "$tmp/rss") / 1024" | bc -l)"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
sync_s=$(median "${sync_all[@]}"); copy_s=$(median "${copy_all[@]}"); ratio_med=$(median "${ratio_all[@]}")
rss_med=$(median "${rss_all[@]}")
printf 'sessions            %d (5 chat messages each; windows sized by the engine, at most %s)\n' "$sessions" "${WINDOW:-1d}"
printf 'rows (all tables)   %d\n' "$rows"
printf 'sync wall time      %.2f s  (the sync process, start to exit; simulator in its own process)\n' "$sync_s"
printf 'sync sessions/s     %.0f\n' "$(echo "$sessions / $sync_s" | bc -l)"
printf 'sync rows/s         %.0f\n' "$(echo "$rows / $sync_s" | bc -l)"
printf 'daemon peak RSS     %.1f MB (median of %d)\n' "$(echo "$rss_med / 1024" | bc -l)" "$RUNS"
printf 'ceiling: COPY       %.2f s  (%.0f rows/s; tables with the same keys, %d foreign keys)\n' "$copy_s" "$(echo "$rows / $copy_s" | bc -l)" "$fks"
printf 'RATIO sync/COPY     %.2fx  (median of %d runs; the headline: COPY into tables with the same primary keys%s; target <= 1.5x)\n' "$ratio_med" "$RUNS" "$([ "$fks" -gt 0 ] && echo ' and the foreign keys' || echo ', no foreign keys')"
if [ -n "$copy_nofk_s" ]; then
  printf 'COPY, no FKs        %.2f s  (lower bound: the ceiling without the child tables'"'"' foreign keys)\n' "$copy_nofk_s"
  printf 'ratio sync/that     %.2fx  (NO_FK=1 compares a sync without them too)\n' "$(echo "$sync_s / $copy_nofk_s" | bc -l)"
fi
printf 'no-op cycle         %.0f ms process, %s ms run; %s\n' "$(echo "$noop_s * 1000" | bc -l)" "$noop_run_ms" "$noop_req"
