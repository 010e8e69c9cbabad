#!/usr/bin/env python3
"""Properties of the rendered manifests (scripts/check-kubernetes.sh runs this).

  RENDERED=/path/to/overlay.yaml BASE=/path/to/base.yaml python3 deploy/kubernetes/test_manifests.py

Asserts what docs/kubernetes.md promises: replicas and rollout, the grace period against the
daemon's stop deadline, spread, probes, resources, the security context, Services, PDB, the
Prometheus Operator resources, and that no ConfigMap holds a secret value.
"""
import os
import pathlib
import re
import tomllib
import unittest

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Config keys whose values are credentials (the fields sessionsync keeps as `Secret`).
SECRET_KEYS = {
    "url", "api_key", "ticket", "app_token", "bearer", "client_secret",
    "system_user_token", "private_key",
    "webhook_secret", "webhook_password", "hash_key", "previous_hash_keys",
}
VAR = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*\}$")


def load(env):
    with open(os.environ[env]) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def stop_deadline_secs():
    src = (ROOT / "crates/core/src/shutdown.rs").read_text()
    m = re.search(r"STOP_DEADLINE: Duration = Duration::from_secs\((\d+)\)", src)
    assert m, "crates/core/src/shutdown.rs no longer declares STOP_DEADLINE in seconds"
    return int(m.group(1))


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def config_tomls(docs):
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        for key, text in cm.get("data", {}).items():
            if key.endswith(".toml"):
                yield cm["metadata"]["name"], key, tomllib.loads(text)


def walk(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, path + (i,))
    else:
        yield path, value


class Rendered:
    docs = None

    def deployment(self):
        return one(self.docs, "Deployment", "sessionsync")

    def pod(self):
        return self.deployment()["spec"]["template"]

    def container(self):
        cs = self.pod()["spec"]["containers"]
        assert len(cs) == 1
        return cs[0]


class Manifests(Rendered):
    def test_replicas_and_rollout(self):
        spec = self.deployment()["spec"]
        self.assertEqual(spec["replicas"], 2)
        self.assertEqual(spec["strategy"]["type"], "RollingUpdate")
        self.assertEqual(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0)

    def test_grace_period_outlasts_the_stop_deadline(self):
        grace = self.pod()["spec"]["terminationGracePeriodSeconds"]
        self.assertGreater(grace, stop_deadline_secs())

    def test_spread_across_nodes(self):
        spread = self.pod()["spec"]["topologySpreadConstraints"]
        self.assertTrue(any(c["topologyKey"] == "kubernetes.io/hostname" and
                            selects(c["labelSelector"]["matchLabels"], self.pod()["metadata"]["labels"])
                            for c in spread))

    def test_probes(self):
        c = self.container()
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            self.assertEqual(c[probe]["httpGet"]["port"], "metrics")
        # The ports are the ones the config listens on.
        for _, _, cfg in config_tomls(self.docs):
            self.assertEqual(int(cfg["server"]["listen"].rsplit(":", 1)[1]), ports["metrics"])
            self.assertEqual(int(cfg["webhooks"]["listen"].rsplit(":", 1)[1]), ports["webhooks"])
            self.assertTrue(cfg["server"]["listen"].startswith("0.0.0.0:"), "a probe cannot reach loopback")

    def test_resources_from_the_benchmarks(self):
        r = self.container()["resources"]
        for part in ("requests", "limits"):
            self.assertIn("cpu", r[part])
            self.assertIn("memory", r[part])
        mib = lambda q: int(q.removesuffix("Mi"))  # noqa: E731
        # The benchmarks' largest peak RSS: 139 MB (100 accounts backfilling at once).
        self.assertGreaterEqual(mib(r["limits"]["memory"]) * 1024 * 1024, 139e6 * 1.5)
        self.assertLessEqual(mib(r["requests"]["memory"]), mib(r["limits"]["memory"]))

    def test_security_context(self):
        pod = self.pod()["spec"]
        c = self.container()["securityContext"]
        self.assertIs(pod["automountServiceAccountToken"], False)
        self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
        self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
        self.assertIs(c["readOnlyRootFilesystem"], True)
        self.assertIs(c["allowPrivilegeEscalation"], False)
        self.assertEqual(c["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("add", c["capabilities"])

    def test_config_from_a_configmap_secrets_from_the_secret(self):
        c = self.container()
        mounted = {v["name"]: v for v in self.pod()["spec"]["volumes"]}
        cm_name = mounted["config"]["configMap"]["name"]
        one(self.docs, "ConfigMap", cm_name)
        self.assertIn("/etc/sessionsync/sessionsync.toml", c["args"])
        self.assertEqual([e["secretRef"]["name"] for e in c["envFrom"]], ["sessionsync"])
        for e in c.get("env", []):
            self.assertNotIn(e["name"], {"DATABASE_URL"}, "a credential written into the Deployment")

    def test_no_secret_value_in_any_configmap(self):
        secrets = [d for d in self.docs if d["kind"] == "Secret"]
        values = [v for s in secrets for v in (s.get("stringData") or {}).values()]
        found = 0
        for name, key, cfg in config_tomls(self.docs):
            for path, value in walk(cfg):
                names = {p for p in path if isinstance(p, str)}
                if names & SECRET_KEYS and isinstance(value, str):
                    found += 1
                    self.assertRegex(value, VAR, f"{name}/{key}: {'.'.join(map(str, path))} is not a ${{VAR}}")
        self.assertGreater(found, 5, "no credential found in the config: SECRET_KEYS is out of date")
        for cm in (d for d in self.docs if d["kind"] == "ConfigMap"):
            text = yaml.safe_dump(cm)
            for v in values:
                self.assertNotIn(v, text, f"ConfigMap {cm['metadata']['name']} holds a Secret's value")

    def test_services(self):
        labels = self.pod()["metadata"]["labels"]
        metrics = one(self.docs, "Service", "sessionsync-metrics")["spec"]
        hooks = one(self.docs, "Service", "sessionsync-webhooks")["spec"]
        self.assertEqual(metrics.get("type", "ClusterIP"), "ClusterIP")
        self.assertEqual([(p["name"], p["targetPort"]) for p in metrics["ports"]], [("metrics", "metrics")])
        self.assertEqual([(p["name"], p["targetPort"]) for p in hooks["ports"]], [("webhooks", "webhooks")])
        self.assertTrue(selects(metrics["selector"], labels) and selects(hooks["selector"], labels))

    def test_disruption_budget(self):
        pdb = one(self.docs, "PodDisruptionBudget")["spec"]
        self.assertEqual(pdb["minAvailable"], 1)
        self.assertTrue(selects(pdb["selector"]["matchLabels"], self.pod()["metadata"]["labels"]))


class ExampleOverlay(Manifests, unittest.TestCase):
    docs = load("RENDERED")

    def test_secret_holds_placeholders_only(self):
        secret = one(self.docs, "Secret", "sessionsync")
        data = secret.get("stringData", {})
        self.assertNotIn("data", secret)
        for k, v in data.items():
            self.assertIn("CHANGE_ME", v, f"Secret key {k} is not a placeholder")
        # Every ${VAR} of the config is a key of the Secret, and no key goes unused.
        used = set()
        for _, _, cfg in config_tomls(self.docs):
            for _, value in walk(cfg):
                if isinstance(value, str):
                    used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", value))
        self.assertEqual(used, set(data))

    def test_ingress_terminates_tls_for_the_webhooks(self):
        ing = one(self.docs, "Ingress")["spec"]
        self.assertTrue(ing["tls"] and ing["tls"][0]["secretName"])
        backends = [p["backend"]["service"] for r in ing["rules"] for p in r["http"]["paths"]]
        self.assertEqual([(b["name"], b["port"]["name"]) for b in backends], [("sessionsync-webhooks", "webhooks")])

    def test_prometheus_operator(self):
        labels = self.pod()["metadata"]["labels"]
        pm = one(self.docs, "PodMonitor")["spec"]
        self.assertTrue(selects(pm["selector"]["matchLabels"], labels))
        self.assertEqual([e["port"] for e in pm["podMetricsEndpoints"]], ["metrics"])
        # SessionsyncDown asks up{job="sessionsync"}: the job label comes from the pod.
        self.assertEqual(labels[pm["jobLabel"]], "sessionsync")
        rules = one(self.docs, "PrometheusRule")["spec"]
        compose = yaml.safe_load((ROOT / "docker/prometheus/alerts.yml").read_text())
        self.assertEqual(rules["groups"], compose["groups"])


class Base(Manifests, unittest.TestCase):
    docs = load("BASE")

    def test_base_ships_no_secret(self):
        self.assertEqual([d for d in self.docs if d["kind"] == "Secret"], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
