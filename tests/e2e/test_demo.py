"""``fedns demo``: starts, answers the dig commands it prints, fails over and back,
for its federated Service and for its federated Gateway API HTTPRoute's host."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.procs import DIG, Fedns, dig, eventually, http, run_fedns, status

GLOBAL = "nginx.default.demo.svc.example.com."
WEST_CLIENT = "127.0.2.10"
SHOP = "shop.example.com."  # the hostname of the demo's HTTPRoute default/shop
ROUTE = "httproute:default/shop"
# a client in each cluster's network -> that cluster's backend (its Gateway's address)
NEAREST = {"127.0.1.10": "127.0.1.1", "127.0.2.10": "127.0.2.1", "127.0.3.10": "127.0.3.1"}


@pytest.fixture
def demo() -> Iterator[Fedns]:
    proc = Fedns("demo", "--dns-port", "0", "--http-port", "0", "--backend-port", "0")
    try:
        proc.wait_started()
        proc.wait_for(lambda o: "Ctrl-C stops the demo." in o, 20, "the walkthrough")
        proc.wait_ready()
        proc.wait_healthy()
        yield proc
    finally:
        assert proc.stop() == 0, proc.output


def printed_commands(output: str, prefix: str) -> list[tuple[list[str], str]]:
    """The walkthrough's ``prefix ...`` commands as argv, with their comment."""
    out = []
    for line in output.splitlines():
        line = line.strip()
        if line.startswith(prefix):
            cmd, _, note = line.partition("  # ")
            out.append((shlex.split(cmd), note))
    return out


def run(argv: list[str]) -> list[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.split()


def test_the_printed_dig_commands_answer_as_documented(demo: Fedns) -> None:
    if DIG is None:
        pytest.skip("dig is not installed")
    assert f"-p {demo.dns_port}" in demo.output and str(demo.http_port) in demo.output
    digs = printed_commands(demo.output, "dig ")
    assert len(digs) >= 4
    assert any(SHOP in argv for argv, note in digs if "-> " in note), "no dig line for the route"
    for argv, note in digs:
        if "after ~" in note:
            continue  # the post-failure command, run below
        answer = run(argv)
        assert answer, f"{argv} answered nothing"
        for ip in re.findall(r"-> (127\.0\.\d+\.\d+)", note):  # "-> 127.0.2.1"
            assert answer[-1] == ip, (argv, answer)
        if "every healthy cluster" in note:
            assert sorted(answer) == ["127.0.1.1", "127.0.2.1", "127.0.3.1"]
        if "CNAME" in note:
            assert answer[0].endswith(".example.com.") and answer[-1].startswith("127.0.")


def test_fail_moves_clients_to_the_nearest_region_and_restore_brings_them_back(
        demo: Fedns) -> None:
    if DIG is None:
        pytest.skip("dig is not installed")
    base = ["dig", "@127.0.0.1", "-p", str(demo.dns_port), "+short", "+tries=1", "+time=2",
            GLOBAL, "-b", WEST_CLIENT]
    assert run(base) == ["127.0.2.1"]
    # health: interval 500ms, timeout 300ms, fall 2, rise 2 -> 1.3 s + 1 s bound
    bound = 0.5 * 2 + 0.3 + 1.0
    started = time.monotonic()
    assert http(demo.api + "/demo/clusters/us-west/fail", "POST")[0] == 200
    eventually(lambda: run(base), lambda a: a == ["127.0.1.1"], timeout=10, interval=0.05)
    took = time.monotonic() - started
    assert took <= bound, f"failover took {took:.2f}s > {bound}s"
    doc = status(demo.api)
    assert {c["source"] for c in doc["clusters"]} == {"kubernetes"}
    west = next(s for s in doc["shards"] if s["cluster"] == "us-west")
    assert west["healthy"] is False and "probe" in west["reason"]

    started = time.monotonic()
    assert http(demo.api + "/demo/clusters/us-west/restore", "POST")[0] == 200
    eventually(lambda: run(base), lambda a: a == ["127.0.2.1"], timeout=10, interval=0.05)
    assert time.monotonic() - started <= 0.5 * 2 + 0.3 + 1.0
    assert http(demo.api + "/demo/clusters/mars/fail", "POST")[0] == 404


def _route_shards(api: str) -> dict[str, dict[str, object]]:
    """The demo's HTTPRoute shards in /v1/status, by cluster."""
    return {s["cluster"]: s for s in status(api)["shards"] if s["service"] == ROUTE}


def test_the_httproute_host_answers_with_each_clients_cluster_and_fails_over(
        demo: Fedns) -> None:
    assert "api_not_served" not in demo.output  # the simulators serve the Gateway API
    routes = _route_shards(demo.api)
    assert sorted(routes) == ["eu", "us-east", "us-west"], routes
    assert all(r["hosts"] == [SHOP] and r["healthy"] for r in routes.values()), routes
    for client, backend in NEAREST.items():
        assert dig(demo.dns_port, SHOP, source=client) == [backend], client
    assert sorted(dig(demo.dns_port, SHOP)) == sorted(NEAREST.values())  # unknown client

    assert http(demo.api + "/demo/clusters/us-west/fail", "POST")[0] == 200
    eventually(lambda: dig(demo.dns_port, SHOP, source=WEST_CLIENT),
               lambda a: a == ["127.0.1.1"], timeout=10, interval=0.05)  # nearest: us-east1
    west = _route_shards(demo.api)["us-west"]
    assert west["healthy"] is False and "probe" in str(west["reason"]), west
    assert dig(demo.dns_port, SHOP, source="127.0.3.10") == ["127.0.3.1"]  # others stay

    assert http(demo.api + "/demo/clusters/us-west/restore", "POST")[0] == 200
    eventually(lambda: dig(demo.dns_port, SHOP, source=WEST_CLIENT),
               lambda a: a == ["127.0.2.1"], timeout=10, interval=0.05)


def test_drain_through_the_cli_in_the_demo(demo: Fedns) -> None:
    if DIG is None:
        pytest.skip("dig is not installed")
    base = ["dig", "@127.0.0.1", "-p", str(demo.dns_port), "+short", "+tries=1", "+time=2",
            GLOBAL, "-b", WEST_CLIENT]
    assert run_fedns("drain", "us-west", "--api", demo.api).returncode == 0
    eventually(lambda: run(base), lambda a: a == ["127.0.1.1"], timeout=5)
    assert status(demo.api)["drains"]["clusters"] == ["us-west"]
    assert run_fedns("undrain", "us-west", "--api", demo.api).returncode == 0
    eventually(lambda: run(base), lambda a: a == ["127.0.2.1"], timeout=5)


def test_static_demo_answers_too() -> None:
    if DIG is None:
        pytest.skip("dig is not installed")
    proc = Fedns("demo", "--static", "--quiet", "--dns-port", "0", "--http-port", "0",
                 "--backend-port", "0")
    try:
        proc.wait_started()
        proc.wait_ready()
        proc.wait_healthy()
        assert "Ctrl-C" not in proc.output  # --quiet
        assert {c["source"] for c in status(proc.api)["clusters"]} == {"static"}
        base = ["dig", "@127.0.0.1", "-p", str(proc.dns_port), "+short", GLOBAL]
        assert run([*base, "-b", "127.0.3.10"]) == ["127.0.3.1"]
        # static clusters have no HTTPRoutes; the same host is a static ingress there
        assert dig(proc.dns_port, SHOP, source="127.0.3.10") == ["127.0.3.1"]
        assert {s["service"] for s in status(proc.api)["shards"]} == {
            "default/nginx", "ingress:default/shop"}
    finally:
        assert proc.stop() == 0, proc.output
