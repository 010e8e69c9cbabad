#!/usr/bin/env bash
# Benchmark: a full Take Control sync of N simulated sessions into a fresh schema, against the
# baseline of the database's own ceiling: `psql \copy` of the very same rows (CSV written
# beforehand) into tables with the same keys. Prints wall time, sessions/s, rows/s, peak RSS.
# Usage: scripts/bench.sh [N]   (default 20000; needs DATABASE_URL or a local server)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000}"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="${admin%/*}/sessionsync_demo"
cargo build --release -q
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT

start=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$tmp/rss" ./target/release/sessionsync --log-format json demo --once --sources takecontrol --sessions "$N" >"$tmp/out" 2>"$tmp/log"
end=$(date +%s.%N)
sync_s=$(echo "$end - $start" | bc -l)
rows=$(psql "$db" -Atc "select (select count(*) from sessionsync.takecontrol_sessions) + (select count(*) from sessionsync.takecontrol_chat_messages) + (select count(*) from sessionsync.takecontrol_video_links)")

# Ceiling: the same rows through COPY into identical empty tables.
for t in takecontrol_sessions takecontrol_chat_messages takecontrol_video_links; do
  psql "$db" -qc "\\copy sessionsync.$t to '$tmp/$t.csv' csv"
done
psql "$db" -q <<SQL
drop schema if exists bench_ceiling cascade; create schema bench_ceiling;
create table bench_ceiling.takecontrol_sessions (like sessionsync.takecontrol_sessions including all);
create table bench_ceiling.takecontrol_chat_messages (like sessionsync.takecontrol_chat_messages including all);
create table bench_ceiling.takecontrol_video_links (like sessionsync.takecontrol_video_links including all);
SQL
cstart=$(date +%s.%N)
psql "$db" -q <<SQL
\\copy bench_ceiling.takecontrol_sessions from '$tmp/takecontrol_sessions.csv' csv
\\copy bench_ceiling.takecontrol_chat_messages from '$tmp/takecontrol_chat_messages.csv' csv
\\copy bench_ceiling.takecontrol_video_links from '$tmp/takecontrol_video_links.csv' csv
SQL
cend=$(date +%s.%N)
copy_s=$(echo "$cend - $cstart" | bc -l)
psql "$db" -qc "drop schema bench_ceiling cascade"

printf 'sessions            %d\n' "$N"
printf 'rows (all tables)   %d\n' "$rows"
printf 'sync wall time      %.2f s  (process start to exit: simulator, HTTP, parse, upsert)\n' "$sync_s"
printf 'sync sessions/s     %.0f\n' "$(echo "$N / $sync_s" | bc -l)"
printf 'sync rows/s         %.0f\n' "$(echo "$rows / $sync_s" | bc -l)"
printf 'peak RSS            %.1f MB\n' "$(echo "$(cat "$tmp/rss") / 1024" | bc -l)"
printf 'baseline: COPY      %.2f s  (%.0f rows/s)\n' "$copy_s" "$(echo "$rows / $copy_s" | bc -l)"
printf 'ratio sync/COPY     %.2fx\n' "$(echo "$sync_s / $copy_s" | bc -l)"
