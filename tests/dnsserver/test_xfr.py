"""Zone transfers over real sockets: refused by default and AXFR over UDP, allowed
for an allow-listed client over TCP (dig, kdig, dnspython), optional TSIG."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import dns.asyncquery
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from config.errors import ConfigError
from config.loader import load_text
from config.model import TsigKey
from dnsserver.server import DnsServer
from dnsserver.xfr import MESSAGE_SIZE, TransferPolicy, ZoneImage, make_key, xfr_qtype
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf

Z = zf.ZONE
ALLOWED = "127.0.3.1"
OTHER = "127.0.4.1"
KEY_NAME = "xfr-key."
SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BULK = 300  # extra TXT records: the transfer spans several messages


def snapshot() -> Snapshot:
    snap = zf.snapshot()
    bulk = tuple(zf.rec(f"r{i}.bulk.{Z}", "TXT", f'"record {i} {"x" * 40}"')
                 for i in range(BULK))
    return replace(snap, records=tuple(sorted(snap.records + bulk)))


def expected(snap: Snapshot) -> set[str]:
    """The served static view as canonical text (records that cannot be served dropped)."""
    out = set()
    for rec in snap.static_view():
        if rec.value == "not-an-address":
            continue
        rrset = dns.rrset.from_text(rec.name, rec.ttl, "IN", rec.rtype, rec.value)
        out.add(rrset.to_text())
    return out


@dataclass
class Running:
    server: DnsServer
    port: int
    registry: CollectorRegistry
    snap: Snapshot


async def start(**server: object) -> Running:
    registry = CollectorRegistry()
    srv = DnsServer(zf.config(**server), zf.locator(), registry=registry)
    snap = snapshot()
    assert srv.update(snap)
    await srv.start()
    return Running(srv, srv.addresses[0][1], registry, snap)


@pytest.fixture
async def allowed() -> AsyncIterator[Running]:
    r = await start(transfer_allow=(ipaddress.ip_network("127.0.3.0/24"),))
    try:
        yield r
    finally:
        await r.server.stop()


@pytest.fixture
async def signed() -> AsyncIterator[Running]:
    r = await start(transfer_allow=(ipaddress.ip_network("127.0.3.0/24"),),
                    transfer_tsig=TsigKey(KEY_NAME, SECRET))
    try:
        yield r
    finally:
        await r.server.stop()


def xfr(r: Running, source: str, *, rdtype: str = "AXFR", zone: str = Z,
        keyring: dict[dns.name.Name, dns.tsig.Key] | None = None,
        keyname: str | None = None, serial: int = 0) -> list[dns.message.Message]:
    return list(dns.query.xfr("127.0.0.1", zone, rdtype=rdtype, port=r.port, source=source,
                              timeout=5, lifetime=10, keyring=keyring, keyname=keyname,
                              serial=serial, relativize=False))


async def raw_tcp(r: Running, data: bytes, source: str) -> list[bytes]:
    """Send one framed query; every reply frame until the server goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", r.port,
                                                   local_addr=(source, 0))
    try:
        writer.write(len(data).to_bytes(2, "big") + data)
        out = []
        while True:
            try:
                head = await asyncio.wait_for(reader.readexactly(2), 0.5)
            except (TimeoutError, asyncio.IncompleteReadError):
                return out
            out.append(await reader.readexactly(int.from_bytes(head, "big")))
    finally:
        writer.close()


def rrsets_text(messages: list[dns.message.Message]) -> list[str]:
    return [rrset.to_text() for m in messages for rrset in m.answer]


async def tool(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    return out.decode()


def zone_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith(";")]


async def first_reply_rcode(r: Running, source: str, rdtype: str = "AXFR",
                            zone: str = Z) -> int:
    q = dns.message.make_query(zone, rdtype)
    reply = await dns.asyncquery.tcp(q, "127.0.0.1", port=r.port, source=source, timeout=2)
    return reply.rcode()


# -- policy ---------------------------------------------------------------------


async def test_axfr_refused_by_default() -> None:
    r = await start()
    try:
        for source in ("127.0.0.1", ALLOWED):
            assert await first_reply_rcode(r, source) == dns.rcode.REFUSED
            assert await first_reply_rcode(r, source, "IXFR") == dns.rcode.REFUSED
        out = await tool("dig", "@127.0.0.1", "-p", str(r.port), "+tries=1", "+time=2",
                         "axfr", Z)
        assert "Transfer failed" in out and "IN\tSOA" not in out
        text = generate_latest(r.registry).decode()
        assert 'fedns_dns_xfr_total{proto="tcp",result="refused"} 5.0' in text
    finally:
        await r.server.stop()


async def test_allow_list_is_by_client_address(allowed: Running) -> None:
    assert await first_reply_rcode(allowed, OTHER) == dns.rcode.REFUSED
    assert await first_reply_rcode(allowed, ALLOWED) == dns.rcode.NOERROR


async def test_udp_axfr_refused_even_for_allowed(allowed: Running) -> None:
    # RFC 5936 4.2: AXFR over UDP is not defined (IXFR over UDP: test_ixfr_udp.py)
    q = dns.message.make_query(Z, "AXFR")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=allowed.port, source=ALLOWED,
                                     timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


async def test_other_names_and_classes_refused(allowed: Running) -> None:
    assert await first_reply_rcode(allowed, ALLOWED, zone=f"www.{Z}") == dns.rcode.REFUSED
    assert await first_reply_rcode(allowed, ALLOWED, zone="example.net.") == dns.rcode.REFUSED
    q = dns.message.make_query(Z, "AXFR", rdclass="CH")
    reply = await dns.asyncquery.tcp(q, "127.0.0.1", port=allowed.port, source=ALLOWED,
                                     timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED


# -- content -----------------------------------------------------------------------


async def test_axfr_with_dig_equals_static_view(allowed: Running) -> None:
    out = await tool("dig", "@127.0.0.1", "-p", str(allowed.port), "-b", ALLOWED,
                     "+tries=1", "+time=5", "+nocomments", "+nostats", "axfr", "EXAMPLE.com.")
    lines = zone_lines(out)
    assert "\tSOA\t" in lines[0] and lines[0] == lines[-1], (lines[:2], lines[-2:])
    got = {dns.rrset.from_text(*_split(line)).to_text() for line in lines}
    assert got == expected(allowed.snap)
    assert len(lines) == len(expected(allowed.snap)) + 1  # SOA twice, nothing else repeated


def _split(line: str) -> tuple[str, int, str, str, str]:
    name, ttl, cls, rtype, value = line.split(None, 4)
    return name, int(ttl), cls, rtype, value


async def test_axfr_with_dnspython_several_messages(allowed: Running) -> None:
    messages = await asyncio.to_thread(xfr, allowed, ALLOWED)
    assert len(messages) > 1
    assert all(m.rcode() == dns.rcode.NOERROR and m.flags & dns.flags.AA for m in messages)
    texts = rrsets_text(messages)
    soa = texts[0]
    assert "SOA" in soa and texts[-1] == soa and soa not in texts[1:-1]
    assert set(texts) == expected(allowed.snap)
    zone = dns.zone.from_xfr(iter(messages), relativize=False)
    assert zone.get_rdataset(f"r7.bulk.{Z}", "TXT") is not None


async def test_ixfr_answered_as_full_transfer_with_kdig(allowed: Running) -> None:
    out = await tool("kdig", "@127.0.0.1", "-p", str(allowed.port), "-b", ALLOWED,
                     "+tcp", "+retry=0", "+time=5", "+nostats", "+noheader", "+noquestion",
                     f"IXFR={1}", Z)
    lines = zone_lines(out)
    assert "SOA" in lines[0] and lines[0] == lines[-1], out[-500:]
    assert len(lines) == len(expected(allowed.snap)) + 1


async def test_new_snapshot_is_transferred(allowed: Running) -> None:
    newer = replace(zf.snapshot(serial=8))
    assert allowed.server.update(newer)
    messages = await asyncio.to_thread(xfr, allowed, ALLOWED)
    assert set(rrsets_text(messages)) == expected(newer)
    assert " 8 3600 600 86400 60" in rrsets_text(messages)[0]


# -- TSIG --------------------------------------------------------------------------


async def test_tsig_signed_transfer_verified_by_clients(signed: Running) -> None:
    keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
    messages = await asyncio.to_thread(xfr, signed, ALLOWED, keyring=keyring,
                                       keyname=KEY_NAME)  # dnspython checks every MAC
    assert len(messages) > 1 and all(m.had_tsig for m in messages)
    assert set(rrsets_text(messages)) == expected(signed.snap)
    out = await tool("kdig", "@127.0.0.1", "-p", str(signed.port), "-b", ALLOWED,
                     "+retry=0", "+time=5", "-y", f"hmac-sha256:{KEY_NAME}:{SECRET}", "axfr", Z)
    assert "TSIG" in out and "failed" not in out.lower(), out[-800:]
    assert len([line for line in zone_lines(out) if "\tSOA\t" in line]) == 2
    out = await tool("dig", "@127.0.0.1", "-p", str(signed.port), "-b", ALLOWED,
                     "+tries=1", "+time=5", "-y", f"hmac-sha256:{KEY_NAME}:{SECRET}", "axfr", Z)
    assert "Transfer failed" not in out and "tsig verify failure" not in out, out[-800:]
    assert "\tSOA\t" in out
    text = generate_latest(signed.registry).decode()
    assert 'fedns_dns_xfr_total{proto="tcp",result="ok"} 3.0' in text


async def test_tsig_required_when_configured(signed: Running) -> None:
    assert await first_reply_rcode(signed, ALLOWED) == dns.rcode.REFUSED  # unsigned
    wrong = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", base64.b64encode(
        b"another secret, not the key").decode())})
    q = dns.message.make_query(Z, "AXFR")
    q.use_tsig(wrong, keyname=KEY_NAME, algorithm="hmac-sha256")
    raw = q.to_wire()
    replies = await raw_tcp(signed, raw, ALLOWED)
    assert len(replies) == 1 and replies[0][3] & 0x0F == dns.rcode.NOTAUTH
    assert replies[0][:2] == raw[:2] and replies[0][10:12] == b"\x00\x00"  # unsigned
    reply = await dns.asyncquery.tcp(dns.message.make_query(Z, "AXFR"), "127.0.0.1",
                                     port=signed.port, source=OTHER, timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED  # not in the allow list: key is not consulted
    assert xfr_qtype(raw) == dns.rdatatype.AXFR
    text = generate_latest(signed.registry).decode()
    assert 'fedns_dns_xfr_total{proto="tcp",result="unsigned"} 1.0' in text
    assert 'fedns_dns_xfr_total{proto="tcp",result="notauth"} 1.0' in text


# -- units ---------------------------------------------------------------------------


def test_xfr_qtype_only_plain_queries() -> None:
    assert xfr_qtype(dns.message.make_query(Z, "AXFR").to_wire()) == 252
    assert xfr_qtype(dns.message.make_query(Z, "IXFR").to_wire()) == 251
    assert xfr_qtype(dns.message.make_query(Z, "SOA").to_wire()) == 0
    reply = dns.message.make_response(dns.message.make_query(Z, "AXFR")).to_wire()
    assert xfr_qtype(reply) == 0  # QR=1
    assert xfr_qtype(b"\x00" * 11) == 0
    assert xfr_qtype(b"\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\xfc") == 0


def test_zone_image_splits_and_brackets_with_soa() -> None:
    snap = snapshot()
    image = ZoneImage(snap)
    assert len(image.bodies) > 1 and image.skipped == 1
    assert all(len(body) <= MESSAGE_SIZE for _, body in image.bodies)
    assert image.records == len(expected(snap)) + 1
    assert image.bodies[0][1].startswith(image.soa or b"-")
    assert image.bodies[-1][1].endswith(image.soa or b"-")
    no_soa = replace(snap, records=tuple(r for r in snap.records if r.rtype != "SOA"))
    assert ZoneImage(no_soa).bodies == []


def test_make_key_rejects_bad_secrets() -> None:
    assert make_key("k.", SECRET).name == dns.name.from_text("k.")
    for bad in ("not base64!", ""):
        with pytest.raises(ValueError):
            make_key("k.", bad)


def test_config_transfer_tsig(monkeypatch: pytest.MonkeyPatch) -> None:
    base = "zone: example.com.\nfederation: myfed\n"
    monkeypatch.setenv("XFR_SECRET", SECRET)
    cfg = load_text(base + "server: {transfer_allow: [192.0.2.0/24], transfer_tsig: "
                    "{name: xfr-key, secret: '${XFR_SECRET}'}}\n")
    assert cfg.server.transfer_tsig == TsigKey("xfr-key.", SECRET)
    assert SECRET not in repr(cfg)
    with pytest.raises(ConfigError) as err:
        load_text(base + "server: {transfer_tsig: {name: k, secret: 'c2VjcmV0!!'}}\n")
    assert "transfer_tsig.secret" in str(err.value) and "c2VjcmV0" not in str(err.value)
    with pytest.raises(ConfigError):
        load_text(base + "server: {transfer_tsig: {name: k}}\n")
    cfg = load_text(base + "server: {rrl_responses_per_second: 50, rrl_window: 5s}\n")
    assert cfg.server.rrl_window == 5.0



@pytest.mark.parametrize(("client", "admitted"), [
    ("192.0.2.7", True),
    ("::ffff:192.0.2.7", True),  # a dual-stack socket's view of an IPv4 client
    ("2001:db8::5%eth0", True),  # a scoped address: the zone is not part of it
    ("2001:db8:1::5", False),
    ("198.51.100.1", False),
    ("not-an-address", False),
    ("", False),
])
def test_transfer_allow_list_by_address(client: str, admitted: bool) -> None:
    policy = TransferPolicy((ipaddress.ip_network("192.0.2.0/24"),
                             ipaddress.ip_network("2001:db8::/64")))
    assert policy.allowed(client) is admitted
    assert TransferPolicy(()).allowed(client) is False  # nobody without a list
