"""A wildcard Ingress host learned from simulated member clusters' Kubernetes
APIs, answered per client locality by a real ``fedns serve``.

``shop`` is a federated Ingress with the rule host ``*.shop.example.com`` in
``us`` and ``eu``; ``us`` also has ``a.shop.example.com``. Clients are told
apart by EDNS Client Subnet inside the clusters' ``networks``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from healthwatch.kube.sim.fleet import SimFleet
from healthwatch.kube.sim.objects import ingress
from tests.e2e.procs import Fedns, LoopThread, eventually, write

US_IP, EU_IP = "192.0.2.10", "192.0.2.20"
US_CLIENT, EU_CLIENT = "10.1.0.0", "10.2.0.0"

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
clusters:
  - {{name: us, region: us-east1, zone: us-east1-b, networks: [10.1.0.0/16],
      source: kubernetes, kubeconfig: {kubeconfig}, context: sim-us}}
  - {{name: eu, region: europe-west1, zone: europe-west1-b, networks: [10.2.0.0/16],
      source: kubernetes, kubeconfig: {kubeconfig}, context: sim-eu}}
"""


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[tuple[LoopThread, SimFleet]]:
    lt = LoopThread()
    fleet = SimFleet(str(tmp_path))
    try:
        lt.run(fleet.start(["us", "eu"]))
        lt.call(fleet.apis["us"].apply, "ingresses", ingress(
            "shop", hosts=["*.shop.example.com", "a.shop.example.com"], lb_ips=[US_IP]))
        lt.call(fleet.apis["eu"].apply, "ingresses", ingress(
            "shop", hosts=["*.shop.example.com"], lb_ips=[EU_IP]))
        yield lt, fleet
    finally:
        lt.run(fleet.stop())
        lt.close()


def ask(port: int, name: str, client: str | None) -> tuple[str, list[tuple[str, str]]]:
    """(rcode, [(owner, address)]) of an A query, from ``client``'s /24 via ECS."""
    options: list[dns.edns.Option] = []
    if client is not None:
        options.append(dns.edns.ECSOption(str(ipaddress.ip_address(client)), 24))
    query = dns.message.make_query(name, dns.rdatatype.A, use_edns=0, options=options)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=1.0)
    return dns.rcode.to_text(response.rcode()), sorted(
        (rrset.name.to_text(), rd.to_text()) for rrset in response.answer for rd in rrset
        if rrset.rdtype == dns.rdatatype.A)


def test_wildcard_ingress_from_kubernetes_answers_per_locality(
        tmp_path: Path, sims: tuple[LoopThread, SimFleet]) -> None:
    _, fleet = sims
    cfg = write(tmp_path / "fedns.yaml", CONFIG.format(kubeconfig=fleet.kubeconfig))
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        name = "anything.shop.example.com."
        eventually(lambda: ask(srv.dns_port, name, None),
                   lambda v: v == ("NOERROR", sorted([(name, EU_IP), (name, US_IP)])), 20)
        assert ask(srv.dns_port, name, US_CLIENT) == ("NOERROR", [(name, US_IP)])
        assert ask(srv.dns_port, name, EU_CLIENT) == ("NOERROR", [(name, EU_IP)])
        deep = "x.y.shop.example.com."  # several labels below the wildcard
        assert ask(srv.dns_port, deep, EU_CLIENT) == ("NOERROR", [(deep, EU_IP)])
        # the concrete host (only in us) blocks the wildcard for its own name
        concrete = "a.shop.example.com."
        assert ask(srv.dns_port, concrete, EU_CLIENT) == ("NOERROR", [(concrete, US_IP)])
        # ... and for the names below it, which the wildcard does not cover
        assert ask(srv.dns_port, "b.a.shop.example.com.", EU_CLIENT)[0] == "NXDOMAIN"
    finally:
        assert srv.stop() == 0, srv.output
    assert "Traceback" not in srv.output, srv.output
