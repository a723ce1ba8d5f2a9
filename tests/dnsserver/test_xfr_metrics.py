"""``fedns_dns_xfr_total{proto, result}``: IXFR over UDP counted beside the TCP
transfers, scraped from a real ``/metrics`` (the HTTP API on the server's
registry) after dig, kdig and dnspython queries over real sockets.

Over UDP an admitted IXFR gets the current SOA ("ok"); a client outside
``transfer_allow`` or a name other than the zone "refused"; a bad authority
section "formerr"; with TSIG, unsigned "unsigned" and a bad MAC "notauth".
AXFR over UDP is not a transfer (RFC 5936 section 4.2): REFUSED, counted
with the other queries only.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.rcode
import dns.tsigkeyring
import pytest
from prometheus_client.parser import text_string_to_metric_families

from config.model import TsigKey
from dnsserver.http_api import HttpApi
from tests.dnsserver.test_http_api import FakeControl, _req
from tests.dnsserver.test_ixfr_udp import (
    ALLOW,
    KEYRING,
    SERIAL,
    _raw_udp,
    dig,
    ixfr_query,
    kdig,
)
from tests.dnsserver.test_xfr import ALLOWED, KEY_NAME, OTHER, SECRET, Running, start
from tests.dnsserver.test_xfr import Z as ZONE

Scraped = dict[tuple[str, str], float]
PROTOS = ("tcp", "udp")
RESULTS = ("ok", "refused", "unsigned", "notauth", "formerr", "servfail")  # the dashboard's


async def _serving(**server: object) -> AsyncIterator[tuple[Running, str]]:
    r = await start(**server)
    api = HttpApi(FakeControl(), registry=r.registry, host="127.0.0.1", port=0)
    await api.start()
    try:
        yield r, f"http://127.0.0.1:{api.port}/metrics"
    finally:
        await api.stop()
        await r.server.stop()


@pytest.fixture
async def allowed() -> AsyncIterator[tuple[Running, str]]:
    async for pair in _serving(transfer_allow=ALLOW):
        yield pair


@pytest.fixture
async def signed() -> AsyncIterator[tuple[Running, str]]:
    async for pair in _serving(transfer_allow=ALLOW, transfer_tsig=TsigKey(KEY_NAME, SECRET)):
        yield pair


async def scrape(url: str) -> Scraped:
    code, text = await _req("GET", url)
    assert code == 200, text
    out: Scraped = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fedns_dns_xfr":
            for s in family.samples:
                if s.name == "fedns_dns_xfr_total":
                    out[(s.labels.get("proto", ""), s.labels["result"])] = s.value
    # every (proto, result) pair is exported from the start (panels have data)
    assert set(out) == {(p, r) for p in PROTOS for r in RESULTS}, out
    return out


def nonzero(scraped: Scraped) -> Scraped:
    return {k: v for k, v in scraped.items() if v}


async def test_udp_ixfr_outcomes_are_counted_beside_tcp(
        allowed: tuple[Running, str]) -> None:
    r, url = allowed
    assert nonzero(await scrape(url)) == {}
    out = await dig(r, ALLOWED, "+comments", "+notcp", f"ixfr={SERIAL - 4}", ZONE)
    assert "status: NOERROR" in out and "(UDP)" in out, out
    out = await kdig(r, ALLOWED, "+notcp", f"IXFR={SERIAL}", ZONE)
    assert "(1 messages, 1 records)" in out and "(UDP)" in out, out
    assert nonzero(await scrape(url)) == {("udp", "ok"): 2}

    out = await dig(r, OTHER, "+comments", "+notcp", f"ixfr={SERIAL - 4}", ZONE)
    assert "status: REFUSED" in out, out
    reply = await dns.asyncquery.udp(ixfr_query(3, name=f"www.{ZONE}"), "127.0.0.1",
                                     port=r.port, source=ALLOWED, timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED
    reply = await dns.asyncquery.udp(ixfr_query(3, owner=f"www.{ZONE}"), "127.0.0.1",
                                     port=r.port, source=ALLOWED, timeout=2)
    assert reply.rcode() == dns.rcode.FORMERR
    out = await kdig(r, ALLOWED, "+notcp", "AXFR", ZONE)  # not a transfer over UDP
    assert "REFUSED" in out, out
    out = await dig(r, ALLOWED, f"ixfr={SERIAL - 4}", ZONE)  # TCP: the full transfer
    assert "XFR size:" in out and "(TCP)" in out, out
    assert nonzero(await scrape(url)) == {
        ("udp", "ok"): 2, ("udp", "refused"): 2, ("udp", "formerr"): 1, ("tcp", "ok"): 1}


async def test_udp_ixfr_tsig_outcomes_are_counted(signed: tuple[Running, str]) -> None:
    r, url = signed
    q = ixfr_query(3)
    q.use_tsig(KEYRING, keyname=KEY_NAME, algorithm="hmac-sha256")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=r.port, source=ALLOWED, timeout=2)
    assert reply.had_tsig and reply.rcode() == dns.rcode.NOERROR
    out = await dig(r, ALLOWED, "+comments", "+notcp", f"ixfr={SERIAL - 4}", ZONE)
    assert "status: REFUSED" in out, out  # unsigned
    wrong = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", base64.b64encode(
        b"another secret, not the key").decode())})
    bad = ixfr_query(3)
    bad.use_tsig(wrong, keyname=KEY_NAME, algorithm="hmac-sha256")
    raw = await _raw_udp(r, bad.to_wire(), ALLOWED)
    assert raw[3] & 0x0F == dns.rcode.NOTAUTH
    assert nonzero(await scrape(url)) == {
        ("udp", "ok"): 1, ("udp", "unsigned"): 1, ("udp", "notauth"): 1}
