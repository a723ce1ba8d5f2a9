"""A real secondary: unbound with an ``auth-zone`` transferred from fedns.

unbound (on loopback) has ``primary: 127.0.0.1@<fedns port>`` and
``allow-notify: 127.0.0.1``; it transfers the zone when it starts. The
zone's SOA refresh is an hour, so only a NOTIFY can explain unbound
answering a changed record within seconds: with ``server.also_notify``
pointing at unbound it does; without, it still answers the old data after
the same time. Skipped when unbound or dig is missing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_notify_server import WWW, changed
from tests.dnsserver.test_unbound import _dig, _stop, start_unbound
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("unbound") is None or shutil.which("dig") is None,
                                reason="unbound and dig are needed")
PROMPT = 5.0  # seconds within which a notified secondary must serve the change
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@dataclass
class Pair:
    port: int  # unbound's
    server: DnsServer  # fedns, its primary
    proc: asyncio.subprocess.Process  # unbound


Start = Callable[[bool], Awaitable[Pair]]


async def _start_unbound(tmp_path: Path, port: int, fedns_port: int
                         ) -> asyncio.subprocess.Process:
    return await start_unbound(tmp_path, port, f"""auth-zone:
    name: "{zf.ZONE}"
    primary: 127.0.0.1@{fedns_port}
    allow-notify: 127.0.0.1
    for-downstream: yes
    for-upstream: yes
    fallback-enabled: no
""")


async def _www(port: int) -> list[str]:
    return (await _dig(port, "+short", "+time=1", WWW, "A")).split()


async def _serves(pair: Pair, address: str, within: float) -> bool:
    """Does unbound answer ``address`` for www within ``within`` seconds? (polls)"""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if pair.proc.returncode is not None:
            err = await pair.proc.stderr.read() if pair.proc.stderr else b""
            pytest.fail(f"unbound exited: {err.decode()}")
        if await _www(pair.port) == [address]:
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.fixture
async def secondary(tmp_path: Path) -> AsyncIterator[Start]:
    """``await start(notify)``: fedns (the fixture zone at serial 100, transfers
    allowed from loopback, ``also_notify`` unbound when ``notify``) and
    unbound, which has transferred the zone from it."""
    running: list[tuple[DnsServer, asyncio.subprocess.Process]] = []

    async def start(notify: bool) -> Pair:
        for _attempt in range(5):  # unbound's port can be taken before it binds
            port = free_port()
            cfg = zf.config(transfer_allow=LOOPBACK,
                            also_notify=(("127.0.0.1", port),) if notify else ())
            server = DnsServer(cfg, zf.locator(), registry=CollectorRegistry(), notify=True)
            assert server.update(zf.snapshot(serial=100))
            await server.start()
            proc = await _start_unbound(tmp_path, port, server.addresses[0][1])
            running.append((server, proc))
            deadline = time.monotonic() + 10.0
            while proc.returncode is None and time.monotonic() < deadline:
                if await _www(port) == ["192.0.2.1"]:  # transferred at start
                    return Pair(port, server, proc)
                await asyncio.sleep(0.1)
            if proc.returncode is None:
                pytest.fail("unbound did not transfer the zone at start")
            err = (await proc.stderr.read()).decode() if proc.stderr else ""
            if "Address already in use" not in err:
                pytest.fail(f"unbound exited: {err}")
        pytest.fail("unbound found no free port in 5 tries")

    yield start
    for server, proc in running:
        await _stop(proc)
        await server.stop()


async def test_notified_unbound_transfers_the_change_within_seconds(secondary: Start) -> None:
    pair = await secondary(True)
    pair.server.submit(changed(101, "192.0.2.99"))
    assert await _serves(pair, "192.0.2.99", PROMPT)
    soa = (await _dig(pair.port, "+short", zf.ZONE, "SOA")).split()
    assert soa[2] == "101"
    counts = pair.server.metrics
    assert counts.notify.counts.get((f"127.0.0.1:{pair.port}", "acknowledged"), 0) >= 1
    assert counts.transfers.counts[("tcp", "ok")] >= 2  # at start, and when notified


async def test_without_also_notify_unbound_stays_behind(secondary: Start) -> None:
    pair = await secondary(False)
    pair.server.submit(changed(101, "192.0.2.99"))
    assert not await _serves(pair, "192.0.2.99", PROMPT)
    assert await _www(pair.port) == ["192.0.2.1"]  # until the SOA refresh, an hour away
    soa = (await _dig(pair.port, "+short", zf.ZONE, "SOA")).split()
    assert soa[2] == "100"
    assert pair.server.metrics.notify.counts == {}
