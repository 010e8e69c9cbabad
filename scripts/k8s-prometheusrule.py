#!/usr/bin/env python3
"""Writes the PrometheusRule of deploy/kubernetes from docker/prometheus/alerts.yml, the alert
rules the compose stack loads: one source of truth.

  python3 scripts/k8s-prometheusrule.py            # rewrite the manifest
  python3 scripts/k8s-prometheusrule.py --check    # exit 1 when the manifest differs (CI)

The rule groups are copied as they are (Prometheus Operator takes the same `groups:` as a rule
file); only the wrapper is added. Needs PyYAML (in the CI venv, scripts/check-kubernetes.sh).
"""
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "docker/prometheus/alerts.yml"
TARGET = ROOT / "deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml"

HEADER = """\
# GENERATED from docker/prometheus/alerts.yml by scripts/k8s-prometheusrule.py: do not edit;
# change the compose stack's rules and run the script (CI fails when the two differ).
# yamllint disable rule:line-length
"""


class Dumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL expressions) as literal blocks, as the rules file does."""


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def render() -> str:
    rules = yaml.safe_load(SOURCE.read_text())
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "sessionsync"},
        "spec": {"groups": rules["groups"]},
    }
    body = yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=1000, default_flow_style=False)
    return HEADER + body


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(
                f"{TARGET.relative_to(ROOT)} differs from {SOURCE.relative_to(ROOT)}: "
                "run python3 scripts/k8s-prometheusrule.py and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"{TARGET.relative_to(ROOT)} agrees with {SOURCE.relative_to(ROOT)}")
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
