#!/usr/bin/env bash
# The completeness audit's cost (docs/benchmarks.md, "The completeness audit").
#
#   scripts/bench-audit.sh [SESSIONS_PER_DAY=100] [ACCOUNTS=12]
#
# For each source (SOURCES, default "takecontrol mluvii superoffice"), against one `sessionsync
# simulate --source S --days 31` holding SESSIONS_PER_DAY sessions a day: ACCOUNTS accounts are
# synced first (at the simulator's own request rate: preparation, not measured), then audited at
# the default requests_per_second (5), as the daemon would: a 7-day and a 30-day audit of one
# account, then of ACCOUNTS accounts at once. Printed per case: wall time, requests sent (from
# sync_runs, stream `audit`), the requests the listing needs at the largest page (page_size 1000,
# the most the vendors' public clients use; Take Control's history is one request), peak RSS, and
# the audit's share of one account's daily request budget (5/s × 86,400 s) at the default schedule
# (one audit a day). Nothing is missing or gone: this is the steady state, what every day costs.
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server; a database
# sessionsync_bench_audit is created afresh on it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGOPTIONS="-c client_min_messages=warning"
PER_DAY=${1:-100}
ACCOUNTS=${2:-12}
SOURCES=${SOURCES:-takecontrol mluvii superoffice}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=sessionsync_bench_audit
BIN=target/release/sessionsync
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin sessionsync
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
db_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$ADMIN_URL" "$DB")
q() { psql -At "$db_url" -c "$1"; }

simulate() { # simulate SOURCE -> $work/SOURCE.block (account = "sim", the simulator's request rate)
  "$BIN" simulate --source "$1" --sessions "$((PER_DAY * 31))" --days 31 --listen 127.0.0.1:0 >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^start' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  sed -n '/^\[\[/,$p' "$work/$1.out" >"$work/$1.block"
  grep -qE '^(base_url|environment)' "$work/$1.block" || { echo "the $1 simulator did not start" >&2; exit 1; }
}
config() { # config SOURCE N FILE RATE(fast|default)
  {
    printf '[warehouse]\nurl = "%s"\n[server]\nlisten = "127.0.0.1:0"\n' "$db_url"
    for i in $(seq 1 "$2"); do
      echo
      if [ "$4" = fast ]; then
        sed "s/^account = \"sim\"/account = \"acct$(printf %03d "$i")\"/" "$work/$1.block"
      else
        sed "s/^account = \"sim\"/account = \"acct$(printf %03d "$i")\"/" "$work/$1.block" | grep -v '^requests_per_second'
      fi
      printf 'timeout = "60s"\npage_size = 1000\n' | { [ "$1" = takecontrol ] && grep -v page_size || cat; }
    done
  } >"$3"
}
timed_audit() { # timed_audit CONFIG DAYS [ACCOUNT] -> "wall_s rss_kb"
  local from to
  to=$(date -u +%F)
  from=$(date -u -d "$to - $2 days" +%F)
  /usr/bin/time -f '%e %M' -o "$work/time" "$BIN" audit --config "$1" --from "$from" --to "$to" ${3:+--account "$3"} --log-format json \
    >"$work/audit.out" 2>"$work/audit.err" || { echo "audit failed:" >&2; tail -5 "$work/audit.out" "$work/audit.err" >&2; exit 1; }
  cat "$work/time"
}

echo "bench-audit: $PER_DAY sessions a day for 31 days per account, $ACCOUNTS accounts per source, audits at requests_per_second = 5 (default), $(nproc) cores"
for source in $SOURCES; do
  simulate "$source"
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  config "$source" "$ACCOUNTS" "$work/fast.toml" fast
  config "$source" "$ACCOUNTS" "$work/slow.toml" default
  "$BIN" sync --config "$work/fast.toml" --log-format json >/dev/null 2>"$work/sync.err" \
    || { echo "the preparing sync failed" >&2; tail -5 "$work/sync.err" >&2; exit 1; }
  for days in 7 30; do
    for n in 1 "$ACCOUNTS"; do
      before=$(q "SELECT coalesce(max(run_id), 0) FROM sessionsync.sync_runs")
      account=""; [ "$n" = 1 ] && account=acct001
      read -r wall rss < <(timed_audit "$work/slow.toml" "$days" $account)
      read -r runs requests listed missing gone incomplete < <(q "SELECT count(*), sum(r.requests), (SELECT sum(listed) FROM sessionsync.audits a WHERE a.run_id > $before), (SELECT sum(missing) FROM sessionsync.audits a WHERE a.run_id > $before), (SELECT sum(gone) FROM sessionsync.audits a WHERE a.run_id > $before), (SELECT count(*) FROM sessionsync.audits a WHERE a.run_id > $before AND NOT complete) FROM sessionsync.sync_runs r WHERE r.stream = 'audit' AND r.run_id > $before" | tr '|' ' ')
      per=$((listed / n))
      case "$source" in
        takecontrol) need=1 ;;
        *) need=$(( per / 1000 + 1 )) ;;
      esac
      share=$(python3 -c "print(f'{100 * $requests / $n / (5 * 86400):.4f}')")
      echo "$source: $days-day audit of $n account(s): ${wall} s, $requests requests ($((requests / n)) per account; the listing needs $need at the largest page), $per sessions listed per account, missing $missing, gone $gone, incomplete days $incomplete, peak RSS $((rss / 1024)) MB; ${share}% of an account's daily request budget"
    done
  done
done
