#!/usr/bin/env bash
# Rate-limited accounts (issue: "bound by the vendors, not by connections").
#
#   scripts/bench-rate-limited.sh [ACCOUNTS=100] [SESSIONS=100]
#
# Every account runs at the default requests_per_second (5), as real vendor accounts do, so a
# stream spends nearly all its time waiting on its vendor. For each source (SOURCES, default
# "mluvii superoffice takecontrol"), against one `sessionsync simulate --source S --sessions
# SESSIONS --days 2` that every account reads (each account has its own client-side rate
# ceiling, stored under its own name), with default engine and pool settings:
#   - one account in one `sync` (the baseline), into an empty warehouse;
#   - ACCOUNTS accounts in one `sync`: wall time, ratio to one account (target <= 1.2x at 12,
#     <= 1.5x at 100), peak RSS (target <= 150 MB), and the most warehouse connections seen at
#     once in pg_stat_activity (sampled every 0.1 s; the pool is 8 by default).
# Then, unless STEADY=0, the daemon's steady state: ACCOUNTS mluvii accounts on one schedule.
# The issue's 5-minute schedule is shortened to STEADY_SCHEDULE (default every minute) over
# STEADY_CYCLES cycles (default 3), with lookback = STEADY_LOOKBACK (default 48h: every cycle
# lists all SESSIONS of every account again; the simulator's data does not change, so what a
# cycle costs the vendor is printed as requests per run). Reports whether every cycle of every
# stream finished before the next instant and the daemon's
# sessionsync_schedule_missed_instants_total (target: 0).
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) names the server; a
# database sessionsync_bench_rate is created afresh on it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PGOPTIONS="-c client_min_messages=warning"
ACCOUNTS=${1:-100}
SESSIONS=${2:-100}
SOURCES=${SOURCES:-mluvii superoffice takecontrol}
STEADY=${STEADY:-1}
STEADY_SCHEDULE=${STEADY_SCHEDULE:-* * * * *}
STEADY_CYCLES=${STEADY_CYCLES:-3}
STEADY_LOOKBACK=${STEADY_LOOKBACK:-48h}
ADMIN_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=sessionsync_bench_rate
BIN=target/release/sessionsync
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --quiet --bin sessionsync
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }
db_url=$(python3 -c 'import sys,urllib.parse as u; p=u.urlparse(sys.argv[1]); print(p._replace(path="/"+sys.argv[2]).geturl())' "$ADMIN_URL" "$DB")
fresh_db() { psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null; }
q() { psql -At "$db_url" -c "$1"; }

simulate() { # simulate SOURCE -> writes $work/SOURCE.block (the account's config, account = "sim")
  "$BIN" simulate --source "$1" --sessions "$SESSIONS" --days 2 --listen 127.0.0.1:0 >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^start' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  # Without the simulator's own request rate: the accounts keep the default (5 per second).
  sed -n '/^\[\[/,$p' "$work/$1.out" | grep -v '^requests_per_second' >"$work/$1.block"
  grep -qE '^(base_url|environment)' "$work/$1.block" || { echo "the $1 simulator did not start" >&2; exit 1; }
}
config() { # config SOURCE N FILE [SCHEDULE LOOKBACK]
  {
    printf '[warehouse]\nurl = "%s"\n[server]\nlisten = "127.0.0.1:0"\n' "$db_url"
    for i in $(seq 1 "$2"); do
      echo
      sed "s/^account = \"sim\"/account = \"acct$(printf %03d "$i")\"/" "$work/$1.block"
      [ -n "${4:-}" ] && printf 'schedule = "%s"\nlookback = "%s"\n' "$4" "$5"
      echo 'timeout = "60s"'
    done
  } >"$3"
}
sample_connections() { # until killed, the most connections to $DB at once -> $work/conns
  local most=0 n
  echo 0 >"$work/conns"
  while true; do
    n=$(psql -At "$ADMIN_URL" -c "SELECT count(*) FROM pg_stat_activity WHERE datname = '$DB' AND pid <> pg_backend_pid()" 2>/dev/null || echo 0)
    [ "$n" -gt "$most" ] && { most=$n; echo "$most" >"$work/conns"; }
    sleep 0.1
  done
}
timed_sync() { # timed_sync CONFIG -> prints "wall_s rss_kb max_connections"
  sample_connections & local sampler=$!
  /usr/bin/time -f '%e %M' -o "$work/time" "$BIN" sync --config "$1" --log-format json >"$work/sync.out" 2>"$work/sync.err" \
    || { kill $sampler; echo "sync failed:" >&2; tail -5 "$work/sync.out" "$work/sync.err" >&2; exit 1; }
  kill $sampler; wait $sampler 2>/dev/null || true
  echo "$(cat "$work/time") $(cat "$work/conns")"
}

echo "bench-rate-limited: $ACCOUNTS accounts per source, $SESSIONS sessions each over 2 days, requests_per_second = 5 (default), default engine and pool, $(nproc) cores"
for source in $SOURCES; do
  simulate "$source"
  fresh_db
  config "$source" 1 "$work/one.toml"
  read -r one_s one_rss one_conns < <(timed_sync "$work/one.toml")
  requests=$(q "SELECT sum(requests) FROM sessionsync.sync_runs")
  fresh_db
  config "$source" "$ACCOUNTS" "$work/many.toml"
  read -r many_s many_rss many_conns < <(timed_sync "$work/many.toml")
  ok=$(q "SELECT count(*) FROM sessionsync.sync_runs WHERE status = 'succeeded'")
  ratio=$(python3 -c "print(f'{$many_s / $one_s:.2f}')")
  echo "$source: 1 account ${one_s} s ($requests requests, $one_conns connections, $((one_rss / 1024)) MB) | $ACCOUNTS accounts ${many_s} s = ${ratio}x one account, $ok/$ACCOUNTS succeeded, peak RSS $((many_rss / 1024)) MB, at most $many_conns warehouse connections"
done

[ "$STEADY" = 1 ] || exit 0
case " $SOURCES " in *" mluvii "*) ;; *) simulate mluvii ;; esac
fresh_db
config mluvii "$ACCOUNTS" "$work/steady.toml" "$STEADY_SCHEDULE" "$STEADY_LOOKBACK"
# The daemon's metrics address: a free port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s/^listen = \"127.0.0.1:0\"/listen = \"127.0.0.1:$port\"/" "$work/steady.toml"
"$BIN" migrate --config "$work/steady.toml" >/dev/null
# The first cycle reads everything from `start`; the steady state is the cycles after it.
"$BIN" sync --config "$work/steady.toml" --log-format json >/dev/null 2>&1
sample_connections & sampler=$!
"$BIN" run --config "$work/steady.toml" --log-format json >"$work/run.out" 2>"$work/run.err" &
daemon=$!
pids+=($daemon)
python3 - "$STEADY_SCHEDULE" "$STEADY_CYCLES" <<'EOF'
import sys, time, datetime
# Sleep until just before the (cycles+1)-th instant of a "*/N * * * *" or "* * * * *" schedule.
sched, cycles = sys.argv[1], int(sys.argv[2])
step = 1 if sched.split()[0] == "*" else int(sched.split()[0].split("/")[1])
now = datetime.datetime.now(datetime.timezone.utc)
minute = now.replace(second=0, microsecond=0)
first = minute + datetime.timedelta(minutes=step - minute.minute % step)
end = first + datetime.timedelta(minutes=step * cycles) - datetime.timedelta(seconds=2)
time.sleep(max(0, (end - now).total_seconds()))
EOF
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$daemon/status")
missed=$(curl -s "http://127.0.0.1:$port/metrics" | awk '/^sessionsync_schedule_missed_instants_total\{/ {s += $2} END {print s + 0}')
kill -TERM "$daemon"; wait "$daemon" || true
kill $sampler; wait $sampler 2>/dev/null || true
step=$(python3 -c "s='$STEADY_SCHEDULE'.split()[0]; print(1 if s=='*' else int(s.split('/')[1]))")
# The daemon's runs (the first sync's are the first ACCOUNTS run ids).
runs=$(q "SELECT count(*) FROM sessionsync.sync_runs WHERE status <> 'running' AND run_id > $ACCOUNTS")
late=$(q "SELECT count(*) FROM sessionsync.sync_runs WHERE run_id > $ACCOUNTS AND finished_at IS NOT NULL AND finished_at > date_trunc('minute', started_at) + interval '1 minute' * $step")
read -r longest mean_requests < <(q "SELECT round(max(extract(epoch FROM finished_at - started_at))::numeric, 1), round(avg(requests)) FROM sessionsync.sync_runs WHERE finished_at IS NOT NULL AND run_id > $ACCOUNTS" | tr '|' ' ')
echo "steady state: $ACCOUNTS mluvii accounts on \"$STEADY_SCHEDULE\" for $STEADY_CYCLES cycles: $runs runs ($mean_requests requests each on average, lookback $STEADY_LOOKBACK), $late finished after the next instant, longest run ${longest} s, missed instants $missed (target 0), peak RSS $((hwm_kb / 1024)) MB, at most $(cat "$work/conns") warehouse connections"
