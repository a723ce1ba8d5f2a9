"""Static NS records below the apex are delegations (zone cuts): the server
answers the cut and the names below it with referrals, so config refuses
records there that would never be served (anything but NS/DS at the cut and
glue below it), NS at a wildcard name, and cuts over generated names."""

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
"""


def problems(text: str) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in problems_of(BASE + text)]


def test_a_delegation_with_glue_loads() -> None:
    cfg = load_text(BASE + """\
records:
  - {name: sub, type: NS, value: ns1.sub}
  - {name: sub, type: NS, value: ns.other.net.}
  - {name: sub, type: NS, value: ns2}
  - {name: ns1.sub, type: A, value: 192.0.2.53}
  - {name: ns1.sub, type: AAAA, value: "2001:db8::53"}
  - {name: ns2, type: A, value: 192.0.2.54}
  - {name: '*.sub2', type: A, value: 192.0.2.55}
  - {name: '*', type: TXT, value: wildcard at the apex}
""", "t.yaml")
    assert [(r.name, r.rtype) for r in cfg.records][:2] == [("sub.example.com.", "NS")] * 2


def test_records_a_delegation_would_hide_are_refused() -> None:
    got = problems("""\
records:
  - {name: sub, type: NS, value: ns1.sub}
  - {name: sub, type: A, value: 192.0.2.1}
  - {name: hidden.sub, type: TXT, value: never served}
  - {name: ns1.sub, type: A, value: 192.0.2.53}
  - {name: ns1.sub, type: TXT, value: not glue}
  - {name: other.sub, type: A, value: 192.0.2.9}
  - {name: deeper.sub, type: NS, value: ns.deeper.sub}
  - {name: '*.sub', type: A, value: 192.0.2.10}
  - {name: '*.w', type: NS, value: ns.other.net.}
""")
    lines = [line for line, _ in got]
    assert lines == [9, 10, 12, 13, 14, 15, 16], got
    text = dict(got)
    assert "sub.example.com. is delegated (NS records at sub.example.com.): only NS and DS" \
        in text[9]
    assert "this A would never be served" in text[9]
    assert "hidden.sub.example.com. is below the delegation at sub.example.com.: only glue" \
        in text[10]
    assert "this TXT would never be served" in text[12]
    assert "other.sub.example.com. is below the delegation" in text[13]  # not a nameserver
    assert "this NS would never be served" in text[14]  # a cut below a cut is occluded too
    assert "*.sub.example.com. is below the delegation" in text[15]
    assert "NS records at the wildcard name *.w.example.com. cannot delegate" in text[16]


@pytest.mark.parametrize("cut", ["svc", "f.svc", "r", "z.r"])
def test_a_delegation_over_generated_names_is_refused(cut: str) -> None:
    got = problems(f"""\
records:
  - {{name: {cut}, type: NS, value: ns.other.net.}}
""")
    assert len(got) >= 1 and all(line == 8 for line, _ in got), got
    assert f"the delegation at {cut}.example.com. would take over the names fedns generates" \
        in got[0][1]


def test_an_ingress_host_inside_a_delegation_is_refused() -> None:
    got = problems("""\
records:
  - {name: shop, type: NS, value: ns.other.net.}
clusters:
  - name: c
    zone: z
    ingresses:
      - {name: web, namespace: default, hosts: [www.shop, other], addresses: [192.0.2.20]}
""")
    assert got == [(13, "clusters[0].ingresses[0].hosts[0]: ingress host www.shop.example.com. "
                        "is inside the delegation at shop.example.com. (it would never be "
                        "served)")], got
