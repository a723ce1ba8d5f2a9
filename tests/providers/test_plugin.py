"""Entry points: the publisher `fedns serve` runs and the plan/sync commands."""

from __future__ import annotations

import argparse
import asyncio
import itertools
from typing import Any

import aetcd
import pytest
from prometheus_client import CollectorRegistry

from config.model import Config
from healthwatch.snapshot import Snapshot
from providers import commands
from providers.plugin import ProvidersPublisher, add_commands, make_publisher
from tests.providers.conftest import EtcdServer
from tests.providers.helpers import config, fed_snapshot, provider

_n = itertools.count()


def etcd_config(srv: EtcdServer) -> tuple[Config, str]:
    prefix = f"/plugin{next(_n)}/skydns"
    return config(provider("coredns-etcd", endpoints=[srv.url], prefix=prefix,
                           debounce=0.05, timeout=2.0)), prefix


async def count_keys(srv: EtcdServer, prefix: str) -> int:
    async with aetcd.Client(port=srv.client_port, timeout=5) as c:
        return len(await c.get_prefix((prefix + "/").encode()))


def test_no_providers_no_publisher_and_reload_safe_metrics() -> None:
    assert make_publisher(config(), CollectorRegistry()) is None
    reg = CollectorRegistry()
    cfg = config(provider("route53", hosted_zone_id="Z1"))
    assert isinstance(make_publisher(cfg, reg), ProvidersPublisher)
    assert isinstance(make_publisher(cfg, reg), ProvidersPublisher)  # reload: same registry


def test_commands_parse() -> None:
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))
    a = parser.parse_args(["plan", "-c", "f.yaml"])
    assert a.func is commands.cmd_plan and a.config == "f.yaml"
    b = parser.parse_args(["sync", "-c", "f.yaml", "--once", "--force"])
    assert b.func is commands.cmd_sync and b.force and b.once


async def test_publisher_runs_syncers_and_reports_status(etcd_server: EtcdServer) -> None:
    cfg, prefix = etcd_config(etcd_server)
    reg = CollectorRegistry()
    pub = make_publisher(cfg, reg)
    assert pub is not None
    await pub.start()
    pub.publish(fed_snapshot())
    for _ in range(200):
        if pub.status()[0]["state"] == "ok":
            break
        await asyncio.sleep(0.02)
    [status] = pub.status()
    assert status["state"] == "ok" and status["last_changes"]["create"] == 15
    assert reg.get_sample_value("fedns_provider_up", {"provider": "coredns-etcd"}) == 1
    assert reg.get_sample_value("fedns_provider_changes_total",
                                {"provider": "coredns-etcd", "action": "create"}) == 15
    assert await count_keys(etcd_server, prefix) == 21
    await pub.stop()


def run_cmd(fn: Any, argv: list[str], cfg: Config, snap: Snapshot,
            monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(commands, "_load", lambda path: cfg)
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))

    async def factory(_: Config) -> Snapshot:
        return snap

    return int(fn(parser.parse_args(argv), snapshot_factory=factory))


async def _count(srv: EtcdServer, prefix: str) -> int:
    return await count_keys(srv, prefix)


def test_plan_and_sync_commands(etcd_server: EtcdServer, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg, prefix = etcd_config(etcd_server)
    snap = fed_snapshot()
    assert run_cmd(commands.cmd_plan, ["plan", "-c", "x"], cfg, snap, monkeypatch) == 0
    out = capsys.readouterr().out
    assert "15 create" in out and "+ www.fed.example. 30 CNAME" in out
    assert asyncio.run(_count(etcd_server, prefix)) == 0  # a plan never writes

    assert run_cmd(commands.cmd_sync, ["sync", "-c", "x", "--once"], cfg, snap, monkeypatch) == 0
    assert asyncio.run(_count(etcd_server, prefix)) == 21

    gone = fed_snapshot(gone=True, serial=2)
    assert run_cmd(commands.cmd_plan, ["plan", "-c", "x"], cfg, gone, monkeypatch) == 0
    assert "would refuse" in capsys.readouterr().out
    code = run_cmd(commands.cmd_sync, ["sync", "-c", "x", "--once"], cfg, gone, monkeypatch)
    assert code == commands.EXIT_REFUSED
    assert "delete 12 of 15" in capsys.readouterr().err
    assert asyncio.run(_count(etcd_server, prefix)) == 21  # refused: no write
    code = run_cmd(commands.cmd_sync, ["sync", "-c", "x", "--once", "--force"], cfg, gone,
                   monkeypatch)
    assert code == 0
    assert asyncio.run(_count(etcd_server, prefix)) == 3
