"""Partial failure: each broken neighbour is contained to its own component.

``fedns serve`` runs with five static clusters whose probes hit local targets:
two real HTTP backends, one that accepts and never answers (hangs), one that
resets every connection and one that answers with garbage instead of HTTP; and
a CoreDNS-etcd provider whose endpoint accepts TCP and never answers (times
out). Each failure shows in /v1/status with its own reason, DNS keeps
answering throughout (checked while the probes are failing), and a real
failover (the us backend starts returning 503) still moves clients.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.procs import Fedns, dig, eventually, http, status, write

GLOBAL = "nginx.default.myfed.svc.example.com."
US_CLIENT, EU_CLIENT, ASIA_CLIENT = "127.0.1.10", "127.0.2.10", "127.0.3.10"
US_IP, EU_IP = "192.0.2.10", "192.0.2.20"
HANG_IP, RESET_IP, GARBAGE_IP = "192.0.2.31", "192.0.2.32", "192.0.2.33"

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
health: {{interval: 300ms, timeout: 200ms, rise: 1, fall: 2}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
  asia-east1: {{location: [24.0, 120.5], zones: [asia-east1-a]}}
clusters:
  - {{name: us, region: us-east1, zone: us-east1-b, networks: [127.0.1.0/24], services: [
      {{name: nginx, namespace: default, addresses: [{us_ip}],
        probe: {{http: "http://127.0.0.1:{us}/healthz"}}}}]}}
  - {{name: eu, region: europe-west1, zone: europe-west1-b, networks: [127.0.2.0/24], services: [
      {{name: nginx, namespace: default, addresses: [{eu_ip}],
        probe: {{http: "http://127.0.0.1:{eu}/healthz"}}}}]}}
  - {{name: asia-hang, region: asia-east1, zone: asia-east1-a, networks: [127.0.3.0/24],
      services: [{{name: nginx, namespace: default, addresses: [{hang_ip}],
                  probe: {{http: "http://127.0.0.1:{hang}/healthz"}}}}]}}
  - {{name: asia-reset, region: asia-east1, zone: asia-east1-a, services: [
      {{name: nginx, namespace: default, addresses: [{reset_ip}],
        probe: {{http: "http://127.0.0.1:{reset}/healthz"}}}}]}}
  - {{name: asia-garbage, region: asia-east1, zone: asia-east1-a, services: [
      {{name: nginx, namespace: default, addresses: [{garbage_ip}],
        probe: {{http: "http://127.0.0.1:{garbage}/healthz"}}}}]}}
providers:
  - {{type: coredns-etcd, endpoints: ["http://127.0.0.1:{etcd}"], timeout: 1s, debounce: 100ms}}
records:
  - {{name: www, type: A, value: 192.0.2.80}}
"""


class Backend:
    """An HTTP backend whose /healthz answers 200, or 503 after ``fail()``."""

    def __init__(self) -> None:
        self.failed = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = 503 if outer.failed else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BadTarget:
    """A TCP target that misbehaves: ``hang`` (accept, never answer; also never
    accepted beyond the backlog), ``reset`` (RST at once) or ``garbage``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.accepted = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            if self.kind == "hang":
                self.held.append(conn)
                continue
            if self.kind == "garbage":
                try:
                    conn.settimeout(1)
                    conn.recv(4096)
                    conn.sendall(b"\x00\xff\xfeSPDY/9 ???\r\n\x00\r\n\r\n" + bytes(range(256)))
                except OSError:
                    pass
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # with linger 0: an RST

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def targets() -> Iterator[dict[str, Any]]:
    made: dict[str, Any] = {"us": Backend(), "eu": Backend(), "hang": BadTarget("hang"),
                            "reset": BadTarget("reset"), "garbage": BadTarget("garbage"),
                            "etcd": BadTarget("hang")}
    try:
        yield made
    finally:
        for t in made.values():
            t.close()


def shards(api: str) -> dict[str, dict[str, Any]]:
    return {s["cluster"]: s for s in status(api)["shards"]}


def probes(api: str) -> dict[str, dict[str, Any]]:
    return {p["cluster"]: p for p in status(api)["engine"]["probes"]}


def test_broken_neighbours_are_contained(tmp_path: Path, targets: dict[str, Any]) -> None:
    cfg = write(tmp_path / "fedns.yaml", CONFIG.format(
        us_ip=US_IP, eu_ip=EU_IP, hang_ip=HANG_IP, reset_ip=RESET_IP, garbage_ip=GARBAGE_IP,
        **{k: t.port for k, t in targets.items()}))
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        api, port = srv.api, srv.dns_port
        # the three bad targets are down, each for its own reason; the good ones up
        state, _ = eventually(lambda: shards(api), lambda s: s["us"]["healthy"]
                              and s["eu"]["healthy"] and not any(
                                  s[c]["healthy"] or "pending" in s[c]["reason"]
                                  for c in ("asia-hang", "asia-reset", "asia-garbage")), 15)
        seen = probes(api)
        assert "timeout" in seen["asia-hang"]["last_result"], seen["asia-hang"]
        assert seen["asia-reset"]["last_result"] not in ("", "ok"), seen["asia-reset"]
        assert seen["asia-garbage"]["last_result"] not in ("", "ok"), seen["asia-garbage"]
        assert len({seen[c]["last_result"] for c in ("asia-hang", "asia-reset")}) == 2
        assert targets["hang"].accepted > 0 and targets["reset"].accepted > 0

        # the provider that times out is reported, not fatal
        prov, _ = eventually(lambda: status(api)["providers"],
                             lambda p: bool(p) and p[0].get("last_error"), 20)
        assert prov[0]["state"] != "ok", prov

        # DNS keeps answering, every time, while all of that fails in the background
        for _ in range(20):
            assert sorted(dig(port, GLOBAL)) == [US_IP, EU_IP]
            assert dig(port, GLOBAL, source=US_CLIENT) == [US_IP]
            assert dig(port, GLOBAL, source=ASIA_CLIENT) in ([US_IP], [EU_IP])
            assert dig(port, "www.example.com.", extra=["+tcp"]) == ["192.0.2.80"]
        assert http(api + "/healthz")[0] == 200

        # a real failure still fails over: us starts answering 503
        targets["us"].failed = True
        eventually(lambda: dig(port, GLOBAL, source=US_CLIENT),
                   lambda v: v == [EU_IP], 10)
        assert not shards(api)["us"]["healthy"]
        assert "HTTP 503" in probes(api)["us"]["last_result"]
        targets["us"].failed = False
        eventually(lambda: dig(port, GLOBAL, source=US_CLIENT), lambda v: v == [US_IP], 10)
        assert status(api)["ready"] is True
        assert state["eu"]["healthy"]
    finally:
        rc = srv.stop()
    assert rc == 0, srv.output
    assert "Traceback" not in srv.output, srv.output
    assert "sync_failed" in srv.output
