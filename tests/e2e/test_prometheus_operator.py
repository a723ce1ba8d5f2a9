"""The optional Prometheus Operator objects (config/deploy/prometheus-operator/).

The PrometheusRule must carry exactly the rules of config/prometheus/alerts.yaml
(which promtool and a real Prometheus test): it is generated from the file,
and this test fails when the two differ. The ServiceMonitor must find the
fedns-metrics Service (labels, namespace, port name) and name the job the
way FednsDown expects. Neither may be part of the default kustomization: the
CRDs are not guaranteed to exist.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.prometheus import operator_rule
from tests.e2e.test_alerts import RULES, promtool
from tests.e2e.test_deploy import DEPLOY, fedns_docs, kustomization, load_docs, selector_matches

OPERATOR = DEPLOY / "prometheus-operator"
MONITORING = "monitoring.coreos.com/v1"


def operator_kustomization() -> dict[str, Any]:
    data = yaml.safe_load((OPERATOR / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def operator_docs() -> list[dict[str, Any]]:
    return [d for name in operator_kustomization()["resources"]
            for d in load_docs(OPERATOR / name)]


def the(kind: str) -> dict[str, Any]:
    found = [d for d in operator_docs() if d["kind"] == kind]
    assert len(found) == 1, [d["kind"] for d in operator_docs()]
    return found[0]


def services() -> list[dict[str, Any]]:
    return [d for d in fedns_docs() if d["kind"] == "Service"]


def rule_groups_differences(rule_object: dict[str, Any], rules_file: Path) -> list[str]:
    """How the object's ``spec.groups`` differs from the rule file's ``groups``."""
    want = yaml.safe_load(rules_file.read_text())["groups"]
    got = rule_object.get("spec", {}).get("groups")
    if got == want:
        return []
    if not isinstance(got, list) or len(got) != len(want):
        return [f"spec.groups has {len(got or [])} groups, the rule file {len(want)}"]
    out = []
    for g, w in zip(got, want, strict=True):
        rules_g = {r.get("alert") or r.get("record"): r for r in g.get("rules", [])}
        rules_w = {r.get("alert") or r.get("record"): r for r in w.get("rules", [])}
        out += [f"group {w['name']}: {n} differs" for n in sorted(set(rules_g) | set(rules_w))
                if rules_g.get(n) != rules_w.get(n)]
        if {k: v for k, v in g.items() if k != "rules"} != \
                {k: v for k, v in w.items() if k != "rules"}:
            out.append(f"group {w['name']}: settings differ")
    return out


# -- the objects ------------------------------------------------------------------


def test_the_objects_parse_with_their_kinds_and_api_versions() -> None:
    k = operator_kustomization()
    assert k["namespace"] == kustomization()["namespace"] == "fedns"
    docs = operator_docs()
    assert sorted((d["apiVersion"], d["kind"]) for d in docs) == [
        (MONITORING, "PrometheusRule"), (MONITORING, "ServiceMonitor")]
    for d in docs:
        assert set(d) == {"apiVersion", "kind", "metadata", "spec"}, d.keys()
        assert d["metadata"]["name"] == "fedns"
        assert "namespace" not in d["metadata"]  # set by the kustomization


def test_they_are_optional_not_in_the_default_kustomization() -> None:
    base = kustomization()["resources"]
    assert not any("prometheus-operator" in r for r in base), base
    assert not any(d["apiVersion"].startswith("monitoring.coreos.com/") for d in fedns_docs())


# -- PrometheusRule -----------------------------------------------------------------


def test_prometheus_rule_groups_are_the_rule_files_groups() -> None:
    rule = the("PrometheusRule")
    assert rule_groups_differences(rule, RULES) == []
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert len(alerts) == 11 and len(set(alerts)) == 11, alerts
    assert set(rule["spec"]) == {"groups"}


def test_prometheus_rule_is_what_the_generator_writes() -> None:
    """Byte for byte, comments included: ``python -m config.prometheus.operator_rule``."""
    assert (OPERATOR / "prometheusrule.yaml").read_text() == \
        operator_rule.render(RULES.read_text())
    assert operator_rule.main(["--check"]) == 0


def test_a_changed_rule_is_caught(tmp_path: Path) -> None:
    """The comparison above fails for a rule file that changed after generating."""
    rule = the("PrometheusRule")
    changed = tmp_path / "alerts.yaml"
    text = RULES.read_text()
    assert "        for: 2m\n" in text
    changed.write_text(text.replace("        for: 2m\n", "        for: 3m\n", 1))
    assert rule_groups_differences(rule, changed) == ["group fedns: FednsDown differs"]
    assert operator_rule.render(changed.read_text()) != operator_rule.render(text)


def test_generator_refuses_a_file_without_groups() -> None:
    with pytest.raises(operator_rule.RuleFileError, match="'groups:'"):
        operator_rule.render("# nothing\nrules: []\n")


def test_promtool_checks_the_prometheus_rules_groups(tmp_path: Path) -> None:
    extracted = tmp_path / "rules.yaml"
    extracted.write_text(yaml.safe_dump({"groups": the("PrometheusRule")["spec"]["groups"]}))
    out = subprocess.run([promtool(), "check", "rules", str(extracted)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 11 rules found" in out.stdout, out.stdout


# -- ServiceMonitor -------------------------------------------------------------------


def test_service_monitor_selects_the_metrics_service_by_labels_and_port() -> None:
    spec = the("ServiceMonitor")["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}, spec
    # no namespaceSelector: the Service in the ServiceMonitor's own namespace
    assert "namespaceSelector" not in spec
    selected = [s for s in services()
                if selector_matches(spec["selector"], s["metadata"]["labels"])]
    assert selected, "the selector matches no fedns Service"
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}, endpoint
    assert (endpoint["path"], endpoint["scheme"]) == ("/metrics", "http")
    # targets come from the selected Services having a port of that name: only one
    with_port = [s["metadata"]["name"] for s in selected
                 if endpoint["port"] in {p.get("name") for p in s["spec"]["ports"]}]
    assert with_port == ["fedns-metrics"], with_port


def test_service_monitor_job_is_the_one_fedns_down_watches() -> None:
    """With a ServiceMonitor, the job is the Service's name (``fedns-metrics``)
    unless ``jobLabel`` names a Service label: it must come out as FednsDown's."""
    jobs = re.findall(r'up\{job="([^"]+)"\}', RULES.read_text())
    assert jobs == ["fedns"], jobs
    label = the("ServiceMonitor")["spec"]["jobLabel"]
    (metrics,) = [s for s in services() if s["metadata"]["name"] == "fedns-metrics"]
    assert metrics["metadata"]["labels"][label] == jobs[0]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_them_namespaced_and_labelled() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(OPERATOR)], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert sorted(d["kind"] for d in docs) == ["PrometheusRule", "ServiceMonitor"]
    for d in docs:
        assert d["metadata"]["namespace"] == "fedns"
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fedns"
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule_groups_differences(rule, RULES) == []
