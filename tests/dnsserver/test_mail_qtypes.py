"""MAILA (254) and MAILB (253) in the question: NOTIMP, as BIND answers.

RFC 1035 section 3.2.3 defines the two QTYPEs (mail agent RRs, obsolete;
mailbox-related records MB/MG/MR) and no server behaviour for them; RFC 6895
section 3.1 keeps them as query types, not meta-types. BIND answers NOTIMP
(NSD, Knot and PowerDNS: NODATA). fedns answers NOTIMP for any name and
class, with an OPT record when the query had one (RFC 6891 section 6.1.1),
RD and CD copied, AA clear, no records; over UDP and TCP, on both query paths
(the fast path leaves qtypes 128-254 to the full path). Checked with dig and
kdig over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from dnsserver.handler import QueryHandler
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_rfc8906 import paths, running
from tests.dnsserver.test_server import Running, dig, udp
from tests.dnsserver.test_xfr import tool

__all__ = ["paths", "running"]  # the fixtures, shared with test_rfc8906

Z = zf.ZONE
NAMES = [Z, f"www.{Z}", f"nope.{Z}", zf.GLOBAL, "www.example.net."]


async def kdig(r: Running, *args: str) -> str:
    return await tool("kdig", "@127.0.0.1", "-p", str(r.port), "+retry=0", "+time=3", *args)


@pytest.mark.parametrize("qtype", ["MAILA", "MAILB"])
async def test_dig_mail_qtypes_get_notimp(qtype: str, running: Running) -> None:
    for name in (f"www.{Z}", "www.example.net."):  # in the zone and outside it
        for transport in ("+notcp", "+tcp"):
            text = await dig(running, transport, "+edns=0", "+rec", name, qtype)
            assert "status: NOTIMP" in text, text
            assert "; EDNS: version: 0" in text, text  # RFC 6891 6.1.1
            assert "flags: qr rd;" in text and "ANSWER: 0, AUTHORITY: 0" in text, text
            text = await dig(running, transport, "+noedns", "+norec", name, qtype)
            assert "status: NOTIMP" in text and "EDNS:" not in text, text
            assert "flags: qr;" in text, text


@pytest.mark.parametrize("code", [254, 253])
async def test_kdig_mail_qtypes_get_notimp(code: int, running: Running) -> None:
    for transport in ("+notcp", "+tcp"):
        text = await kdig(running, transport, f"www.{Z}", f"TYPE{code}")
        assert "status: NOTIMP" in text, text
        text = await kdig(running, transport, "+edns", f"www.{Z}", f"TYPE{code}")
        assert "status: NOTIMP" in text and "EDNS PSEUDOSECTION" in text, text


async def test_mail_qtypes_both_paths_and_other_classes(
        running: Running, paths: tuple[QueryHandler, QueryHandler]) -> None:
    for qtype in (dns.rdatatype.MAILA, dns.rdatatype.MAILB):
        for name in NAMES:
            for rdclass in ("IN", "CH", "HS"):
                for edns in (None, 0):
                    q = dns.message.make_query(name, qtype, rdclass, use_edns=edns)
                    q.flags |= dns.flags.CD
                    data = q.to_wire()
                    a, b = (h.handle(data, "127.0.0.1", False) for h in paths)
                    assert a == b and a is not None, (name, qtype, rdclass)
                    reply = dns.message.from_wire(a)
                    assert reply.rcode() == dns.rcode.NOTIMP, (name, qtype, rdclass)
                    assert reply.edns == (-1 if edns is None else 0)
                    assert reply.flags & (dns.flags.RD | dns.flags.CD) == \
                        q.flags & (dns.flags.RD | dns.flags.CD)
                    assert not reply.flags & dns.flags.AA
                    assert not reply.answer and not reply.authority
                    assert reply.question == q.question
        live = await udp(running, dns.message.make_query(f"www.{Z}", qtype))
        assert live.rcode() == dns.rcode.NOTIMP
    assert running.server.metrics.errors == 0
    assert all(h.metrics.errors == 0 for h in paths)
