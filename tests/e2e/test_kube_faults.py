"""A member cluster's Kubernetes API that returns 500s, then garbage, under a
real ``fedns serve``: the failure is contained to that cluster's source.

Two simulated member clusters (healthwatch.kube.sim) run on a private event
loop in a thread of the test process. While ``us`` fails, /v1/status shows
its error, every query of a bounded dnspython loop is answered, the ``us``
shards it knew are still served (``cluster_grace`` is long here) and ``eu``
keeps working, including a Service added to it during the fault. After
recovery the error clears and the change made in ``us`` while it failed
arrives through the resumed watch, without a relist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from healthwatch.kube.sim.fleet import SimFleet
from tests.e2e.procs import Fedns, LoopThread, dig, eventually, status, write

US_IP, US_IP2, EU_IP, SHOP_IP = "192.0.2.10", "192.0.2.11", "192.0.2.20", "192.0.2.21"
NGINX = "nginx.default.myfed.svc.example.com."
NGINX_US = "nginx.default.myfed.svc.us-east1.example.com."
NGINX_EU = "nginx.default.myfed.svc.europe-west1.example.com."
SHOP = "shop.default.myfed.svc.example.com."
QUERIES = 200  # per fault phase

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
health: {{cluster_grace: 60s}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
clusters:
  - {{name: us, region: us-east1, zone: us-east1-b, source: kubernetes,
      kubeconfig: {kubeconfig}, context: sim-us}}
  - {{name: eu, region: europe-west1, zone: europe-west1-b, source: kubernetes,
      kubeconfig: {kubeconfig}, context: sim-eu}}
records:
  - {{name: www, type: A, value: 192.0.2.80}}
"""




@pytest.fixture
def sims(tmp_path: Path) -> Iterator[tuple[LoopThread, SimFleet]]:
    lt = LoopThread()
    fleet = SimFleet(str(tmp_path))
    try:
        lt.run(fleet.start(["us", "eu"]))
        lt.call(fleet.publish_service, "us", "nginx", lb_ip=US_IP, ready=2)
        lt.call(fleet.publish_service, "eu", "nginx", lb_ip=EU_IP, ready=2)
        yield lt, fleet
    finally:
        lt.run(fleet.stop())
        lt.close()


def clusters(api: str) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in status(api)["clusters"]}


def answers(port: int, name: str) -> tuple[str, list[str]]:
    query = dns.message.make_query(name, dns.rdatatype.A)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=1.0)
    addresses = sorted(rd.to_text() for rrset in response.answer for rd in rrset
                       if rrset.rdtype == dns.rdatatype.A)
    return dns.rcode.to_text(response.rcode()), addresses


def query_loop(port: int, expected: dict[str, list[str]]) -> None:
    """QUERIES queries over ``expected``'s names, one at a time, no retries:
    every one must be answered (a timeout raises) with the expected addresses."""
    names = sorted(expected)
    wrong = []
    for i in range(QUERIES):
        name = names[i % len(names)]
        got = answers(port, name)
        if got != ("NOERROR", expected[name]):
            wrong.append((name, got))
    assert not wrong, wrong[:10]


def test_failing_kube_api_is_contained_to_its_cluster(
        tmp_path: Path, sims: tuple[LoopThread, SimFleet]) -> None:
    lt, fleet = sims
    us = fleet.apis["us"]
    cfg = write(tmp_path / "fedns.yaml", CONFIG.format(kubeconfig=fleet.kubeconfig))
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        eventually(lambda: sorted(dig(srv.dns_port, NGINX)), lambda v: v == [US_IP, EU_IP], 20)
        us_lists = len(us.lists("services"))

        # 1. every list and watch of us answers 500; its open watches are reset
        lt.call(us.fail, None, 500, message="etcdserver: request timed out")
        lt.call(us.drop_watches)
        got, _ = eventually(lambda: clusters(srv.api), lambda c: not c["us"]["reachable"], 15)
        assert re.fullmatch(r"watch \w+: HTTP 500 Internal Server Error: "
                            r"etcdserver: request timed out", got["us"]["last_error"] or "")
        assert got["eu"]["reachable"] and got["eu"]["last_error"] is None
        lt.call(fleet.publish_service, "us", "nginx", lb_ip=US_IP2, ready=2)  # unseen for now
        lt.call(fleet.publish_service, "eu", "shop", lb_ip=SHOP_IP, ready=1)
        eventually(lambda: answers(srv.dns_port, SHOP), lambda v: v == ("NOERROR", [SHOP_IP]),
                   10)
        query_loop(srv.dns_port, {NGINX: [US_IP, EU_IP], NGINX_US: [US_IP], NGINX_EU: [EU_IP],
                                  SHOP: [SHOP_IP], "www.example.com.": ["192.0.2.80"]})
        assert not clusters(srv.api)["us"]["reachable"]  # still failing all along

        # 2. the API answers again: the watch resumes and delivers what changed
        lt.call(us.clear_faults)
        got, _ = eventually(lambda: clusters(srv.api),
                            lambda c: c["us"]["reachable"] and c["us"]["last_error"] is None, 15)
        eventually(lambda: answers(srv.dns_port, NGINX_US),
                   lambda v: v == ("NOERROR", [US_IP2]), 10)
        assert len(us.lists("services")) == us_lists  # resumed, not relisted

        # 3. 200 OK with garbage instead of lists and watch streams
        lt.call(us.garbage, None, b"<html><body>upstream error</body></html>",
                on="any", content_type="text/html")
        lt.call(us.drop_watches)
        got, _ = eventually(lambda: clusters(srv.api), lambda c: not c["us"]["reachable"], 15)
        assert re.fullmatch(r"watch \w+: watch stream ended after "
                            r"1 malformed line", got["us"]["last_error"] or "")
        query_loop(srv.dns_port, {NGINX: [US_IP2, EU_IP], NGINX_US: [US_IP2],
                                  NGINX_EU: [EU_IP], SHOP: [SHOP_IP]})
        assert not clusters(srv.api)["us"]["reachable"]

        # 4. recovered, then a watch event of the wrong shape is skipped
        lt.call(us.clear_faults)
        eventually(lambda: clusters(srv.api),
                   lambda c: c["us"]["reachable"] and c["us"]["last_error"] is None, 15)
        lt.call(us.inject_event, "services", "MODIFIED",
                {"metadata": {"name": "nginx", "namespace": "default"}, "status": "garbage"})
        lt.call(fleet.publish_service, "us", "api", lb_ip=US_IP, ready=1)
        eventually(lambda: answers(srv.dns_port, "api.default.myfed.svc.example.com."),
                   lambda v: v == ("NOERROR", [US_IP]), 10)
        assert answers(srv.dns_port, NGINX_US) == ("NOERROR", [US_IP2])
        assert clusters(srv.api)["us"]["last_error"] is None
        assert len(us.lists("services")) == us_lists
    finally:
        assert srv.stop() == 0, srv.output
    assert "Traceback" not in srv.output, srv.output
    assert "malformed_object" in srv.output
