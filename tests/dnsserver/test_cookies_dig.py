"""DNS Cookies as dig and kdig see them, against a server on 127.0.0.1.

dig checks the client cookie it gets back and prints ``COOKIE: <hex> (good)``;
given the server cookie it learned (``+cookie=<hex>``) it must be told the
same again. kdig prints the cookie it got; with ``+badcookie`` (its default)
it retries a BADCOOKIE with the server cookie it was given. Skipped cleanly
where the tools are missing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator

import pytest

from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_server import Running, dig

WWW = f"www.{zf.ZONE}"
COOKIE_LINE = re.compile(r"COOKIE: ([0-9a-fA-F]+)(?: \((\w+)\))?")


async def _serve(**server: object) -> AsyncIterator[Running]:
    srv = DnsServer(zf.config(**server), zf.locator(), registry=None)
    assert srv.update(zf.snapshot())
    await srv.start()
    try:
        yield Running(srv, srv.addresses[0][1], None)  # type: ignore[arg-type]
    finally:
        await srv.stop()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    async for r in _serve():
        yield r


@pytest.fixture
async def strict() -> AsyncIterator[Running]:
    async for r in _serve(require_server_cookie=True):
        yield r


def cookie(text: str) -> tuple[str, str | None]:
    """(the reply's cookie in hex, dig's verdict) from dig/kdig output."""
    found = COOKIE_LINE.findall(text)
    assert len(found) == 1, text
    hexa, verdict = found[0]
    return hexa.lower(), verdict or None


def status(text: str) -> str:
    m = re.search(r"status: (\w+)", text)
    assert m, text
    return m.group(1)


needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig is not installed")
needs_kdig = pytest.mark.skipif(shutil.which("kdig") is None, reason="kdig is not installed")


@needs_dig
async def test_dig_learns_a_server_cookie_and_it_is_good(running: Running) -> None:
    first = await dig(running, "+cookie", WWW, "A")
    assert status(first) == "NOERROR"
    whole, verdict = cookie(first)
    assert verdict == "good" and len(whole) == 48  # client 8 + server 16 bytes
    assert whole[16:24] == "01000000"  # RFC 9018: version 1, reserved 0
    for transport in ((), ("+tcp",)):
        again = await dig(running, f"+cookie={whole}", *transport, WWW, "A")
        assert status(again) == "NOERROR" and "192.0.2." in again
        assert cookie(again) == (whole, "good")  # valid and fresh: the same cookie


@needs_dig
async def test_dig_with_a_forged_server_cookie_gets_a_new_one(running: Running) -> None:
    whole, _ = cookie(await dig(running, "+cookie", WWW, "A"))
    forged = whole[:-2] + ("00" if whole[-2:] != "00" else "ff")
    text = await dig(running, f"+cookie={forged}", WWW, "A")
    assert status(text) == "NOERROR"
    got, verdict = cookie(text)
    assert verdict == "good" and got[:16] == whole[:16] and got != forged


@needs_dig
async def test_dig_retries_a_badcookie_when_the_server_requires_one(strict: Running) -> None:
    text = await dig(strict, "+cookie", WWW, "A")
    assert "BADCOOKIE" in text  # the first reply, then dig's retry with the cookie
    assert status(text.rsplit("BADCOOKIE", 1)[1]) == "NOERROR"
    whole, verdict = cookie(text.rsplit("BADCOOKIE", 1)[1])
    assert verdict == "good" and len(whole) == 48
    text = await dig(strict, "+nocookie", WWW, "A")
    assert status(text) == "NOERROR"  # no cookie at all: answered


async def kdig(r: Running, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "kdig", "@127.0.0.1", "-p", str(r.port), "+retry=0", "+timeout=2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    return out.decode()


@needs_kdig
async def test_kdig_learns_and_sends_back_a_server_cookie(running: Running) -> None:
    first = await kdig(running, "+cookie", WWW, "A")
    assert status(first) == "NOERROR"
    whole, _ = cookie(first)
    assert len(whole) == 48 and whole[16:24] == "01000000"
    again = await kdig(running, f"+cookie={whole}", WWW, "A")
    assert status(again) == "NOERROR" and cookie(again)[0] == whole


@needs_kdig
async def test_kdig_follows_a_badcookie(strict: Running) -> None:
    text = await kdig(strict, "+cookie", "+badcookie", WWW, "A")
    assert "bad cookie" in text and status(text) == "BADCOOKIE"  # the first reply
    last = text.rsplit("->>HEADER<<-", 1)[1]  # kdig's retry with the cookie it got
    assert status(last) == "NOERROR" and "192.0.2." in last
    assert cookie(last)[0] == cookie(text.split("->>HEADER<<-")[1])[0]
