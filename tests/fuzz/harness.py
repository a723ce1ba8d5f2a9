"""The query path under test: (packet bytes, source address) -> reply or None.

Two ``QueryHandler``s serve the same Snapshot (tests/dnsserver/zonefixture):
one with the fast path (precomputed table, falls back to the full path) and
one with the full path only. ``check`` feeds one packet to both and asserts
the properties every reply must have; it is shared by the atheris target
(fuzz_query.py) and the hypothesis test (test_properties.py), so a crash
found by either is an ``AssertionError`` or an exception out of ``check``.
"""

from __future__ import annotations

import dns.exception
import dns.message
import dns.opcode

from dnsserver.handler import QueryHandler
from dnsserver.metrics import DnsMetrics
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf

CLIENTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "203.0.113.9",
           "198.51.100.7", "2001:db8:1::5", "::1", "::ffff:127.0.0.2", "192.0.2.200")
SERVER_UDP = 1232


def make_handler(*, fast_path: bool) -> QueryHandler:
    """A handler serving the fixture Snapshot (CH answers configured)."""
    config = zf.config(edns_udp_size=SERVER_UDP, version="fedns-fuzz", identity="ns-fuzz")
    server = DnsServer(config, zf.locator(), registry=None, fast_path=fast_path)
    assert server.update(zf.snapshot())
    return server.handler


class Harness:
    def __init__(self) -> None:
        self.fast = make_handler(fast_path=True)
        self.full = make_handler(fast_path=False)

    @property
    def metrics(self) -> tuple[DnsMetrics, DnsMetrics]:
        return self.fast.metrics, self.full.metrics

    def check(self, data: bytes, client: str, tcp: bool = False) -> bytes | None:
        """Run ``data`` through both paths and assert every property; the fast reply."""
        errors = (self.fast.metrics.errors, self.full.metrics.errors)
        fast = self.fast.handle(data, client, tcp)
        full = self.full.handle(data, client, tcp)
        # handle() turns an unexpected exception into SERVFAIL and counts it: a bug
        assert (self.fast.metrics.errors, self.full.metrics.errors) == errors, \
            f"unexpected exception in the query path for {data!r}"
        assert fast == full, f"fast and full path differ for {data!r}:\n{fast!r}\n{full!r}"
        check_reply(data, fast, tcp)
        return fast


def _parse_query(data: bytes) -> dns.message.Message | None:
    try:
        return dns.message.from_wire(data)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return None


def udp_limit(query: dns.message.Message | None) -> int:
    """The reply size the client negotiated (RFC 6891 6.2.5), capped by the server."""
    if query is None:
        return SERVER_UDP  # unknown to dnspython: at most what the server allows
    if query.edns < 0:
        return 512
    return min(max(512, query.payload), SERVER_UDP)


def check_reply(data: bytes, reply: bytes | None, tcp: bool) -> None:
    """Properties of the reply to ``data`` (both paths already agree on it)."""
    if len(data) < 12 or data[2] & 0x80:
        assert reply is None, f"reply to a short or QR=1 packet {data!r}"
        return
    if reply is None:
        return  # dropped (e.g. a header only): allowed
    assert reply[:2] == data[:2], "reply ID differs from the query ID"
    assert reply[2] & 0x80, "reply without QR"
    assert (reply[2] >> 3) & 0xF == (data[2] >> 3) & 0xF, "reply opcode differs"
    # dnspython reads an UPDATE's question as the zone section and insists on
    # type SOA there; the NOTIMP reply echoes any question, so check its
    # structure as a QUERY
    parsed = reply if (reply[2] >> 3) & 0xF != dns.opcode.UPDATE else \
        reply[:2] + bytes((reply[2] & 0x87,)) + reply[3:]
    try:
        msg = dns.message.from_wire(parsed)
    except Exception as exc:
        raise AssertionError(f"dnspython cannot parse reply {reply!r} to {data!r}: {exc!r}") \
            from exc
    query = _parse_query(data)
    if not tcp:
        limit = udp_limit(query)
        assert len(reply) <= limit, f"UDP reply of {len(reply)} bytes over the limit {limit}"
    if query is not None and query.opcode() == dns.opcode.QUERY and len(query.question) == 1:
        q, r = query.question[0], msg.question
        assert len(r) == 1, f"question not echoed in reply to {data!r}"
        assert r[0].name.labels == q.name.labels, "question name not echoed byte for byte"
        assert (r[0].rdtype, r[0].rdclass) == (q.rdtype, q.rdclass), "question type/class"
