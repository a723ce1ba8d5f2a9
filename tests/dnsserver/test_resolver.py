"""Table-driven resolver tests: {qname, qtype, client, rcode, answer, authority, additional}.

Queries go through the full path (``QueryHandler`` with the fast path off) and
the fast path; both must agree with the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from dnsserver.handler import QueryHandler
from dnsserver.resolver import Answer
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf

Z = zf.ZONE
SOA = f"{Z} 60 SOA"


@dataclass(frozen=True)
class Case:
    qname: str
    qtype: str
    rcode: str
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()
    client: str = "127.0.0.1"


CASES = [
    Case(f"www.{Z}", "A", "NOERROR", (f"www.{Z} 30 A 192.0.2.1",)),
    Case("WwW.ExAmPlE.CoM.", "AAAA", "NOERROR", (f"www.{Z} 30 AAAA 2001:db8::1",)),
    Case(f"www.{Z}", "MX", "NOERROR", (), (SOA,)),  # NODATA
    Case(f"www.{Z}", "TYPE4242", "NOERROR", (), (SOA,)),  # unknown type: NODATA
    Case(f"nope.{Z}", "A", "NXDOMAIN", (), (SOA,)),
    Case(f"a.b.nope.{Z}", "TXT", "NXDOMAIN", (), (SOA,)),
    Case(f"ent.{Z}", "A", "NOERROR", (), (SOA,)),  # empty non-terminal
    Case(f"deep.ent.{Z}", "A", "NOERROR", (f"deep.ent.{Z} 30 A 192.0.2.99",)),
    Case(Z, "NS", "NOERROR", (f"{Z} 3600 NS ns1.{Z}", f"{Z} 3600 NS ns2.{Z}"), (),
         (f"ns1.{Z} 3600 A 127.0.0.1", f"ns2.{Z} 3600 AAAA ::1")),
    Case(Z, "SOA", "NOERROR",
         (f"{Z} 300 SOA ns1.{Z} hostmaster.{Z} 7 3600 600 86400 60",)),
    Case(Z, "MX", "NOERROR", (f"{Z} 30 MX 10 mail.{Z}",)),
    Case(f"txt.{Z}", "TXT", "NOERROR", (f'txt.{Z} 30 TXT "hello world" "second"',)),
    Case(f"_sip._tcp.{Z}", "SRV", "NOERROR", (f"_sip._tcp.{Z} 30 SRV 10 5 5060 www.{Z}",)),
    Case(f"caa.{Z}", "CAA", "NOERROR", (f'caa.{Z} 30 CAA 0 issue "letsencrypt.org"',)),
    # RFC 8482: one RRset for ANY
    Case(f"www.{Z}", "ANY", "NOERROR", (f"www.{Z} 30 A 192.0.2.1",)),
    Case(Z, "ANY", "NOERROR", (f"{Z} 3600 NS ns1.{Z}", f"{Z} 3600 NS ns2.{Z}")),
    # CNAME chains chased inside the zone
    Case(f"alias.{Z}", "A", "NOERROR", (f"alias.{Z} 30 CNAME www.{Z}", f"www.{Z} 30 A 192.0.2.1")),
    Case(f"alias.{Z}", "CNAME", "NOERROR", (f"alias.{Z} 30 CNAME www.{Z}",)),
    Case(f"alias.{Z}", "MX", "NOERROR", (f"alias.{Z} 30 CNAME www.{Z}",), (SOA,)),
    Case(f"dangling.{Z}", "A", "NXDOMAIN", (f"dangling.{Z} 30 CNAME missing.{Z}",), (SOA,)),
    Case(f"outside.{Z}", "A", "NOERROR", (f"outside.{Z} 30 CNAME www.example.net.",)),
    Case(f"loop1.{Z}", "A", "NOERROR",
         (f"loop1.{Z} 30 CNAME loop2.{Z}", f"loop2.{Z} 30 CNAME loop1.{Z}")),
    # AZ -> region -> global fallback chains (SPEC section 2)
    Case(zf.US_AZ, "A", "NOERROR", (f"{zf.US_AZ} 30 A {zf.US_IP}",)),
    Case(zf.EU_AZ, "A", "NOERROR",
         (f"{zf.EU_AZ} 30 CNAME {zf.EU_REGION}", f"{zf.EU_REGION} 30 A {zf.EU_IP}")),
    Case(zf.ASIA_REGION, "A", "NOERROR", (
        f"{zf.ASIA_REGION} 30 CNAME {zf.GLOBAL}",
        f"{zf.GLOBAL} 30 A {zf.US_IP}", f"{zf.GLOBAL} 30 A {zf.EU_IP}")),
    Case(zf.ASIA_REGION, "A", "NOERROR", (
        f"{zf.ASIA_REGION} 30 CNAME {zf.GLOBAL}", f"{zf.GLOBAL} 30 A {zf.US_IP}"),
        client="127.0.0.2"),
    Case(f"eu.nginx.{Z}", "AAAA", "NOERROR",
         (f"eu.nginx.{Z} 30 CNAME {zf.EU_REGION}", f"{zf.EU_REGION} 30 AAAA {zf.EU_IP6}")),
    # geo answers per client locality
    Case(zf.GLOBAL, "A", "NOERROR", (f"{zf.GLOBAL} 30 A {zf.US_IP}",), client="127.0.0.2"),
    Case(zf.GLOBAL, "A", "NOERROR", (f"{zf.GLOBAL} 30 A {zf.EU_IP}",), client="127.0.0.3"),
    Case(zf.GLOBAL, "A", "NOERROR",
         (f"{zf.GLOBAL} 30 A {zf.US_IP}", f"{zf.GLOBAL} 30 A {zf.EU_IP}"), client="127.0.0.9"),
    Case(zf.GLOBAL, "AAAA", "NOERROR", (), (SOA,), client="127.0.0.2"),
    Case(f"geoalias.{Z}", "A", "NOERROR",
         (f"geoalias.{Z} 30 CNAME {zf.GLOBAL}", f"{zf.GLOBAL} 30 A {zf.EU_IP}"),
         client="127.0.0.3"),
    # a record with bad rdata is skipped, never served
    Case(f"bad.{Z}", "A", "NXDOMAIN", (), (SOA,)),
    # outside the zone
    Case("www.example.net.", "A", "REFUSED"),
    Case("com.", "NS", "REFUSED"),
    Case(".", "NS", "REFUSED"),
    Case("xexample.com.", "A", "REFUSED"),
    Case(Z, "AXFR", "REFUSED"),
    Case(Z, "IXFR", "REFUSED"),
]


def _rrs(section: list[dns.rrset.RRset]) -> list[str]:
    out = []
    for rrset in section:
        for rd in rrset:
            out.append(f"{str(rrset.name).lower()} {rrset.ttl} "
                       f"{dns.rdatatype.to_text(rrset.rdtype)} {rd.to_text()}")
    return sorted(out)


@pytest.fixture(scope="module")
def handlers() -> tuple[QueryHandler, QueryHandler]:
    fast = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    slow = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry(), fast_path=False)
    assert fast.update(zf.snapshot()) and slow.update(zf.snapshot())
    return fast.handler, slow.handler


@pytest.mark.parametrize("path", ["fast", "full"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qname}/{c.qtype}/{c.client}")
def test_lookup_table(case: Case, path: str, handlers: tuple[QueryHandler, QueryHandler]) -> None:
    handler = handlers[0] if path == "fast" else handlers[1]
    query = dns.message.make_query(case.qname, case.qtype)
    raw = handler.handle(query.to_wire(), case.client, False)
    assert raw is not None
    reply = dns.message.from_wire(raw)
    assert dns.rcode.to_text(reply.rcode()) == case.rcode
    assert reply.id == query.id
    assert str(reply.question[0].name) == case.qname  # original letter case echoed
    assert len(reply.question) == 1
    assert _rrs(reply.answer) == sorted(
        f"{r.split()[0]} {' '.join(r.split()[1:])}" for r in case.answer)
    got_auth = [" ".join(r.split()[:3]) for r in _rrs(reply.authority)]
    assert got_auth == sorted(case.authority)
    assert _rrs(reply.additional) == sorted(case.additional)
    aa = bool(reply.flags & dns.flags.AA)
    assert aa == (case.rcode in ("NOERROR", "NXDOMAIN"))
    assert not reply.flags & dns.flags.RA
    assert reply.flags & dns.flags.RD  # dnspython sets RD; it is copied


def test_ecs_scope_only_for_locality_dependent_answers(
        handlers: tuple[QueryHandler, QueryHandler]) -> None:
    for handler in handlers:
        for name, scope in [(zf.GLOBAL, 24), (f"geoalias.{Z}", 24), (f"www.{Z}", 0),
                            (f"same.{Z}", 0), (f"nope.{Z}", 0), (zf.US_AZ, 0)]:
            ecs = dns.edns.ECSOption("198.51.100.0", 24)
            query = dns.message.make_query(name, "A", use_edns=0, options=[ecs])
            raw = handler.handle(query.to_wire(), "127.0.0.1", False)
            assert raw is not None
            reply = dns.message.from_wire(raw)
            got = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
            assert len(got) == 1, name
            assert got[0].scopelen == scope, name
            assert got[0].srclen == 24 and got[0].address == "198.51.100.0"
        # the ECS address chose the locality: europe-west1-b gets the EU shard
        ecs = dns.edns.ECSOption("198.51.100.0", 24)
        query = dns.message.make_query(zf.GLOBAL, "A", use_edns=0, options=[ecs])
        reply = dns.message.from_wire(handler.handle(query.to_wire(), "127.0.0.2", False) or b"")
        assert _rrs(reply.answer) == [f"{zf.GLOBAL} 30 A {zf.EU_IP}"]


@pytest.mark.parametrize("ecs,src,expect_ip,scope", [
    (("10.1.2.0", 24), "127.0.0.2", zf.US_IP, 0),  # private ECS: the source decides
    (("0.0.0.0", 0), "127.0.0.2", None, 0),  # source prefix 0: untailored answer
    (("203.0.113.0", 24), "127.0.0.3", zf.US_IP, 24),
    (("2001:db8:1::", 48), "127.0.0.2", zf.EU_IP, 48),
])
def test_ecs_address_choice(ecs: tuple[str, int], src: str, expect_ip: str | None, scope: int,
                            handlers: tuple[QueryHandler, QueryHandler]) -> None:
    for handler in handlers:
        option = dns.edns.ECSOption(ecs[0], ecs[1])
        query = dns.message.make_query(zf.GLOBAL, "A", use_edns=0, options=[option])
        reply = dns.message.from_wire(handler.handle(query.to_wire(), src, False) or b"")
        ips = sorted(rd.address for rrset in reply.answer for rd in rrset)
        assert ips == ([expect_ip] if expect_ip else sorted([zf.US_IP, zf.EU_IP]))
        got = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
        assert got and got[0].scopelen == scope


def test_no_ecs_in_reply_without_ecs_in_query(handlers: tuple[QueryHandler, QueryHandler]) -> None:
    for handler in handlers:
        query = dns.message.make_query(zf.GLOBAL, "A", use_edns=0)
        reply = dns.message.from_wire(handler.handle(query.to_wire(), "127.0.0.2", False) or b"")
        assert reply.edns == 0 and not reply.options


def test_packer_matches_dnslib_for_every_fixture_answer() -> None:
    """Our packer (``wire.pack_message``) against dnslib, the reference: same
    bytes (after the header flags) for every name, type and locality, so the
    compression of question, owner and rdata names is dnslib's."""
    from dnslib import RR, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

    from dnsserver.names import wire_to_labels
    from dnsserver.resolver import Resolver

    def reference(labels: tuple[bytes, ...], qtype: int, ans: Answer) -> bytes:
        msg = DNSRecord(DNSHeader(id=0), q=DNSQuestion(DNSLabel(labels), qtype, 1))
        for add, recs in ((msg.add_answer, ans.answer), (msg.add_auth, ans.authority),
                          (msg.add_ar, ans.additional)):
            for r in recs:
                add(RR.fromZone(f"{r.name} {r.ttl} IN {r.rtype} {r.value}")[0])
        return bytes(msg.pack())

    resolver = Resolver(zf.snapshot(), zf.config().server)
    checked: set[str] = set()
    for name in resolver.names():
        labels = wire_to_labels(name)
        for qtype in (1, 2, 5, 6, 12, 15, 16, 28, 33, 65, 255, 257, 4242):
            for loc in resolver.localities:
                ans = resolver.lookup(name, qtype, loc)
                ours = resolver.pack_body(labels, qtype, 1, ans)
                assert ours[4:] == reference(labels, qtype, ans)[4:], (name, qtype, loc)
                checked.update(r.rtype for r in (*ans.answer, *ans.authority, *ans.additional))
    assert {"A", "AAAA", "CNAME", "NS", "SOA", "MX", "TXT", "SRV", "CAA"} <= checked


def test_interned_records_equal_plain_ones_and_share_parts() -> None:
    from dnsserver.records import Interner, compile_record
    interner = Interner()
    recs = [zf.rec(f"a.{Z}", "A", "192.0.2.1"), zf.rec(f"a.{Z}", "A", "192.0.2.2"),
            zf.rec(f"b.{Z}", "CNAME", f"a.{Z}"), zf.rec(f"m.{Z}", "MX", f"10 a.{Z}")]
    shared = [compile_record(r, interner) for r in recs]
    assert shared == [compile_record(r) for r in recs]
    assert shared[0][0] is shared[1][0] is shared[2][2][0]  # one labels tuple per name
    assert shared[0][1] is shared[1][1]  # same type, class and TTL: one bytes object
    assert shared[2][0][1] is shared[3][0][1]  # one bytes object per label


def test_tiny_cache_bounds_give_the_same_answers_and_table(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Resolver's caches (packed records, interned parts, records by type,
    CNAME targets) are bounded; forgetting entries all the time changes no
    answer, no packed body and no table entry."""
    from dnsserver import records
    from dnsserver import resolver as res
    from dnsserver.answers import AnswerTable
    from dnsserver.names import wire_to_labels
    from dnsserver.resolver import Resolver

    plain = Resolver(zf.snapshot(), zf.config().server)
    for knob in ("_PACKED_MAX", "_TYPED_MAX", "_WIRE_MEMO_MAX"):
        monkeypatch.setattr(res, knob, 2)
    monkeypatch.setattr(records, "_INTERN_MAX", 2)
    tiny = Resolver(zf.snapshot(), zf.config().server)
    assert tiny.names() == plain.names()
    for name in plain.names():
        labels = wire_to_labels(name)
        assert tiny.types_at(name) == plain.types_at(name)
        for qtype in (1, 5, 6, 15, 28, 255):
            for loc in plain.localities:
                a, b = tiny.lookup(name, qtype, loc), plain.lookup(name, qtype, loc)
                assert a == b
                assert tiny.pack_body(labels, qtype, 1, a) == plain.pack_body(labels, qtype, 1, b)
    assert len(tiny._packed) <= 2 and len(tiny._typed) <= 2
    small, big = AnswerTable.build(tiny), AnswerTable.build(plain)
    assert (small.names, small.questions, small.letters) == (big.names, big.questions, big.letters)
