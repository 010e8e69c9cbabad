#!/usr/bin/env bash
# Many accounts in one warehouse (issue: "every account syncs as fast as the first").
#
#   scripts/bench-accounts.sh [ACCOUNTS=50] [SESSIONS=20000]
#
# One `sessionsync simulate` serves SESSIONS Take Control sessions over 30 days; every account
# of the config reads it (same data, stored under its own account name). Prints:
#   - the single-account sync into an empty warehouse (the baseline);
#   - ACCOUNTS accounts in one `sync` (engine.max_concurrent_streams as configured: default 256, CONCURRENCY=N to set it; docs/benchmarks.md quotes CONCURRENCY=4):
#     wall time against baseline x ACCOUNTS, the first and the last account's run time (the last
#     ones sync beside everything stored before them), peak RSS;
#   - one more account synced alone beside all of them, against the single-account baseline;
#   - the no-op cycle of all accounts (a second `sync`: lookback re-reads, nothing rewritten).
# Targets: last <= 1.3x first; whole <= 0.8x the sequential sum; no-op < 5 s; peak RSS <= 150 MB.
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server; a
# database sessionsync_bench_accounts is created afresh on it.
set -euo pipefail
cd "$(dirname "$0")/.."
ACCOUNTS=${1:-50}
SESSIONS=${2:-20000}
CONCURRENCY=${CONCURRENCY:-}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=sessionsync_bench_accounts
BIN=target/release/sessionsync
work=$(mktemp -d)
sim_pid=
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin sessionsync
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }

"$BIN" simulate --source takecontrol --sessions "$SESSIONS" --days 30 --messages 5 --listen 127.0.0.1:0 >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do grep -q '^base_url' "$work/sim.out" 2>/dev/null && break; sleep 0.1; done
base_url=$(sed -n 's/^base_url = "\(.*\)"/\1/p' "$work/sim.out")
start=$(sed -n 's/^start = "\(.*\)"/\1/p' "$work/sim.out")
[ -n "$base_url" ] || { echo "the simulator did not start" >&2; exit 1; }

db_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$ADMIN_URL" "$DB")
fresh_db() {
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
}
config() { # config N FILE
  {
    echo '[warehouse]'
    echo "url = \"$db_url\""
    [ -n "$CONCURRENCY" ] && printf '[engine]\nmax_concurrent_streams = %s\n' "$CONCURRENCY"
    for i in $(seq 1 "$1"); do
      printf '\n[[takecontrol]]\naccount = "acct%03d"\nbase_url = "%s"\napi_key = "simulated-key"\nstart = "%s"\nwindow = "1d"\nrequests_per_second = 1000\ntimeout = "60s"\n' \
        "$i" "$base_url" "$start"
    done
  } >"$2"
}
timed_sync() { # timed_sync CONFIG -> prints "wall_s rss_kb"
  /usr/bin/time -f '%e %M' -o "$work/time" "$BIN" sync --config "$1" --log-format json >"$work/sync.out" 2>"$work/sync.err" \
    || { echo "sync failed:" >&2; tail -5 "$work/sync.out" "$work/sync.err" >&2; exit 1; }
  cat "$work/time"
}
q() { psql -At "$db_url" -c "$1"; }

echo "bench-accounts: $ACCOUNTS accounts x $SESSIONS Take Control sessions (5 chat messages each), $(nproc) cores"
fresh_db
config 1 "$work/one.toml"
read -r one_s one_rss < <(timed_sync "$work/one.toml")
echo "single account, empty warehouse:        ${one_s} s   (peak RSS $((one_rss / 1024)) MB)"

fresh_db
config "$ACCOUNTS" "$work/many.toml"
read -r many_s many_rss < <(timed_sync "$work/many.toml")
seq_sum=$(python3 -c "print(f'{$one_s * $ACCOUNTS:.1f}')")
ratio=$(python3 -c "print(f'{$many_s / ($one_s * $ACCOUNTS):.2f}')")
rows=$(q "SELECT sum(rows_written) FROM sessionsync.sync_runs")
read -r first_s last_s < <(q "WITH r AS (SELECT extract(epoch FROM finished_at - started_at) AS s, row_number() OVER (ORDER BY started_at) AS n, count(*) OVER () AS c FROM sessionsync.sync_runs)
  SELECT round((SELECT avg(s) FROM r WHERE n <= 4)::numeric, 2), round((SELECT avg(s) FROM r WHERE n > c - 4)::numeric, 2)" | tr '|' ' ')
echo "$ACCOUNTS accounts in one sync:             ${many_s} s   vs ${seq_sum} s sequential (${ratio}x; target <= 0.8x)   $rows sessions written"
echo "first 4 accounts (mean run):             ${first_s} s"
echo "last 4 accounts (mean run, beside the rest): ${last_s} s   ($(python3 -c "print(f'{$last_s / $first_s:.2f}')")x the first; target <= 1.3x)"
echo "peak RSS:                                $((many_rss / 1024)) MB   (target <= 150 MB; single account $((one_rss / 1024)) MB)"

# One more account, alone, beside everything stored: as fast as into an empty warehouse?
config "$((ACCOUNTS + 1))" "$work/plus.toml"
newest=$(printf 'acct%03d' "$((ACCOUNTS + 1))")
/usr/bin/time -f '%e' -o "$work/time" "$BIN" sync --config "$work/plus.toml" --account "$newest" --log-format json >/dev/null 2>&1
plus_s=$(cat "$work/time")
echo "one more account beside the $ACCOUNTS stored: ${plus_s} s   ($(python3 -c "print(f'{$plus_s / $one_s:.2f}')")x the single account into an empty warehouse)"

read -r noop_s noop_rss < <(timed_sync "$work/many.toml")
rewritten=$(q "SELECT sum(rows_written) FROM (SELECT rows_written FROM sessionsync.sync_runs ORDER BY run_id DESC LIMIT $ACCOUNTS) x")
requests=$(q "SELECT sum(requests) FROM (SELECT requests FROM sessionsync.sync_runs ORDER BY run_id DESC LIMIT $ACCOUNTS) x")
echo "no-op cycle of all $ACCOUNTS accounts:        ${noop_s} s   ($requests requests, $rewritten rows rewritten; target < 5 s)"
