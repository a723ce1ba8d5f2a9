"""A real recursive resolver in front: unbound with a stub-zone pointing at fedns.

This is how kube-dns/CoreDNS stub domains and corporate resolvers use fedns.
Skipped when unbound is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf
from tests.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("unbound") is None or shutil.which("dig") is None,
                                reason="unbound and dig are needed")
Z = zf.ZONE


async def _dig(port: int, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    return out.decode()


@pytest.fixture
async def unbound(tmp_path: Path) -> AsyncIterator[tuple[int, DnsServer]]:
    server = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    assert server.update(zf.snapshot())
    await server.start()
    fedns_port = server.addresses[0][1]
    proc = None
    try:
        port, proc = await _launch_unbound(tmp_path, fedns_port)
        yield port, server
    finally:
        if proc is not None:
            await _stop(proc)
        await server.stop()


async def _launch_unbound(tmp_path: Path, fedns_port: int
                          ) -> tuple[int, asyncio.subprocess.Process]:
    """unbound up on a free port with fedns (``fedns_port``) as its stub: (its
    port, its process). The port can still be taken between the check and
    unbound's bind (by another process's ephemeral port): then again with
    another port, at most five times."""
    for _attempt in range(5):
        port = free_port()
        proc = await _start_unbound(tmp_path, port, fedns_port)
        exited = await _wait_up(proc, port)
        if exited is None:
            return port, proc
        if "Address already in use" not in exited:
            pytest.fail(f"unbound exited: {exited}")
    pytest.fail("unbound found no free port in 5 tries")


async def start_unbound(tmp_path: Path, port: int, zones: str, *, server: str = ""
                        ) -> asyncio.subprocess.Process:
    """unbound in the foreground on 127.0.0.1:``port`` (IPv4 only, iterator
    only, queries to localhost allowed, files in ``tmp_path``), with the
    ``server:`` options ``server`` added and the zone sections ``zones``."""
    conf = tmp_path / "unbound.conf"
    conf.write_text(f"""server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-not-query-localhost: no
    chroot: ""
    username: ""
    directory: "{tmp_path}"
    pidfile: "{tmp_path}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    module-config: "iterator"
    access-control: 127.0.0.0/8 allow
    num-threads: 1
{server}remote-control:
    control-enable: no
{zones}""")
    return await asyncio.create_subprocess_exec(
        "unbound", "-d", "-c", str(conf),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def _start_unbound(tmp_path: Path, port: int, fedns_port: int
                         ) -> asyncio.subprocess.Process:
    """unbound with fedns as the stub of the zone, at EDNS 512 (so that TC and
    the TCP retry are exercised)."""
    return await start_unbound(tmp_path, port, f"""stub-zone:
    name: "{Z}"
    stub-addr: 127.0.0.1@{fedns_port}
""", server="    edns-buffer-size: 512\n")


async def _wait_up(proc: asyncio.subprocess.Process, port: int) -> str | None:
    """None once unbound answers through fedns; its stderr if it exited first."""
    for _ in range(50):
        if proc.returncode is not None:
            err = await proc.stderr.read() if proc.stderr else b""
            return err.decode()
        out = await _dig(port, "+time=1", f"www.{Z}", "A")
        if "status: NOERROR" in out:
            return None
        await asyncio.sleep(0.1)
    pytest.fail("unbound did not come up")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), 5)
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_answers_nxdomain_and_chains_through_unbound(
        unbound: tuple[int, DnsServer]) -> None:
    port, server = unbound
    out = await _dig(port, "+short", f"www.{Z}", "A")
    assert out.split() == ["192.0.2.1"]
    out = await _dig(port, f"nope.{Z}", "A")
    assert "status: NXDOMAIN" in out
    # AZ -> region CNAME chain, resolved to the final A record
    out = await _dig(port, "+short", zf.EU_AZ, "A")
    assert out.split() == [zf.EU_REGION, zf.EU_IP]
    # static CNAME into the geo-aware global name (unbound on 127.0.0.1: unknown locality)
    out = await _dig(port, "+short", f"geoalias.{Z}", "A")
    lines = out.split()
    assert lines[0] == zf.GLOBAL and sorted(lines[1:]) == sorted([zf.US_IP, zf.EU_IP])
    # NODATA and a chain ending in NXDOMAIN
    out = await _dig(port, f"www.{Z}", "MX")
    assert "status: NOERROR" in out and "ANSWER: 0" in out
    out = await _dig(port, f"dangling.{Z}", "A")
    assert "status: NXDOMAIN" in out and f"missing.{Z}" in out
    # 684 bytes > unbound's 512-byte EDNS buffer: TC=1 from fedns, unbound retries over TCP
    out = await _dig(port, "+short", f"big.{Z}", "A")
    assert len(out.split()) == zf.BIG_COUNT
    assert server.metrics.truncated.get("udp", 0) >= 1
    assert any(proto == "tcp" for proto, *_ in server.metrics.totals())
