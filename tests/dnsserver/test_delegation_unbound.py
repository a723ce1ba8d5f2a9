"""A real recursive resolver follows a delegation below the apex.

unbound has fedns (the parent zone) as a stub; ``sub.example.com.`` is
delegated to ``ns1.sub.example.com.`` with glue 127.0.53.1, where a second
fedns serves the child zone. Glue carries no port, so the child listens on
127.0.53.1:53 (an address of its own, so that a resolver on 127.0.0.1:53 or
127.0.0.53:53 is no obstacle); skipped when unbound or dig is missing or
port 53 cannot be bound there (not root, or taken).
"""

from __future__ import annotations

import errno
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from config.model import Listen
from dnsserver.server import DnsServer
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_unbound import _dig, _launch_unbound, _stop

pytestmark = pytest.mark.skipif(shutil.which("unbound") is None or shutil.which("dig") is None,
                                reason="unbound and dig are needed")
Z = zf.ZONE
CHILD = f"sub.{Z}"
NS = f"ns1.{CHILD}"
CHILD_ADDR = "127.0.53.1"  # loopback (127.0.0.0/8), port 53: glue has no port


def _parent() -> Snapshot:
    base = zf.snapshot(serial=3)
    return replace(base, records=tuple(sorted((
        *base.records, zf.rec(CHILD, "NS", NS, 3600), zf.rec(NS, "A", CHILD_ADDR, 3600)))))


def _child() -> Snapshot:
    records = (
        zf.rec(CHILD, "SOA", f"{NS} hostmaster.{CHILD} 1 3600 600 86400 60", 300),
        zf.rec(CHILD, "NS", NS, 3600),
        zf.rec(NS, "A", CHILD_ADDR, 3600),
        zf.rec(f"www.{CHILD}", "A", "192.0.2.77"),
    )
    return Snapshot(serial=1, generated_at=0.0, zone=CHILD, ttl=30,
                    records=tuple(sorted(records)), geo={}, localities=("",))


def _port_53_free() -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((CHILD_ADDR, 53))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EADDRINUSE, errno.EPERM):
            return False
        raise
    finally:
        sock.close()
    return True


@pytest.fixture
async def resolver(tmp_path: Path) -> AsyncIterator[tuple[int, DnsServer, DnsServer]]:
    if not _port_53_free():
        pytest.skip(f"{CHILD_ADDR}:53 cannot be bound (the glue address has no port)")
    child_cfg = replace(zf.config(), zone=CHILD, listen=Listen(dns=((CHILD_ADDR, 53),)))
    child = DnsServer(child_cfg, zf.locator(), registry=None)
    assert child.update(_child())
    parent = DnsServer(zf.config(), zf.locator(), registry=None)
    assert parent.update(_parent())
    await parent.start()
    proc = None
    try:
        try:
            await child.start()
        except OSError as exc:  # taken between the check and now
            pytest.skip(f"{CHILD_ADDR}:53: {exc}")
        port, proc = await _launch_unbound(tmp_path, parent.addresses[0][1])
        yield port, parent, child
    finally:
        if proc is not None:
            await _stop(proc)
        await child.stop()
        await parent.stop()


async def test_unbound_follows_the_referral_to_the_child_zone(
        resolver: tuple[int, DnsServer, DnsServer]) -> None:
    port, _parent_server, child = resolver
    out = await _dig(port, "+short", f"www.{CHILD}", "A")
    assert out.split() == ["192.0.2.77"]
    out = await _dig(port, f"nope.{CHILD}", "A")
    assert "status: NXDOMAIN" in out and f"hostmaster.{CHILD}" in out  # the child's SOA
    # the parent zone is still answered by the parent
    out = await _dig(port, "+short", f"www.{Z}", "A")
    assert out.split() == ["192.0.2.1"]
    # the child answered (the parent only referred)
    assert sum(child.metrics.totals().values()) >= 2
