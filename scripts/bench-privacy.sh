#!/usr/bin/env bash
# Benchmark (issue 20): `erase --email` and `privacy apply` (keep -> hash) on a warehouse of
# N Take Control sessions (default 1,000,000, two chat lines each, written set-based as a
# keep-policy sync would store them; statistics never gathered, as with autovacuum off) plus
# the demo's other sources (`sessionsync demo --once`). While `privacy apply` runs, a writer
# updates converted sessions once every 100 ms, as a concurrent sync would: its slowest
# statement shows how long a batch can block it.
# Usage: scripts/bench-privacy.sh [N]   (needs DATABASE_URL or a local server)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
admin="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
name=sessionsync_privbench
db="${admin%/*}/$name"
cargo build --release -q
bin=./target/release/sessionsync
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

psql "$admin" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"
psql "$admin" -qc "CREATE DATABASE $name"
DATABASE_URL="$admin" $bin demo --once --database "$name" >"$tmp/demo.out" 2>"$tmp/demo.log" || true
grep -q "Warehouse" "$tmp/demo.out" || { cat "$tmp/demo.log"; exit 1; }
t0=$(date +%s.%N)
psql "$db" -q <<SQL
SET search_path = sessionsync;
INSERT INTO takecontrol_sessions (account, session_id, started_at, ended_at, duration_seconds,
    customer_name, customer_email, customer_number, computer_name, problem_description,
    tech_name, raw, content_hash)
SELECT 'bulk', g, now() - interval '300 days' + g * interval '20 seconds',
       now() - interval '300 days' + g * interval '20 seconds' + interval '5 minutes', 300,
       'Customer ' || g, 'c' || g || '@example.com', '+1 555 ' || g, 'PC-' || g, 'Printer offline',
       'Tess Tech',
       jsonb_build_object('id', g, 'customer_name', 'Customer ' || g, 'customer_email', 'c' || g || '@example.com',
                          'customer_number', '+1 555 ' || g, 'computer_name', 'PC-' || g,
                          'problem_description', 'Printer offline', 'tech_name', 'Tess Tech',
                          'chat_info', '<chat><message><text>hello ' || g || '</text></message></chat>'),
       'h' || g
  FROM generate_series(1, $N) g;
INSERT INTO takecontrol_chat_messages (account, session_id, seq, author, author_type, message)
SELECT 'bulk', g, s, CASE s WHEN 0 THEN 'Customer ' || g ELSE 'Tess Tech' END,
       CASE s WHEN 0 THEN 'customer' ELSE 'tech' END, 'line ' || s || ' of ' || g
  FROM generate_series(1, $N) g, generate_series(0, 1) s;
SQL
t1=$(date +%s.%N)
sessions=$(psql "$db" -Atc "select count(*) from sessionsync.takecontrol_sessions")
printf 'warehouse           %d Take Control sessions (+ the demo: %s SuperOffice, %s mluvii), %d chat lines; seeded in %.0f s\n' \
  "$sessions" "$(psql "$db" -Atc "select count(*) from sessionsync.superoffice_chat_sessions")" \
  "$(psql "$db" -Atc "select count(*) from sessionsync.mluvii_sessions")" \
  "$(psql "$db" -Atc "select count(*) from sessionsync.takecontrol_chat_messages")" "$(echo "$t1 - $t0" | bc -l)"

cat >"$tmp/keep.toml" <<TOML
[warehouse]
url = "$db"
[privacy]
hash_key = "bench-key-0123456789abcdef0123456789abcdef"
TOML
cat >"$tmp/hash.toml" <<TOML
[warehouse]
url = "$db"
[privacy]
customer_identity = "hash"
hash_key = "bench-key-0123456789abcdef0123456789abcdef"
TOML

person=$((N / 2))
for mode in --dry-run ""; do
  e0=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$tmp/rss" $bin --config "$tmp/keep.toml" erase --email "C$person@Example.com" $mode >"$tmp/erase.out"
  e1=$(date +%s.%N)
  printf 'erase --email %-9s %.3f s wall (process start to exit), peak RSS %.1f MB: %s\n' "$mode" "$(echo "$e1 - $e0" | bc -l)" \
    "$(echo "$(cat "$tmp/rss") / 1024" | bc -l)" "$(head -1 "$tmp/erase.out")"
done
left=$(psql "$db" -Atc "select count(*) from sessionsync.takecontrol_sessions where customer_email = 'c$person@example.com'")
printf 'after erase         %d rows still hold the address\n' "$left"

# A concurrent writer, as a sync writing sessions that are being converted.
writer() {
  local worst=0
  while [ -e "$tmp/writing" ]; do
    local id=$(( (RANDOM * 32768 + RANDOM) % N + 1 ))
    local w0 w1
    w0=$(date +%s%N)
    psql "$db" -qAtc "update sessionsync.takecontrol_sessions set notes = 'w' where account = 'bulk' and session_id = $id" >/dev/null
    w1=$(date +%s%N)
    local ms=$(( (w1 - w0) / 1000000 ))
    [ "$ms" -gt "$worst" ] && worst=$ms
    echo "$worst" >"$tmp/worst"
    sleep 0.1
  done
}
touch "$tmp/writing"
writer &
wpid=$!
a0=$(date +%s.%N)
/usr/bin/time -f "%M" -o "$tmp/rss" $bin --config "$tmp/hash.toml" privacy apply >"$tmp/apply.out"
a1=$(date +%s.%N)
rm -f "$tmp/writing"; wait "$wpid" || true
apply_s=$(echo "$a1 - $a0" | bc -l)
converted=$(grep -o 'brought [0-9]* session' "$tmp/apply.out" | grep -o '[0-9]*')
printf 'privacy apply       %.1f s, %d sessions, %.0f sessions/s, peak RSS %.1f MB (target >= 20000/s)\n' "$apply_s" "$converted" \
  "$(echo "$converted / $apply_s" | bc -l)" "$(echo "$(cat "$tmp/rss") / 1024" | bc -l)"
printf 'concurrent writer   slowest update %d ms (one batch: 5000 sessions, about %.0f ms per connection)\n' "$(cat "$tmp/worst" 2>/dev/null || echo 0)" "$(echo "5000 * 2 * 1000 / ($converted / $apply_s)" | bc -l)"
b0=$(date +%s.%N)
$bin --config "$tmp/hash.toml" privacy apply >"$tmp/apply2.out"
b1=$(date +%s.%N)
printf 'second apply        %.2f s: %s\n' "$(echo "$b1 - $b0" | bc -l)" "$(head -1 "$tmp/apply2.out")"
clear=$(psql "$db" -Atc "select count(*) from sessionsync.takecontrol_sessions where customer_email like '%@example.com'")
printf 'clear e-mails left  %d\n' "$clear"
psql "$admin" -qc "DROP DATABASE IF EXISTS $name WITH (FORCE)"
