"""``fedns demo``: starts, answers the dig commands it prints, fails over and back."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.procs import DIG, Fedns, eventually, http, run_fedns, status

GLOBAL = "nginx.default.demo.svc.example.com."
WEST_CLIENT = "127.0.2.10"


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
    finally:
        assert proc.stop() == 0, proc.output
