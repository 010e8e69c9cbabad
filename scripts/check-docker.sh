#!/usr/bin/env bash
# Validates the docker/ stack without a Docker engine: compose file structure and the files it
# mounts, the Dockerfile's shape, Prometheus config and alert rules (promtool check + rule unit
# tests), Grafana provisioning and dashboard JSON. CI runs it (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "promtool is missing: install Debian's prometheus package (apt-get install prometheus)" >&2
  exit 1
fi

python3 - <<'PY'
import json, os, sys, yaml
fail = []
def need(cond, msg):
    if not cond: fail.append(msg)

compose = yaml.safe_load(open("docker/compose.yml"))
services = compose.get("services", {})
for name in ["postgres", "sessionsync", "sessionsync-demo", "prometheus", "grafana"]:
    need(name in services, f"compose: service {name} missing")
for name, svc in services.items():
    need("image" in svc or "build" in svc, f"compose: {name} has neither image nor build")
    for vol in svc.get("volumes", []):
        src = vol.split(":")[0]
        if src.startswith("./"):
            need(os.path.exists(os.path.join("docker", src)), f"compose: {name} mounts missing {src}")
    for dep in (svc.get("depends_on") or {}):
        need(dep in services, f"compose: {name} depends on unknown {dep}")
    b = svc.get("build")
    if b:
        need(os.path.exists(os.path.join("docker", b["context"], b["dockerfile"])), f"compose: {name} build file missing")
for vol in compose.get("volumes", {}):
    need(any(vol + ":" in v for s in services.values() for v in s.get("volumes", [])), f"compose: volume {vol} unused")
need(os.path.exists("docker/.env.example"), "docker/.env.example missing")
# The production image carries no simulator (scripts/check-production-binary.sh); the demo
# service builds its own, with the `demo` feature, under another tag.
demo = services.get("sessionsync-demo", {})
need((demo.get("build") or {}).get("args", {}).get("SESSIONSYNC_FEATURES") == "demo",
     "compose: sessionsync-demo must build with args SESSIONSYNC_FEATURES: demo")
need(demo.get("image") != services.get("sessionsync", {}).get("image"),
     "compose: sessionsync-demo and sessionsync must not share an image tag (one has no simulator)")

df = open("docker/Dockerfile").read()
need(df.count("\nFROM ") + df.startswith("FROM ") >= 2, "Dockerfile: not multi-stage")
need("\nUSER " in df and "USER root" not in df, "Dockerfile: no non-root USER")

ds = yaml.safe_load(open("docker/grafana/provisioning/datasources/datasources.yml"))
uids = {d["uid"] for d in ds["datasources"]}
yaml.safe_load(open("docker/grafana/provisioning/dashboards/dashboards.yml"))
dashboards = [f for f in os.listdir("docker/grafana/dashboards") if f.endswith(".json")]
need(len(dashboards) >= 2, "grafana: fewer than two dashboards")
seen = set()
for f in dashboards:
    d = json.load(open(os.path.join("docker/grafana/dashboards", f)))
    need(d.get("uid") and d["uid"] not in seen, f"{f}: missing or duplicate uid")
    seen.add(d.get("uid"))
    need(d.get("panels"), f"{f}: no panels")
    ids = [p["id"] for p in d["panels"]]
    need(len(ids) == len(set(ids)), f"{f}: duplicate panel ids")
    for p in d["panels"]:
        need(p.get("datasource", {}).get("uid") in uids, f"{f}: panel {p.get('title')} uses an unknown datasource")
        for t in p.get("targets", []):
            need(t.get("expr") or t.get("rawSql"), f"{f}: panel {p.get('title')} has an empty query")
if fail:
    print("\n".join(fail), file=sys.stderr); sys.exit(1)
print(f"compose: {len(services)} services OK; Dockerfile OK; {len(dashboards)} dashboards OK")
PY

promtool check config docker/prometheus/prometheus.yml
promtool check rules docker/prometheus/alerts.yml
promtool test rules docker/prometheus/alerts_test.yml

# Compose v1 (Debian's docker-compose 1.29) and v2 must both accept docker/compose.yml: v1 is
# checked here (`config -q` validates against its schema), on a copy of docker/ with the example
# .env as .env. v2 (`docker compose`) is checked too where this machine has it.
compose_dir=$(mktemp -d)
trap 'rm -rf "$compose_dir"' EXIT
cp -r docker/. "$compose_dir/"
cp docker/.env.example "$compose_dir/.env"
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "docker-compose (Compose v1) is missing: install Debian's docker-compose package" >&2
  exit 1
fi
(cd "$compose_dir" && docker-compose -f compose.yml --profile live --profile demo config -q)
echo "compose: docker-compose $(docker-compose version --short 2>/dev/null) accepts docker/compose.yml"
if docker compose version >/dev/null 2>&1; then
  (cd "$compose_dir" && docker compose -f compose.yml --profile live --profile demo config -q)
  echo "compose: docker compose $(docker compose version --short) accepts docker/compose.yml"
fi
