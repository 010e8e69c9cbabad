#!/usr/bin/env bash
# The docker-compose deployment, built and run for real (too slow for every CI run; CI replays
# the build context instead: scripts/check-docker-context.sh).
#
#   sudo scripts/docker-smoke.sh            # as root: it may start dockerd and install packages
#
# 1. Starts dockerd if none answers (installing Debian's docker.io, docker-compose and debootstrap
#    when missing).
# 2. Makes local stand-ins for the images the stack names, since no image registry is reachable
#    here: a Debian bookworm root file system from Debian's packages (debootstrap) tagged as
#    debian:bookworm-slim; the same plus gcc and this machine's Rust toolchain as the Rust
#    builder; PostgreSQL 15 and Prometheus from Debian's packages as postgres:15 and
#    prom/prometheus. They are cached (images and root file systems under $SMOKE_CACHE) and
#    never shipped. Grafana has no Debian package: an override file leaves it out of the stack
#    (scripts/check-docker.sh validates its files; its dashboard queries are run here for real).
# 3. Builds the image from a scratch copy of the checkout with vendored crates (HTTPS to the
#    crate registry fails inside a build container here), with the unchanged Dockerfile.
# 4. Profile demo: waits until the demo has synced, then checks from outside: rows of all three
#    sources in the warehouse, the container's health check, /metrics scraped by Prometheus,
#    every alert rule healthy, every dashboard query answered (PromQL against Prometheus, SQL
#    against the warehouse).
# 5. Profile live: the shipped docker/sessionsync.toml with its base URLs pointed at the
#    simulators (run as services from the same image, as if they were the vendors): every stream
#    succeeds and the daemon is healthy.
# `down -v` after each profile. Prints what it checked and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
CACHE=${SMOKE_CACHE:-/var/cache/sessionsync-smoke}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PROJECT=sessionsync-smoke
export POSTGRES_PASSWORD=smoke-$RANDOM$RANDOM GRAFANA_ADMIN_PASSWORD=unused-in-smoke
export POSTGRES_PORT=${POSTGRES_PORT:-55432} PROMETHEUS_PORT=${PROMETHEUS_PORT:-59090} GRAFANA_PORT=${GRAFANA_PORT:-53000}
export WEBHOOK_PORT=${WEBHOOK_PORT:-58080}
checks=()
ok() { checks+=("$1"); echo "ok: $1"; }
die() { echo "docker-smoke: FAILED: $*" >&2; exit 1; }
wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "$what (waited ${limit} s)"
}

# --- 1. the engine and the tools -------------------------------------------------------------
need_pkgs=()
command -v docker >/dev/null || need_pkgs+=(docker.io)
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null; then
  need_pkgs+=(docker-compose)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing ${need_pkgs[*]} (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /var/log/sessionsync-smoke-dockerd.log)"
  (dockerd >/var/log/sessionsync-smoke-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || die "dockerd did not start (see /var/log/sessionsync-smoke-dockerd.log)"
fi
if docker compose version >/dev/null 2>&1; then compose_cmd=(docker compose); else compose_cmd=(docker-compose); fi
echo "engine: $(docker version --format '{{.Server.Version}}'); compose: $("${compose_cmd[@]}" version --short 2>/dev/null || echo '?')"

# --- 2. stand-ins for the base images (cached) -----------------------------------------------
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
rootfs() { # rootfs DIR [--include=...]: a debootstrapped bookworm, apt caches emptied
  local dir=$CACHE/$1; shift
  if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"; mkdir -p "$CACHE"
    echo "debootstrap bookworm into $dir $*"
    debootstrap --variant=minbase "$@" bookworm "$dir" "$MIRROR" >"$dir.log" 2>&1 || die "debootstrap failed: $dir.log"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    touch "$dir/.complete"
  fi
}
import() { # import DIR TAG
  have_image "$2" && return 0
  echo "importing $1 as $2"
  tar -C "$CACHE/$1" --exclude=./.complete -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL sessionsync.standin=true' - "$2" >/dev/null
}
standin() { # standin TAG DIR: build DIR/Dockerfile as TAG unless cached
  have_image "$1" && return 0
  echo "building stand-in $1"
  docker build -q -t "$1" "$2" >/dev/null
}
rootfs slim
rootfs full --include=gcc,libc6-dev,ca-certificates,postgresql-15,prometheus
import slim debian:bookworm-slim
import full sessionsync-standin/bookworm-full

mkdir -p "$CACHE/ctx/rust" "$CACHE/ctx/postgres" "$CACHE/ctx/prometheus"
if ! have_image rust:1.95-bookworm; then
  sysroot=$(rustc --print sysroot)
  rm -rf "$CACHE/ctx/rust/toolchain"
  cp -al "$sysroot" "$CACHE/ctx/rust/toolchain" 2>/dev/null || cp -a "$sysroot" "$CACHE/ctx/rust/toolchain"
  rm -rf "$CACHE/ctx/rust/toolchain/share/doc"
  cat >"$CACHE/ctx/rust/Dockerfile" <<'EOF'
FROM sessionsync-standin/bookworm-full
COPY toolchain /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
  standin rust:1.95-bookworm "$CACHE/ctx/rust"
fi
cat >"$CACHE/ctx/postgres/entrypoint.sh" <<'EOF'
#!/bin/sh
# A stand-in for the postgres image: honours POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB.
set -e
PGDATA=/var/lib/postgresql/data BIN=/usr/lib/postgresql/15/bin
mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql && chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pw=$(mktemp) && printf '%s\n' "$POSTGRES_PASSWORD" >"$pw" && chown postgres "$pw"
  runuser -u postgres -- "$BIN/initdb" -D "$PGDATA" -U "${POSTGRES_USER:-postgres}" --pwfile="$pw" \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pw"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  runuser -u postgres -- psql -q -U "${POSTGRES_USER:-postgres}" -d postgres \
    -c "CREATE DATABASE \"${POSTGRES_DB:-${POSTGRES_USER:-postgres}}\"" >/dev/null 2>&1 || true
  runuser -u postgres -- "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- "$BIN/postgres" -D "$PGDATA" -c listen_addresses='*'
EOF
chmod +x "$CACHE/ctx/postgres/entrypoint.sh"
cat >"$CACHE/ctx/postgres/Dockerfile" <<'EOF'
FROM sessionsync-standin/bookworm-full
COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# The server's own client tools first: Debian's pg_wrapper would pick its packaged cluster's port.
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
EOF
cat >"$CACHE/ctx/prometheus/Dockerfile" <<'EOF'
FROM sessionsync-standin/bookworm-full
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
EOF
standin postgres:15 "$CACHE/ctx/postgres"
standin prom/prometheus:v2.53.0 "$CACHE/ctx/prometheus"
ok "stand-in images: debian:bookworm-slim, rust:1.95-bookworm, postgres:15, prom/prometheus:v2.53.0"

# --- 3. the image, from a scratch copy with vendored crates ----------------------------------
scratch=$(mktemp -d)
cleanup() {
  if [ -n "${stackdir:-}" ] && [ -d "$stackdir" ]; then
    (cd "$stackdir" && "${compose_cmd[@]}" -p "$PROJECT" "${files[@]}" --profile demo --profile live down -v --remove-orphans >/dev/null 2>&1) || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
git ls-files -co --exclude-standard -z | xargs -0 -I{} cp --parents {} "$scratch/" 2>/dev/null || true
mkdir -p "$scratch/.cargo"
(cd "$scratch" && cargo vendor --locked vendor 2>/dev/null >"$scratch/.cargo/config.toml" && grep -q vendored-sources "$scratch/.cargo/config.toml") || die "cargo vendor failed"
t0=$(date +%s)
docker build -f "$scratch/docker/Dockerfile" -t sessionsync:latest "$scratch" >"$CACHE/build.log" 2>&1 \
  || { tail -30 "$CACHE/build.log"; die "docker build failed (log: $CACHE/build.log)"; }
size=$(docker image inspect sessionsync:latest --format '{{.Size}}')
size_mb=$(( size / 1000000 ))
ok "image sessionsync:latest built in $(( $(date +%s) - t0 )) s from a clean copy with vendored crates: ${size_mb} MB"
docker run --rm sessionsync:latest --version | grep -q '^sessionsync ' || die "--version in the image"
[ "$(docker run --rm --entrypoint /usr/bin/id sessionsync:latest -u)" = 10001 ] || die "the image does not run as uid 10001"
ok "sessionsync --version runs in the image, as uid 10001"
# The production image carries no simulator; the demo service's image (compose: sessionsync:demo)
# is the same Dockerfile with the `demo` feature.
if docker run --rm sessionsync:latest simulate >"$scratch/no-sim.out" 2>&1 || ! grep -q "carries no simulator" "$scratch/no-sim.out"; then
  cat "$scratch/no-sim.out"; die "the production image answers \`simulate\`"
fi
ok "the production image refuses simulate (no simulator linked)"
docker build -f "$scratch/docker/Dockerfile" --build-arg SESSIONSYNC_FEATURES=demo -t sessionsync:demo "$scratch" >"$CACHE/build-demo.log" 2>&1 \
  || { tail -30 "$CACHE/build-demo.log"; die "docker build (demo) failed (log: $CACHE/build-demo.log)"; }
ok "image sessionsync:demo built (the simulators, for the demo profile)"
# As the acceptance check does: `demo --once` in the image against a PostgreSQL container.
docker rm -f "$PROJECT-pg-once" >/dev/null 2>&1 || true
docker network create "$PROJECT-once" >/dev/null 2>&1 || true
docker run -d --name "$PROJECT-pg-once" --network "$PROJECT-once" -e POSTGRES_USER=sessionsync \
  -e POSTGRES_PASSWORD="$POSTGRES_PASSWORD" -e POSTGRES_DB=warehouse postgres:15 >/dev/null
pg_once_ready() { docker exec "$PROJECT-pg-once" pg_isready -U sessionsync -d warehouse; }
wait_for 60 "the PostgreSQL container for demo --once did not start" pg_once_ready
docker run --rm --network "$PROJECT-once" \
  -e DATABASE_URL="postgres://sessionsync:$POSTGRES_PASSWORD@$PROJECT-pg-once:5432/warehouse" \
  sessionsync:demo demo --once >"$scratch/demo-once.out" 2>&1 || { cat "$scratch/demo-once.out"; die "demo --once in the image"; }
once_rows=$(sed -n 's/^ *takecontrol_sessions *\([0-9]*\) rows$/\1/p' "$scratch/demo-once.out")
docker rm -f "$PROJECT-pg-once" >/dev/null; docker network rm "$PROJECT-once" >/dev/null
[ "${once_rows:-0}" -gt 0 ] || { cat "$scratch/demo-once.out"; die "demo --once wrote no Take Control session"; }
ok "sessionsync demo --once in the image against a PostgreSQL container: exit 0, $once_rows Take Control sessions"

# --- 4. the stack, profile demo ----------------------------------------------------------------
stackdir=$scratch/docker
cat >"$stackdir/compose.smoke.yml" <<'EOF'
# docker-smoke.sh only: Grafana (no Debian package to stand in for it) is put in a profile the
# smoke never enables; the simulators serve the live profile as if they were the vendors.
services:
  grafana:
    profiles: ["grafana"]
  sim-takecontrol:
    image: sessionsync:demo
    command: ["simulate", "--source", "takecontrol", "--sessions", "300", "--days", "3", "--listen", "0.0.0.0:8081"]
    profiles: ["live"]
  sim-superoffice:
    image: sessionsync:demo
    command: ["simulate", "--source", "superoffice", "--sessions", "100", "--days", "3", "--listen", "0.0.0.0:8082"]
    profiles: ["live"]
  sim-mluvii:
    image: sessionsync:demo
    command: ["simulate", "--source", "mluvii", "--sessions", "100", "--days", "3", "--listen", "0.0.0.0:8083"]
    profiles: ["live"]
EOF
files=(-f compose.yml -f compose.smoke.yml)
dc() { (cd "$stackdir" && "${compose_cmd[@]}" -p "$PROJECT" "${files[@]}" "$@"); }
psql_wh() { dc exec -T postgres psql -U sessionsync -d warehouse -At -v ON_ERROR_STOP=1 -c "$1" </dev/null; }
prom() { curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/$1"; }
container_health() { docker inspect --format '{{.State.Health.Status}}' "$(dc ps -q "$1")"; }

cp "$root/docker/.env.example" "$stackdir/.env"
dc --profile demo up -d --no-build >"$CACHE/up-demo.log" 2>&1 || { cat "$CACHE/up-demo.log"; die "compose up (demo)"; }
ok "compose --profile demo up (postgres, sessionsync-demo, prometheus; grafana left out by compose.smoke.yml)"
synced() {
  local n
  n=$(psql_wh "SELECT (SELECT count(*) FROM sessionsync.takecontrol_sessions) > 0
                  AND (SELECT count(*) FROM sessionsync.superoffice_chat_sessions) > 0
                  AND (SELECT count(*) FROM sessionsync.mluvii_sessions) > 0") && [ "$n" = t ]
}
wait_for 240 "the demo did not sync all three sources" synced
ok "warehouse: $(psql_wh "SELECT format('%s Take Control, %s SuperOffice, %s mluvii sessions', (SELECT count(*) FROM sessionsync.takecontrol_sessions), (SELECT count(*) FROM sessionsync.superoffice_chat_sessions), (SELECT count(*) FROM sessionsync.mluvii_sessions))")"
healthy() { [ "$(container_health sessionsync-demo)" = healthy ]; }
wait_for 150 "sessionsync-demo never became healthy (docker inspect)" healthy
ok "sessionsync-demo container healthy (HEALTHCHECK: sessionsync healthcheck -> /healthz)"
scraped() { prom 'query?query=sum(sessionsync_sync_runs_total)' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; sys.exit(0 if r and float(r[0]["value"][1]) > 0 else 1)'; }
wait_for 120 "Prometheus has no sessionsync_sync_runs_total from the demo" scraped
ok "Prometheus scrapes /metrics: sessionsync_sync_runs_total = $(prom 'query?query=sum(sessionsync_sync_runs_total)' | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')"
rules_ok() { prom rules | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") != "ok"]
print(len(rules)); sys.exit(1 if bad or not rules else 0)'; }
wait_for 120 "an alert rule is not healthy: $(prom rules 2>/dev/null | head -c 400)" rules_ok
ok "alert rules: all $(rules_ok) evaluated with health ok"
# Every dashboard query, for real: PromQL through Prometheus's API, SQL against the warehouse
# (Grafana's \$__timeFilter(x) read as the last 30 days).
python3 - "$root/docker/grafana/dashboards" >"$scratch/queries.tsv" <<'PY'
import json, os, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    for p in json.load(open(os.path.join(d, f)))["panels"]:
        for t in p.get("targets", []):
            kind, q = ("promql", t["expr"]) if t.get("expr") else ("sql", t["rawSql"])
            print(f"{f}\t{p['title']}\t{kind}\t{' '.join(q.split())}")
PY
nq=0
while IFS=$'\t' read -r file title kind q <&3; do
  if [ "$kind" = promql ]; then
    prom "query?query=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$q")" \
      | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["status"]=="success" else 1)' \
      || die "$file / $title: PromQL failed: $q"
  else
    sql=$(python3 -c 'import re,sys; print(re.sub(r"\$__timeFilter\(([^()]*(?:\([^()]*\))?[^()]*)\)", r"(\1 BETWEEN now() - interval %s30 days%s AND now())" % ("\x27","\x27"), sys.argv[1]))' "$q")
    psql_wh "$sql" >/dev/null || die "$file / $title: SQL failed: $sql"
  fi
  nq=$((nq + 1))
done 3<"$scratch/queries.tsv"
[ "$nq" = "$(wc -l <"$scratch/queries.tsv")" ] || die "only $nq of the dashboard queries were run"
ok "dashboards: all $nq panel queries answered ($(grep -c $'\tpromql\t' "$scratch/queries.tsv") PromQL, $(grep -c $'\tsql\t' "$scratch/queries.tsv") SQL)"
dc --profile demo down -v >/dev/null 2>&1
ok "compose --profile demo down -v"

# --- 5. the stack, profile live, against the simulators ---------------------------------------
since=$(date -u -d '4 days ago' +%Y-%m-%dT00:00:00Z)
sed -e 's#https://api.us0.swi-rc.com#http://sim-takecontrol:8081#' \
    -e 's#^environment = "online"#environment = "http://sim-superoffice:8082"#' \
    -e 's#https://app.mluvii.com#http://sim-mluvii:8083#' \
    -e "s#^start = .*#start = \"$since\"#" -e 's#^schedule = .*#schedule = "* * * * *"#' \
    -e 's|^#webhook_secret = .*|webhook_secret = "${SO_WEBHOOK_SECRET}"|' \
    "$root/docker/sessionsync.toml" >"$stackdir/sessionsync.toml"
grep -q '^webhook_secret' "$stackdir/sessionsync.toml" || die "docker/sessionsync.toml has no webhook_secret line to turn on"
cat >>"$stackdir/.env" <<'EOF'
SO_WEBHOOK_SECRET=smoke-webhook-secret
TAKECONTROL_KEY=simulated-key
SO_APP_TOKEN=sim-client-secret
SO_SYSTEM_USER_TOKEN=SessionSync Sim-aG9sZGVyLXRva2Vu
EOF
# The simulator's application key (a test key), on one line with its newlines written \n.
printf 'SO_PRIVATE_KEY=%s\n' "$(awk '{printf "%s\\n", $0}' "$root/sim/src/keys/application.pem")" >>"$stackdir/.env"
cat >>"$stackdir/.env" <<'EOF'
MLUVII_CLIENT_ID=simulated-user
MLUVII_CLIENT_SECRET=simulated-secret
EOF
dc --profile live up -d --no-build >"$CACHE/up-live.log" 2>&1 || { cat "$CACHE/up-live.log"; die "compose up (live)"; }
ok "compose --profile live up (the shipped docker/sessionsync.toml, base URLs pointed at the simulators)"
live_synced() {
  local n
  n=$(psql_wh "SELECT count(DISTINCT source) FROM sessionsync.sync_runs WHERE status = 'succeeded' AND rows_written > 0") && [ "$n" = 3 ]
}
wait_for 240 "the live daemon did not complete a run of each source: $(psql_wh 'SELECT source, status, error FROM sessionsync.sync_runs' 2>&1 | head -5)" live_synced
ok "live: $(psql_wh "SELECT string_agg(format('%s %s rows', source, rows), ', ' ORDER BY source) FROM (SELECT source, sum(rows_written) AS rows FROM sessionsync.sync_runs GROUP BY source) s")"
# A webhook through the listener compose publishes: signed as SuperOffice signs, for a stored
# session; unsigned is refused.
hook_url="http://127.0.0.1:$WEBHOOK_PORT/webhooks/superoffice/main"
sid=$(psql_wh "SELECT min(chat_session_id) FROM sessionsync.superoffice_chat_sessions")
body="{\"EventId\":\"smoke-1\",\"Event\":\"chatsession.changed\",\"PrimaryKey\":$sid,\"Entity\":\"chatsession\"}"
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac smoke-webhook-secret -binary | base64)
code=$(curl -s -o "$CACHE/hook.out" -w '%{http_code}' -H "X-SuperOffice-Signature: $sig" --data-binary "$body" "$hook_url") || true
[ "$code" = 200 ] && grep -q accepted "$CACHE/hook.out" || die "signed webhook answered $code: $(cat "$CACHE/hook.out" 2>/dev/null)"
inbox_empty() { [ "$(psql_wh 'SELECT count(*) FROM sessionsync.webhook_events')" = 0 ]; }
wait_for 30 "the accepted webhook event was not acted on" inbox_empty
code=$(curl -s -o /dev/null -w '%{http_code}' --data-binary "$body" "$hook_url") || true
[ "$code" = 401 ] || die "an unsigned webhook answered $code, not 401"
ok "live: webhooks on 127.0.0.1:$WEBHOOK_PORT: a signed SuperOffice event answered 200 accepted and acted on; unsigned 401"
live_healthy() { [ "$(container_health sessionsync)" = healthy ]; }
wait_for 150 "the live daemon never became healthy" live_healthy
ok "sessionsync (live) container healthy"
dc --profile live down -v >/dev/null 2>&1
ok "compose --profile live down -v"

docker image prune -f >/dev/null 2>&1 || true   # the build stages' dangling layers
echo
echo "docker-smoke: ${#checks[@]} checks passed"
printf '  - %s\n' "${checks[@]}"
