"""``server.workers``: worker processes on one port (SO_REUSEPORT), restarted
when they die, following every Snapshot the parent publishes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import dns.message
import dns.query
import pytest

from dnsserver.server import DnsServer
from dnsserver.workers import WorkerPool, WorkerStats
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf

WWW = f"www.{zf.ZONE}"


async def until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30.0
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def ask_many(port: int, count: int) -> list[str]:
    """``count`` A queries for www, each from a new socket (a new source port,
    so SO_REUSEPORT spreads them over the processes)."""
    out = []
    for _ in range(count):
        reply = dns.query.udp(dns.message.make_query(WWW, "A"), "127.0.0.1", port=port,
                              timeout=2.0)
        out.append(",".join(sorted(str(rd) for rrset in reply.answer for rd in rrset)))
    return out


def serving(pool: WorkerPool, serial: int) -> Callable[[], bool]:
    return lambda: all(s.serial == serial for s in pool.stats())


@pytest.fixture
async def pair() -> AsyncIterator[tuple[DnsServer, WorkerPool]]:
    async with parent_and_workers() as both:
        yield both


@contextlib.asynccontextmanager
async def parent_and_workers() -> AsyncIterator[tuple[DnsServer, WorkerPool]]:
    """A parent DnsServer on 127.0.0.1 (a free port, SO_REUSEPORT) and two
    worker processes on the same port, all serving ``zf.snapshot()``."""
    config = zf.config()
    parent = DnsServer(replace(config, listen=replace(config.listen, dns=(("127.0.0.1", 0),))),
                       zf.locator(), registry=None, reuse_port=True)
    assert parent.update(zf.snapshot())
    await parent.start()
    pool = WorkerPool(parent.config, 2)
    try:
        await pool.start(parent.addresses)
        pool.publish(zf.snapshot())
        yield parent, pool
    finally:
        await pool.stop()
        await parent.stop()


def changed(snap: Snapshot, ip: str) -> Snapshot:
    records = tuple(r if (r.name, r.rtype) != (WWW, "A") else zf.rec(WWW, "A", ip)
                    for r in snap.records)
    return replace(snap, serial=snap.serial + 1, records=records, base_serial=snap.serial,
                   changed=frozenset({WWW, zf.ZONE}))


async def test_workers_share_the_port_restart_and_follow_snapshots(
        pair: tuple[DnsServer, WorkerPool]) -> None:
    parent, pool = pair
    port = parent.addresses[0][1]
    await until("both workers serving", serving(pool, 7))

    # both workers answer on the parent's port
    before = {s.index: s.queries for s in await asyncio.to_thread(pool.stats)}
    answers = await asyncio.to_thread(ask_many, port, 120)
    assert set(answers) == {"192.0.2.1"}
    after: list[WorkerStats] = await asyncio.to_thread(pool.stats)
    assert all(s.queries > before[s.index] for s in after), after

    # a killed worker is restarted and gets the current Snapshot
    old = pool.pids()
    assert old[0] is not None
    os.kill(old[0], signal.SIGKILL)
    await until("worker 0 restarted", lambda: pool.pids()[0] not in (None, old[0]))
    await until("restarted worker serving", serving(pool, 7))
    assert pool.pids()[1] == old[1]
    assert [s.restarts for s in await asyncio.to_thread(pool.stats)] == [1, 0]

    # a Snapshot change reaches every worker (incrementally: hint shipped)
    snap2 = changed(zf.snapshot(), "192.0.2.2")
    assert parent.update(snap2)
    pool.publish(snap2)
    await until("both workers on serial 8", serving(pool, 8))
    answers = await asyncio.to_thread(ask_many, port, 60)
    assert set(answers) == {"192.0.2.2"}
