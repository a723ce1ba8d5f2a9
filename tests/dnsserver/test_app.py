"""The App wiring in-process: publishers wait for readiness, status, reload."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from config.loader import load, load_text
from dnsserver.app import App
from healthwatch.kube.sim import SimFleet
from healthwatch.snapshot import Snapshot

GLOBAL = "nginx.default.myfed.svc.example.com."

BASE = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
health: {{cluster_grace: 20s}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
clusters:
  - name: us
    region: us-east1
    zone: us-east1-b
    networks: [127.0.1.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [{us}], ready: 1}}
{more}
"""


class FakePublisher:
    name = "fake"

    def __init__(self) -> None:
        self.got: list[Snapshot] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    def publish(self, snapshot: Snapshot) -> None:
        self.got.append(snapshot)

    async def stop(self) -> None:
        self.stopped = True

    def status(self) -> list[dict[str, Any]]:
        return [{"name": "fake", "published": len(self.got)}]


async def _a(app: App, name: str, source: str = "127.0.0.1") -> list[str]:
    port = app.dns.addresses[0][1]
    q = dns.message.make_query(name, dns.rdatatype.A)
    r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2, source=source)
    return sorted(rd.to_text() for rrset in r.answer for rd in rrset
                  if rrset.rdtype == dns.rdatatype.A)


async def _until(pred: Any, within: float = 5.0) -> None:
    for _ in range(int(within / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_publishers_get_snapshots_only_once_every_source_reported(
        tmp_path: Path) -> None:
    fleet = SimFleet(str(tmp_path))
    await fleet.start(["eu"])
    fleet.publish_service("eu", "nginx", lb_ip="192.0.2.20", ready=1)
    api = fleet.apis["eu"]
    api.pause()  # the eu API hangs: its source cannot sync yet
    eu = fleet.cluster_config("eu")
    more = (f"  - {{name: eu, region: europe-west1, zone: europe-west1-b, source: kubernetes,"
            f" kubeconfig: {eu['kubeconfig']}, context: {eu['context']}}}")
    app = App(load_text(BASE.format(us="192.0.2.10", more=more)), publishers=False)
    pub = FakePublisher()
    app.publishers = [pub]
    await app.start()
    try:
        await asyncio.sleep(0.5)
        assert not app.ready
        assert pub.got == []  # a partial view never leaves the process
        assert await _a(app, GLOBAL, "127.0.1.10") == ["192.0.2.10"]  # DNS serves meanwhile
        api.resume()
        await _until(lambda: app.ready and pub.got)
        assert {s.cluster for s in pub.got[-1].shards} == {"us", "eu"}
        assert app.status()["providers"] == [{"name": "fake", "published": len(pub.got)}]
    finally:
        await app.stop()
        await fleet.stop()
    assert pub.stopped


async def test_status_document(tmp_path: Path) -> None:
    cfg = tmp_path / "f.yaml"
    cfg.write_text(BASE.format(us="192.0.2.10", more=""))
    app = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await app.start()
    try:
        await _until(lambda: app.ready)
        await app.drain("us", "default/nginx")
        doc = app.status()
        assert doc["ready"] is True and doc["stale"] is False
        assert doc["config"]["path"] == str(cfg)
        assert doc["snapshot"]["serial"] == app.engine.snapshot.serial
        assert doc["drains"] == {"clusters": [], "shards": ["us/default/nginx"]}
        assert doc["shards"][0]["reason"] == "shard drained"
        assert doc["engine"]["sources"]["us"]["synced"] is True
    finally:
        await app.stop()


async def test_reload_keeps_the_old_config_when_the_new_one_is_invalid(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "f.yaml"
    good = BASE.format(us="192.0.2.10", more="")
    cfg.write_text(good)
    app = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await app.start()
    try:
        await _until(lambda: app.ready)
        cfg.write_text(good.replace("ttl: 5", "ttl: -5\nnope: 1"))
        with caplog.at_level(logging.ERROR, logger="dnsserver.app"):
            res = await app.reload()
        assert not res.ok and len(res.problems) >= 2
        assert all(p in caplog.text for p in res.problems)  # every problem logged
        assert app.config.ttl == 5
        assert await _a(app, GLOBAL, "127.0.1.10") == ["192.0.2.10"]

        cfg.write_text(good.replace("192.0.2.10", "192.0.2.11").replace(
            '"127.0.0.1:0"]', '"127.0.0.1:1"]'))
        with caplog.at_level(logging.WARNING, logger="dnsserver.app"):
            res = await app.reload()
        assert res.ok and res.serial == app.engine.snapshot.serial
        assert "reload_needs_restart key=listen.dns" in caplog.text
        await _until(lambda: app.dns.serial == app.engine.snapshot.serial)
        assert await _a(app, GLOBAL, "127.0.1.10") == ["192.0.2.11"]
    finally:
        await app.stop()


async def test_reload_logs_the_new_configs_warnings(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A reload logs ``config.advice``'s warnings of the config it applied, with
    their lines in the file, as a start does (cli's serve)."""
    cfg = tmp_path / "f.yaml"
    cfg.write_text(BASE.format(us="192.0.2.10", more=""))
    app = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await app.start()
    try:
        await _until(lambda: app.ready)
        cfg.write_text(BASE.format(us="192.0.2.10", more="").replace(
            "health: {cluster_grace: 20s}", "health: {cluster_grace: 20s, fall: 1}"))
        with caplog.at_level(logging.WARNING, logger="dnsserver.app"):
            res = await app.reload()
        assert res.ok
        logged = [r.getMessage() for r in caplog.records if "config_warning" in r.getMessage()]
        assert any("code=unprobed-static-shard" in m for m in logged)
        assert not any("code=no-fall-hysteresis" in m for m in logged)  # nothing is probed
    finally:
        await app.stop()


async def test_reload_without_a_file_is_refused() -> None:
    app = App(load_text(BASE.format(us="192.0.2.10", more="")), publishers=False)
    res = await app.reload()
    assert not res.ok and "no config file" in res.problems[0]


async def test_not_ready_until_the_dns_server_serves_the_ready_snapshot(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A full table build runs in a thread: "submitted" must not count as "served"."""
    app = App(load_text(BASE.format(us="192.0.2.10", more="")), publishers=False)
    held: list[Snapshot] = []
    original_submit = app.dns.submit

    def slow_submit(snap: Snapshot) -> None:
        if app.dns.serial is None:
            original_submit(snap)  # the first (unready) Snapshot is served at once
        else:
            held.append(snap)  # later ones are still "building"

    monkeypatch.setattr(app.dns, "submit", slow_submit)
    await app.start()
    try:
        await _until(lambda: app.engine.ready and bool(held))
        await asyncio.sleep(0.2)
        assert not app.ready  # engine ready, but DNS still serves an older serial
        for snap in held:
            original_submit(snap)
        await _until(lambda: app.ready)
        assert await _a(app, GLOBAL, "127.0.1.10") == ["192.0.2.10"]
    finally:
        await app.stop()


async def _transfer_rcodes(app: App) -> tuple[int, int]:
    """(rcode of an IXFR over UDP, rcode of an AXFR over TCP) from 127.0.0.1."""
    port = app.dns.addresses[0][1]
    ixfr = dns.message.make_query("example.com.", dns.rdatatype.IXFR)
    udp = await dns.asyncquery.udp(ixfr, "127.0.0.1", port=port, timeout=2)
    axfr = dns.message.make_query("example.com.", dns.rdatatype.AXFR)
    tcp = await dns.asyncquery.tcp(axfr, "127.0.0.1", port=port, timeout=2)
    return udp.rcode(), tcp.rcode()


async def test_reload_applies_the_servers_protocol_knobs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """transfer_allow, TCP limits and RRL limits change on reload without a
    restart (they were kept from the start before); knobs that need one are
    named in a warning."""
    cfg = tmp_path / "f.yaml"
    base = BASE.format(us="192.0.2.10", more="")
    cfg.write_text(base + "server: {rrl_responses_per_second: 1000}\n")
    app = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await app.start()
    try:
        await _until(lambda: app.ready and app.dns.serial == app.engine.snapshot.serial)
        assert await _transfer_rcodes(app) == (dns.rcode.REFUSED, dns.rcode.REFUSED)
        cfg.write_text(base + "server: {transfer_allow: [127.0.0.0/8], tcp_max_per_client: 7,\n"
                              "         rrl_responses_per_second: 500, rrl_slip: 0,\n"
                              "         tcp_idle_timeout: 3s}\n")
        with caplog.at_level(logging.WARNING, logger="dnsserver.app"):
            res = await app.reload()
        assert res.ok, res.problems
        assert await _transfer_rcodes(app) == (dns.rcode.NOERROR, dns.rcode.NOERROR)
        assert app.dns._limits.per_client == 7
        assert app.dns.rrl is not None and (app.dns.rrl.rate, app.dns.rrl.slip) == (500.0, 0)
        assert "reload_needs_restart key=server.tcp_idle_timeout" in caplog.text
        assert "key=server.rrl_responses_per_second" not in caplog.text

        cfg.write_text(base)  # back to the defaults: RRL off needs a restart
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dnsserver.app"):
            res = await app.reload()
        assert res.ok, res.problems
        assert await _transfer_rcodes(app) == (dns.rcode.REFUSED, dns.rcode.REFUSED)
        assert "reload_needs_restart key=server.rrl_responses_per_second" in caplog.text
    finally:
        await app.stop()
