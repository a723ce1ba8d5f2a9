"""Write the Prometheus Operator's PrometheusRule from the plain rule file.

``config/prometheus/alerts.yaml`` is the one source of the alerting rules
(promtool and a real Prometheus test it). The PrometheusRule object in
``config/deploy/prometheus-operator/`` is generated from it: its ``spec`` is
the rule file's text from ``groups:`` on, indented, so comments stay next to
their rules and ``spec.groups`` is the file's ``groups`` exactly. kustomize
cannot build it itself: it only reads files under its own directory, and
has no way to wrap a file's content in an object.

    python -m config.prometheus.operator_rule           # rewrite the object
    python -m config.prometheus.operator_rule --check   # exit 1 if it is stale
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "alerts.yaml"
TARGET = ROOT / "config" / "deploy" / "prometheus-operator" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from config/prometheus/alerts.yaml by
# `python -m config.prometheus.operator_rule`: edit the rule file, then run it.
# tests/e2e/test_prometheus_operator.py fails when the two differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: fedns
  labels:
    app.kubernetes.io/name: fedns
    app.kubernetes.io/component: dns
spec:
"""


class RuleFileError(ValueError):
    """The rule file has no top-level ``groups:`` line to start from."""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest for a rule file's text."""
    lines = rules_text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith("groups:")), None)
    if start is None:
        raise RuleFileError("the rule file has no top-level 'groups:' line")
    body = "".join(f"  {ln}\n" if ln.strip() else "\n" for ln in lines[start:])
    return HEADER + body


def main(argv: list[str]) -> int:
    want = render(RULES.read_text())
    if argv == ["--check"]:
        if not TARGET.exists() or TARGET.read_text() != want:
            print(f"{TARGET.relative_to(ROOT)} is stale: run "
                  "python -m config.prometheus.operator_rule", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: python -m config.prometheus.operator_rule [--check]", file=sys.stderr)
        return 2
    TARGET.write_text(want)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
