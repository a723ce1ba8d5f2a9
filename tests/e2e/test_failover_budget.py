"""The failover budget of SPEC §4, measured end to end on the wire.

``fedns serve`` runs two static clusters whose shards are probed at real
listeners on 127.0.0.1. The us target goes away while a client in the us
network queries the global name over UDP every few milliseconds; the us
address must leave the answers within ``interval * fall + timeout`` plus
100 ms to publish (plus the query period, the resolution of the measurement).
Three ways to go away: an HTTP backend that is closed (connection refused),
one that keeps accepting but never answers (the probe times out) and a TCP
listener that is closed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.e2e.procs import serving, write

GLOBAL = "nginx.default.myfed.svc.example.com."
US_CLIENT = "127.0.1.10"
US_IP, EU_IP = "192.0.2.10", "192.0.2.20"
INTERVAL, TIMEOUT, FALL = 0.4, 0.3, 2
BUDGET = INTERVAL * FALL + TIMEOUT + 0.1
QUERY_PERIOD = 0.01
SLACK = QUERY_PERIOD + 0.04  # one query period, plus a query's own round trip

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
health: {{interval: {interval}s, timeout: {timeout}s, rise: 1, fall: {fall}}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
clusters:
  - {{name: us, region: us-east1, zone: us-east1-b, networks: [127.0.1.0/24], services: [
      {{name: nginx, namespace: default, addresses: [{us_ip}], probe: {us_probe}}}]}}
  - {{name: eu, region: europe-west1, zone: europe-west1-b, networks: [127.0.2.0/24], services: [
      {{name: nginx, namespace: default, addresses: [{eu_ip}], probe: {eu_probe}}}]}}
"""


class HttpTarget:
    """An HTTP server answering 200; ``close()`` refuses from then on, ``hang()``
    keeps accepting but never answers again."""

    def __init__(self) -> None:
        self.hung = threading.Event()
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if outer.hung.is_set():
                    outer.released.wait(10)
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.open = True

    @property
    def probe(self) -> str:
        return f'{{http: "http://127.0.0.1:{self.port}/healthz"}}'

    def hang(self) -> None:
        self.hung.set()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.released.set()
            self.server.shutdown()
            self.server.server_close()


class TcpTarget:
    """A TCP listener that accepts and closes; ``close()`` refuses from then on."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def probe(self) -> str:
        return f"{{tcp: 127.0.0.1:{self.port}}}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    def close(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.thread.join(2)
            self.sock.close()


def _answer(port: int) -> list[str]:
    query = dns.message.make_query(GLOBAL, dns.rdatatype.A)
    response = dns.query.udp(query, "127.0.0.1", port=port, timeout=1.0, source=US_CLIENT)
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset
                  if rrset.rdtype == dns.rdatatype.A)


def _until_gone(port: int, since: float, limit: float) -> float:
    """Seconds from ``since`` until the us address leaves the answer (bounded)."""
    for _ in range(int(limit / QUERY_PERIOD)):
        got = _answer(port)
        if US_IP not in got:
            assert got == [EU_IP], got
            return time.monotonic() - since
        time.sleep(QUERY_PERIOD)
    pytest.fail(f"{US_IP} still answered {limit}s after its target went away")


@pytest.fixture
def eu() -> Iterator[HttpTarget]:
    target = HttpTarget()
    yield target
    target.close()


@pytest.mark.parametrize("how", ["http-closed", "http-hangs", "tcp-closed"])
def test_dead_shard_leaves_the_answers_within_the_budget(
        tmp_path: Path, eu: HttpTarget, how: str) -> None:
    us: HttpTarget | TcpTarget = TcpTarget() if how.startswith("tcp") else HttpTarget()
    try:
        cfg = write(tmp_path / "fedns.yaml", CONFIG.format(
            interval=INTERVAL, timeout=TIMEOUT, fall=FALL, us_ip=US_IP, eu_ip=EU_IP,
            us_probe=us.probe, eu_probe=eu.probe))
        with serving(cfg) as srv:
            srv.wait_healthy()
            assert _answer(srv.dns_port) == [US_IP]  # the client's own region first
            killed = time.monotonic()
            if how == "http-hangs":
                assert isinstance(us, HttpTarget)
                us.hang()
            else:
                us.close()
            took = _until_gone(srv.dns_port, killed, limit=BUDGET + 5.0)
            assert took <= BUDGET + SLACK, (
                f"{how}: served {took:.3f}s after its target went away; budget {BUDGET:.2f}s")
    finally:
        us.close()
