"""One ``free_port`` for the tests and the benches (bench/procs.py, re-exported
by tests/ports.py), with the host argument both kinds of caller may pass."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

import bench.procs
import tests.ports

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = re.compile(r"^\s*def free_port\(", re.MULTILINE)


def test_tests_and_bench_share_one_free_port() -> None:
    assert tests.ports.free_port is bench.procs.free_port
    defining = sorted(str(p.relative_to(ROOT)) for d in ("tests", "bench")
                      for p in (ROOT / d).rglob("*.py") if DEFINITION.search(p.read_text()))
    assert defining == ["bench/procs.py"]


def _loopback6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_bench_free_port_takes_the_host(host: str) -> None:
    if ":" in host and not _loopback6():
        pytest.skip("no IPv6 loopback")
    port = bench.procs.free_port(host)
    assert 0 < port < 65536
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as udp, \
            socket.socket(family, socket.SOCK_STREAM) as tcp:
        udp.bind((host, port))  # free a moment ago, on this host
        tcp.bind((host, port))
