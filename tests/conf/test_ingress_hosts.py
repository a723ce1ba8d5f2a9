"""Static clusters' Ingress hosts follow the rule Kubernetes clusters' hosts do
(``config.names.ingress_host_refusal``): not ``*.Z``, and nothing inside the
names fedns generates for services except a global name itself."""

from __future__ import annotations

import pytest

from config.loader import load_text
from tests.conf.test_loader import problems_of

BASE = """\
zone: example.com.
federation: f
regions:
  r: {location: [0, 0], zones: [z]}
nameservers:
  ns1: [192.0.2.1]
clusters:
  - name: c
    region: r
    zone: z
    source: static
    ingresses:
      - {name: shop, namespace: web, hosts: [%s], addresses: [192.0.2.20]}
"""


def problems(hosts: str) -> list[str]:
    return [p.message for p in problems_of(BASE % hosts)]


@pytest.mark.parametrize("hosts", [
    "'*.shop', shop, a.shop",  # a wildcard beside concrete hosts under it
    "'*.svc'",  # above the generated names: existing names block it
    "web.default.f.svc",  # exactly a global name: merges with that Service
])
def test_hosts_that_load(hosts: str) -> None:
    cfg = load_text(BASE % hosts, "t.yaml")
    assert cfg.clusters[0].ingresses[0].hosts


@pytest.mark.parametrize(("hosts", "expected"), [
    ("'*'", "would answer every missing name of the zone example.com."),
    ("'*.example.com.'", "would answer every missing name"),
    ("web.default.f.svc.r", "inside the names fedns generates"),  # a region-level name
    ("web.default.f.svc.z.r", "inside the names fedns generates"),  # an AZ-level name
    ("'*.default.f.svc'", "inside the names fedns generates"),
    ("x.web.default.f.svc", "inside the names fedns generates"),
])
def test_refused_hosts(hosts: str, expected: str) -> None:
    got = problems(hosts)
    assert len(got) == 1 and expected in got[0], got
