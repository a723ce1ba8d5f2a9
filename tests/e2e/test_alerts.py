"""The alerting rules (config/prometheus/alerts.yaml) under Prometheus's own tools.

``promtool check rules`` parses them, and ``promtool test rules`` evaluates
each alert over made-up series: it must fire with the labels below when its
condition has held for its ``for``, and stay quiet for the near misses (a
drained shard, one healthy shard left, a condition younger than ``for``, a
rate under the threshold). The series carry fedns's real metric and label
names; tests/e2e/test_dashboard.py checks those against a live fedns scraped
by a real Prometheus that loads the same file, and that FednsShardDown's
condition held there while a shard had failed.

The expected annotations are the rule's own with ``{{ $labels.x }}`` filled in
from the expected labels, so a template naming a label the alert does not
carry fails here ("<no value>").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "alerts.yaml"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"

TARGET = {"instance": "fedns:8053", "job": "fedns"}  # what Prometheus adds to every series
NGINX = {**TARGET, "service": "default/nginx"}


def series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{inner}}}", "values": values}


@dataclass(frozen=True)
class Case:
    name: str
    alert: str
    at: str  # eval_time
    inputs: tuple[dict[str, str], ...]
    fires: tuple[dict[str, str], ...]  # the labels of each alert (without alertname/severity)


def shard(cluster: str, region: str) -> dict[str, str]:
    return {**NGINX, "cluster": cluster, "region": region}


US, EU = shard("us", "us-east1"), shard("eu", "europe-west1")
CASES = (
    Case("shard down for 2m", "FednsShardDown", "5m",
         (series("fedns_shard_healthy", US, "1 1 0 0 0 0 0"),
          series("fedns_shard_drained", US, "0x6"),
          series("fedns_shard_healthy", EU, "1x6"), series("fedns_shard_drained", EU, "0x6")),
         ({"service": "default/nginx", "cluster": "us", "region": "us-east1"},)),
    Case("shard down for 1m only", "FednsShardDown", "5m",
         (series("fedns_shard_healthy", US, "1 1 1 1 0 0 0"),
          series("fedns_shard_drained", US, "0x6")), ()),
    Case("a drained shard is no failure", "FednsShardDown", "5m",
         (series("fedns_shard_healthy", US, "1 1 0 0 0 0 0"),
          series("fedns_shard_drained", US, "0 0 1 1 1 1 1")), ()),
    Case("every shard of a service down", "FednsServiceDown", "4m",
         (series("fedns_shard_healthy", US, "1 0 0 0 0"),
          series("fedns_shard_healthy", EU, "1 0 0 0 0")),
         ({"service": "default/nginx"},)),
    Case("one shard of the service left", "FednsServiceDown", "4m",
         (series("fedns_shard_healthy", US, "1 0 0 0 0"),
          series("fedns_shard_healthy", EU, "1 1 1 1 1")), ()),
    Case("member cluster unreachable", "FednsSourceDown", "5m",
         (series("fedns_source_up", {**TARGET, "cluster": "us"}, "1 0 0 0 0 0"),
          series("fedns_source_up", {**TARGET, "cluster": "eu"}, "1x5")),
         ({"cluster": "us"},)),
    Case("member cluster never listed", "FednsSourceNotSynced", "20m",
         (series("fedns_source_synced", {**TARGET, "cluster": "us"}, "0x20"),
          series("fedns_source_synced", {**TARGET, "cluster": "eu"}, "0 1x19")),
         ({"cluster": "us"},)),
    Case("stale zone served", "FednsServingStaleState", "10m",
         (series("fedns_snapshot_stale", TARGET, "1x10"),), ({},)),
    Case("stale zone replaced in time", "FednsServingStaleState", "10m",
         (series("fedns_snapshot_stale", TARGET, "1 1 0x8"),), ()),
    Case("provider failing", "FednsProviderFailing", "15m",
         (series("fedns_provider_up", {**TARGET, "provider": "route53"}, "1 0x14"),),
         ({"provider": "route53"},)),
    Case("provider without a success for 40 minutes", "FednsProviderNotSyncing", "40m",
         (series("fedns_provider_last_success_timestamp_seconds",
                 {**TARGET, "provider": "route53"}, "0x40"),),
         ({"provider": "route53"},)),
    Case("provider syncing every 5 minutes", "FednsProviderNotSyncing", "40m",
         (series("fedns_provider_last_success_timestamp_seconds",
                 {**TARGET, "provider": "route53"}, "0 0 0 0 0 300 300 300 300 300 600"
                 + " 600" * 4 + " 900" * 5 + " 1200" * 5 + " 1500" * 5 + " 1800" * 5
                 + " 2100" * 5 + " 2400"),), ()),
    Case("2 % SERVFAIL", "FednsServfail", "20m",
         (series("fedns_dns_requests_total", {**TARGET, "rcode": "SERVFAIL", "proto": "udp"},
                 "0+120x20"),
          series("fedns_dns_requests_total", {**TARGET, "rcode": "NOERROR", "proto": "udp"},
                 "0+5880x20")),
         ({"instance": "fedns:8053"},)),
    Case("0.5 % SERVFAIL", "FednsServfail", "20m",
         (series("fedns_dns_requests_total", {**TARGET, "rcode": "SERVFAIL", "proto": "udp"},
                 "0+30x20"),
          series("fedns_dns_requests_total", {**TARGET, "rcode": "NOERROR", "proto": "udp"},
                 "0+5970x20")), ()),
    Case("an internal error", "FednsInternalErrors", "3m",
         (series("fedns_dns_internal_errors_total", TARGET, "0 0 1 1"),),
         ({"instance": "fedns:8053", "job": "fedns"},)),
    Case("no internal error", "FednsInternalErrors", "3m",
         (series("fedns_dns_internal_errors_total", TARGET, "0x3"),), ()),
    Case("replies not sent", "FednsDroppingQueries", "20m",
         (series("fedns_dns_dropped_total", {**TARGET, "reason": "send_failed"}, "0+120x20"),
          series("fedns_dns_dropped_total", {**TARGET, "reason": "malformed"}, "0+600x20")),
         ({"instance": "fedns:8053", "reason": "send_failed"},)),
    Case("malformed packets are not overload", "FednsDroppingQueries", "20m",
         (series("fedns_dns_dropped_total", {**TARGET, "reason": "malformed"}, "0+600x20"),
          series("fedns_dns_dropped_total", {**TARGET, "reason": "tcp_limit"}, "0+30x20")), ()),
    Case("scrape down", "FednsDown", "5m",
         (series("up", {"job": "fedns", "instance": "fedns:8053"}, "1 0 0 0 0 0"),),
         ({"job": "fedns", "instance": "fedns:8053"},)),
)


def rules() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"]}


def rendered(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}",
                  lambda m: labels.get(m.group(1), "<no value>"), template)


def promtool_test(case: Case) -> dict[str, Any]:
    rule = rules()[case.alert]
    expected = []
    for labels in case.fires:
        expected.append({
            "exp_labels": {**labels, **rule.get("labels", {})},
            "exp_annotations": {k: rendered(v, labels)
                                for k, v in rule.get("annotations", {}).items()},
        })
    return {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": list(case.inputs),
            "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert,
                                 "exp_alerts": expected}],
        }],
    }


def promtool() -> str:
    if not os.path.exists(PROMTOOL):
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (apt-get install prometheus)")
        pytest.skip("promtool is not installed (apt-get install prometheus)")
    return PROMTOOL


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rules())} rules found" in out.stdout


def test_every_alert_has_a_firing_case_and_its_annotations() -> None:
    firing = {c.alert for c in CASES if c.fires}
    assert firing == set(rules()), sorted(set(rules()) ^ firing)
    for name, rule in rules().items():
        assert rule.get("labels", {}).get("severity") in ("warning", "critical"), name
        assert {"summary", "description", "runbook"} <= set(rule.get("annotations", {})), name


def test_runbook_links_point_at_existing_sections() -> None:
    for name, rule in rules().items():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        doc = ROOT / path
        assert doc.is_file(), f"{name}: {path}"
        if anchor:
            slugs = {re.sub(r"[^\w\- ]", "", h.strip("# ").lower()).replace(" ", "-")
                     for h in doc.read_text().splitlines() if h.startswith("#")}
            assert anchor in slugs, f"{name}: no section #{anchor} in {path}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_alert(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(promtool_test(case), sort_keys=False))
    out = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
