"""Where NOTIFY is sent from: ``DnsServer(notify=True)`` on every new serial
it serves (and the one it serves at start), ``App`` (the parent process)
with the configured ``server.also_notify``, a reload's target list for the
next serial, and never a ``server.workers`` worker process. Secondaries are
the recording UDP listeners of ``test_notify``."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import dns.rcode
from prometheus_client import CollectorRegistry

from config.loader import load
from dnsserver.app import App
from dnsserver.notify import Notifier
from dnsserver.server import DnsServer
from dnsserver.workers import WorkerPool
from healthwatch.snapshot import Snapshot
from tests.dnsserver import test_notify
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_app import BASE, _until
from tests.dnsserver.test_notify import LIMIT, QUICK, Secondary, always, secondary
from tests.dnsserver.test_workers import serving, until

WWW = f"www.{zf.ZONE}"
closing = test_notify.closing  # the fixture


def changed(serial: int, address: str) -> Snapshot:
    """The fixture zone at ``serial`` with www's A record set to ``address``."""
    base = zf.snapshot(serial=serial)
    records = tuple(sorted(zf.rec(r.name, "A", address) if (r.name, r.rtype) == (WWW, "A")
                           else r for r in base.records))
    return replace(base, records=records)


async def ended(notifier: Notifier | None) -> None:
    assert notifier is not None
    task = notifier.round
    if task is not None:
        async with asyncio.timeout(LIMIT):
            await asyncio.gather(task, return_exceptions=True)


async def test_server_notifies_at_start_and_on_each_new_serial(
        closing: list[Secondary | Notifier]) -> None:
    a = await secondary(closing, always(dns.rcode.NOERROR))
    b = await secondary(closing, always(dns.rcode.NOERROR))
    cfg = zf.config(also_notify=(a.target,))
    registry = CollectorRegistry()
    server = DnsServer(cfg, zf.locator(), registry=registry, notify=True, notify_timing=QUICK)
    assert server.update(zf.snapshot(serial=7))  # served before the listeners are up
    await server.start()
    try:
        await a.wait(1, serial=7)  # the startup round
        await ended(server.notifier)  # acknowledged (a newer serial would supersede it)
        server.submit(changed(8, "192.0.2.8"))
        await a.wait(1, serial=8)
        await ended(server.notifier)
        assert a.serials() == [7, 8]
        # a reload: the new target list applies to the next serial
        restart = server.reconfigure(replace(cfg, server=replace(cfg.server,
                                                                 also_notify=(b.target,))))
        assert restart == []
        server.submit(changed(9, "192.0.2.9"))  # a full build (new knobs), in a thread
        await b.wait(1, serial=9)
        await ended(server.notifier)
        assert a.serials() == [7, 8] and b.serials() == [9]
        target = f"127.0.0.1:{a.port}"
        assert registry.get_sample_value(
            "fedns_dns_notify_total", {"target": target, "result": "acknowledged"}) == 2.0
    finally:
        await server.stop()
    assert server.notifier is not None and server.notifier.round is None


async def test_app_notifies_the_first_served_serial_and_reloaded_targets(
        tmp_path: Path, closing: list[Secondary | Notifier]) -> None:
    a = await secondary(closing, always(dns.rcode.NOERROR))
    b = await secondary(closing, always(dns.rcode.NOERROR))
    cfg = tmp_path / "f.yaml"
    base = BASE.format(us="192.0.2.10", more="")
    cfg.write_text(base + f"server: {{also_notify: ['127.0.0.1:{a.port}']}}\n")
    app = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await app.start()
    try:
        await a.wait(1)  # a Snapshot served at start, announced without any other change
        served = app.dns.serial
        assert served is not None and a.serials()[0] <= served
        await _until(lambda: app.ready, LIMIT)
        served = app.dns.serial
        assert served is not None
        await a.wait(1, serial=served)
        await ended(app.dns.notifier)
        cfg.write_text(base.replace("ttl: 5", "ttl: 6")
                       + f"server: {{also_notify: ['127.0.0.1:{b.port}']}}\n")
        res = await app.reload()
        assert res.ok, res.problems
        assert res.serial is not None and res.serial != served
        await b.wait(1, serial=res.serial)
        await ended(app.dns.notifier)
        assert res.serial not in a.serials()
    finally:
        await app.stop()


async def test_worker_processes_never_notify(closing: list[Secondary | Notifier]) -> None:
    """server.workers: the parent notifies once per serial; its worker, which
    serves the same Snapshots, sends nothing."""
    a = await secondary(closing, always(dns.rcode.NOERROR))
    cfg = zf.config(also_notify=(a.target,))
    parent = DnsServer(cfg, zf.locator(), registry=None, reuse_port=True, notify=True,
                       notify_timing=QUICK)
    assert parent.update(zf.snapshot(serial=7))
    await parent.start()
    await a.wait(1, serial=7)
    pool = WorkerPool(parent.config, 1)
    try:
        await pool.start(parent.addresses)
        for serial in (8, 9):
            snap = changed(serial, f"192.0.2.{serial}")
            parent.submit(snap)
            pool.publish(snap)
            await a.wait(1, serial=serial)
            await until(f"the worker serves {serial}", serving(pool, serial))
        # a worker that notified would have sent as it installed 8 and 9; the
        # exchange with the parent has ended, so every NOTIFY has arrived by now
        # except a worker's; give those the parent's whole first retry interval
        await ended(parent.notifier)
        await asyncio.sleep(QUICK.first * 4)
        assert a.serials() == [7, 8, 9]
    finally:
        await pool.stop()
        await parent.stop()
