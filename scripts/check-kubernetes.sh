#!/usr/bin/env bash
# The Kubernetes manifests (deploy/kubernetes), checked offline:
#   - yamllint over every file;
#   - `kubectl kustomize` renders the base and the example overlay;
#   - kubernetes-validate (bundled schemas, --strict) for the oldest and newest Kubernetes
#     versions we claim (K8S_OLDEST, K8S_NEWEST);
#   - the PrometheusRule equals the compose stack's alert rules (scripts/k8s-prometheusrule.py),
#     and promtool accepts its groups;
#   - the property test deploy/kubernetes/test_manifests.py;
#   - checkov's Kubernetes checks on the example overlay, less the waivers in deploy/kubernetes/checkov-waivers.yaml.
# The pinned tools go into .venv-k8s (deploy/kubernetes/requirements-ci.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_OLDEST=1.27.0
K8S_NEWEST=1.37.0
VENV=.venv-k8s
REQ=deploy/kubernetes/requirements-ci.txt
if ! cmp -s "$REQ" "$VENV/requirements-ci.txt" 2>/dev/null; then
  echo "installing the manifest checkers into $VENV ($REQ)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/requirements-ci.txt"
fi
command -v kubectl >/dev/null || { echo "kubectl (with kustomize) is needed to render deploy/kubernetes" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

"$VENV/bin/yamllint" --strict -c deploy/kubernetes/.yamllint.yaml deploy/kubernetes
kubectl kustomize deploy/kubernetes/base >"$out/base.yaml"
kubectl kustomize deploy/kubernetes/overlays/example >"$out/example.yaml"
for v in "$K8S_OLDEST" "$K8S_NEWEST"; do
  for f in base example; do
    # Exit status 1 on any failure; the Prometheus Operator's kinds have no bundled schema (a
    # warning): the property test checks them.
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$out/$f.yaml"
  done
  echo "deploy/kubernetes: base and overlays/example valid for Kubernetes $v"
done
"$VENV/bin/python" scripts/k8s-prometheusrule.py --check
"$VENV/bin/python" - "$out/example.yaml" "$out/rules.yml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rule = [d for d in docs if d["kind"] == "PrometheusRule"][0]
yaml.safe_dump({"groups": rule["spec"]["groups"]}, open(sys.argv[2], "w"))
PY
command -v promtool >/dev/null || { echo "promtool (Debian's package prometheus) is needed to check the PrometheusRule" >&2; exit 1; }
promtool check rules "$out/rules.yml" >/dev/null
echo "PrometheusRule: promtool check rules passed"
RENDERED="$out/example.yaml" BASE="$out/base.yaml" "$VENV/bin/python" deploy/kubernetes/test_manifests.py 2>&1 | tail -n 3
skips=$("$VENV/bin/python" -c 'import sys, yaml; print(",".join(w["id"] for w in yaml.safe_load(open(sys.argv[1]))["waivers"]))' deploy/kubernetes/checkov-waivers.yaml)
# The overlay, which is what gets applied (the base has no namespace of its own, by design).
# BC_SKIP_MAPPING: no call to the vendor's guideline service (offline).
BC_SKIP_MAPPING=TRUE "$VENV/bin/checkov" --quiet --compact --framework kubernetes \
  --skip-check "$skips" -f "$out/example.yaml" | grep -v '^$' | sed "s/^/checkov: /"
echo "deploy/kubernetes: all checks passed"
