"""One query in, one reply (or nothing) out: the fast path and its fallback.

Transport-independent (UDP and TCP both call ``QueryHandler.handle``). The fast
path is ``wire.fast_parse`` + one ``AnswerTable`` lookup + byte patching (ID,
RD/CD, the client's question bytes, ECS); everything else goes through
``wire.parse_query`` and ``Resolver.respond``. No exception leaves
``handle``: an unexpected one becomes SERVFAIL, a counter and (once) a log line.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from typing import cast

from config.model import Server
from dnsserver import wire
from dnsserver.answers import CHASE, NODATA, AnswerTable, Tail, Value
from dnsserver.errors import DropPacket, MalformedQuery
from dnsserver.locality import Locator
from dnsserver.metrics import DnsMetrics, locality_kind
from dnsserver.resolver import Resolver

log = logging.getLogger("dnsserver.handler")

TCP_LIMIT = wire.MAX_UDP
ECS_CACHE_MAX = 65536
# qtypes the fast path leaves to the full path (transfers, meta types)
_FULL_PATH_QTYPES = frozenset((wire.T_OPT, wire.T_IXFR, wire.T_AXFR, wire.T_MAILA,
                               wire.T_MAILB))


@dataclass(frozen=True, slots=True)
class ServingState:
    """What one Snapshot serves; swapped as a whole (one reference assignment)."""

    resolver: Resolver
    table: AnswerTable
    serial: int
    udp_max: int = 1232  # max(512, server.edns_udp_size)
    opt_heads: tuple[bytes, bytes, bytes] = (b"", b"", b"")  # OPT up to RDLENGTH per variant

    @classmethod
    def make(cls, resolver: Resolver, table: AnswerTable, serial: int) -> ServingState:
        size = resolver.server.edns_udp_size
        heads = (b"", wire.opt_record(size, do=False)[:-2], wire.opt_record(size, do=True)[:-2])
        return cls(resolver, table, serial, max(512, size), heads)


def packed_address(ip: str) -> bytes:
    """Socket address text -> 4 or 16 bytes (IPv4-mapped IPv6 becomes IPv4)."""
    if ":" in ip:
        raw = socket.inet_pton(socket.AF_INET6, ip.partition("%")[0])
        if raw[:12] == b"\x00" * 10 + b"\xff\xff":
            return raw[12:]
        return raw
    return socket.inet_pton(socket.AF_INET, ip)


class QueryHandler:
    def __init__(self, locator: Locator, metrics: DnsMetrics, server: Server,
                 *, fast_path: bool = True) -> None:
        self.locator = locator
        self.metrics = metrics
        self.server = server
        self.fast_path = fast_path
        self.state: ServingState | None = None
        self._logged_error = False
        self._kinds: dict[str, str] = {}
        # ECS option body -> (locality, scope); cleared on every swap, so a
        # locator reload (which always comes with a table rebuild) is seen
        self._ecs_cache: dict[bytes, tuple[str, int]] = {}

    def swap(self, state: ServingState) -> None:
        self.state = state
        self._ecs_cache = {}

    # -- locality ----------------------------------------------------------------

    def locate(self, ecs: wire.Ecs | None, client: str) -> tuple[str, int]:
        """(locality, ECS scope) for a client; scope 0 when ECS was not used."""
        if ecs is not None:
            if ecs.source == 0:  # RFC 7871 7.1.2: the client opted out
                return "", 0
            if not ecs.private:
                loc, scope = self.locator.locate(ecs.address, ecs.source)
                return loc, min(scope, 32 if ecs.family == 1 else 128)
        loc, _ = self.locator.locate(packed_address(client), None)
        return loc, 0

    # -- the query -----------------------------------------------------------------

    def handle(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        """The reply to one query from ``client`` (None: send nothing)."""
        metrics = self.metrics
        metrics.tick += 1
        sampled = not metrics.tick % metrics.sample_every
        started = time.perf_counter() if sampled else 0.0
        try:
            out = self._fast(data, client, tcp) if self.fast_path else None
            if out is None:
                out = self._slow(data, client, tcp)
        except Exception:
            out = self._servfail(data)
        if out is not None and sampled:
            metrics.observe("tcp" if tcp else "udp", time.perf_counter() - started, len(out))
        return out

    def _fast(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        state = self.state
        if state is None:
            return None
        fq = wire.fast_parse(data)
        if fq is None:
            return None
        qname, qtype, qclass, qend, variant, limit, ecs = fq
        if qclass != wire.C_IN or qtype in _FULL_PATH_QTYPES:
            return None
        table = state.table
        types = table.names.get(qname)
        aa = 0x04
        if types is None:
            if not table.complete or not wire.plain_name(data, qend - 4):
                return None
            if state.resolver.in_zone(qname):
                value: Value = wire.NXDOMAIN
            else:
                value, aa = wire.REFUSED, 0  # REFUSED: no AA, no SOA
        else:
            found = types.get(qtype)
            if found is None:
                if CHASE in types:
                    return None
                value = NODATA
            else:
                value = found
        scope = 0
        if type(value) is tuple:  # a static CNAME chain into a geo-aware name
            an, rrs, ptr, tails = value
            if type(tails) is dict:
                loc, scope = self._locate_fast(ecs, client)
                tail = tails.get(loc)
                count, parts = tails[""] if tail is None else tail
                kind = self._kinds.get(loc) or self._kind(loc)
            else:
                count, parts = cast(Tail, tails)
                kind = "none"
            value = (b"\x00\x00\x84\x00\x00\x01" + (an + count).to_bytes(2, "big")
                     + b"\x00\x00\x00\x00" + data[12:qend] + rrs + ptr.join(parts))
        elif type(value) is dict:
            loc, scope = self._locate_fast(ecs, client)
            entry = value.get(loc)
            value = value[""] if entry is None else entry
            kind = self._kinds.get(loc) or self._kind(loc)
        else:
            kind = "none"
        if tcp:
            limit = TCP_LIMIT
        elif limit > state.udp_max:
            limit = state.udp_max
        if variant:
            opt = state.opt_heads[variant]
            if ecs is None:
                opt += b"\x00\x00"
            else:
                opt += ((len(ecs) + 4).to_bytes(2, "big") + b"\x00\x08"
                        + len(ecs).to_bytes(2, "big") + ecs[:3] + bytes((scope,)) + ecs[4:])
        else:
            opt = b""
        if type(value) is bytes:
            body = value
            rcode = body[3] & 0x0F
            if len(body) + len(opt) > limit:
                out = self._truncated(data, qend, body[2], body[3], opt)
            elif variant:
                out = (data[:2] + bytes((body[2] | (data[2] & 0x01), body[3] | (data[3] & 0x10)))
                       + body[4:10] + bytes((body[10], body[11] + 1)) + data[12:qend]
                       + body[qend:] + opt)
            else:
                out = (data[:2] + bytes((body[2] | (data[2] & 0x01), body[3] | (data[3] & 0x10)))
                       + body[4:12] + data[12:qend] + body[qend:])
        else:
            rcode = value  # type: ignore[assignment]
            auth = b""
            if aa:
                auth = state.resolver.negative_authority(qend - 16) or b""
                if not auth and state.resolver.negative_soa is not None:
                    return None  # an SOA the blob cannot express: full path
            out = (data[:2] + bytes((0x80 | aa | (data[2] & 0x01), rcode | (data[3] & 0x10)))
                   + b"\x00\x01\x00\x00" + (b"\x00\x01" if auth else b"\x00\x00")
                   + (b"\x00\x01" if variant else b"\x00\x00") + data[12:qend] + auth + opt)
            if len(out) > limit:
                out = self._truncated(data, qend, out[2] & 0xFE, out[3] & 0xEF, opt)
        proto = "tcp" if tcp else "udp"
        if out[2] & 0x02:
            self.metrics.truncate(proto)
        requests = self.metrics.requests
        key = (proto, qtype, rcode, kind)
        requests[key] = requests.get(key, 0) + 1
        return out

    @staticmethod
    def _truncated(data: bytes, qend: int, f1: int, f2: int, opt: bytes) -> bytes:
        """TC=1 with the question and OPT only (``f1``/``f2``: the reply's flags
        before RD/CD are copied)."""
        return (data[:2] + bytes((f1 | 0x02 | (data[2] & 0x01), f2 | (data[3] & 0x10)))
                + b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
                + data[12:qend] + opt)

    def _locate_fast(self, ecs: bytes | None, client: str) -> tuple[str, int]:
        """``locate`` for the raw ECS option body of ``wire.fast_parse``."""
        if ecs is not None:
            hit = self._ecs_cache.get(ecs)
            if hit is not None:
                return hit
            source = ecs[2]
            if source == 0:
                return "", 0
            address = wire.ecs_address(ecs)
            if not wire.is_private(address):
                loc, scope = self.locator.locate(address, source)
                limit = 32 if ecs[1] == 1 else 128
                hit = (loc, scope if scope < limit else limit)
                if len(self._ecs_cache) >= ECS_CACHE_MAX:
                    self._ecs_cache.clear()
                self._ecs_cache[ecs] = hit
                return hit
        loc, _ = self.locator.locate(packed_address(client), None)
        return loc, 0

    def _kind(self, loc: str) -> str:
        kind = self._kinds[loc] = locality_kind(loc)
        if len(self._kinds) > 4096:
            self._kinds.clear()
        return kind

    def _slow(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        proto = "tcp" if tcp else "udp"
        try:
            q = wire.parse_query(data)
        except DropPacket as exc:
            self.metrics.drop(exc.reason)
            return None
        except MalformedQuery as exc:
            flags = wire.reply_flags(exc.flags, rcode=wire.FORMERR, aa=False)
            self.metrics.request(proto, -1, wire.FORMERR, "none")
            return wire.short_reply(exc.qid, flags, exc.question, None)
        state = self.state
        if state is None:
            flags = wire.reply_flags(q.flags, rcode=wire.SERVFAIL, aa=False)
            self.metrics.request(proto, q.qtype, wire.SERVFAIL, "none")
            return wire.short_reply(q.qid, flags, q.question, None)
        limit = TCP_LIMIT if tcp else wire.udp_limit(q.edns, self.server.edns_udp_size)
        ecs = q.edns.ecs if q.edns is not None else None
        loc, scope = ("", 0)
        if q.qclass == wire.C_IN and q.opcode == wire.OP_QUERY and q.question is not None:
            loc, scope = self.locate(ecs, client)
        out, depends = state.resolver.respond(
            q, locality=loc, scope=scope, client=packed_address(client), limit=limit)
        rcode = out[3] & 0x0F
        if q.edns is not None and q.edns.version > 0:
            rcode = wire.BADVERS
        if out[2] & 0x02:
            self.metrics.truncate(proto)
        self.metrics.request(proto, q.qtype, rcode, locality_kind(loc) if depends else "none")
        return out

    def _servfail(self, data: bytes) -> bytes | None:
        self.metrics.error()
        if not self._logged_error:
            self._logged_error = True
            log.exception("query_failed size=%d (further errors only counted)", len(data))
        if len(data) < 12 or data[2] & 0x80:
            return None
        qid = (data[0] << 8) | data[1]
        qflags = (data[2] << 8) | data[3]
        question: bytes | None = None
        try:
            question = wire.parse_query(data).question
        except Exception:
            question = None
        flags = wire.reply_flags(qflags, rcode=wire.SERVFAIL, aa=False)
        return wire.short_reply(qid, flags, question, None)
