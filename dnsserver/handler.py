"""One query in, one reply (or nothing) out: the fast path and its fallback.

Transport-independent (UDP and TCP both call ``QueryHandler.handle``). The fast
path finds the end of the question itself, looks the header and OPT record up
together in a per-state cache (header check, ``wire.fast_opt``, locality and
the reply's OPT, worked out once per distinct pair, i.e. about once per ECS
prefix), does one ``AnswerTable`` lookup by the lower-cased question and joins
the reply from the client's ID and question bytes and the stored reply parts.
NXDOMAIN, REFUSED and NODATA are decided once per lower-cased question and
state, then joined the same way; so are the answers for names the table does
not hold that do not depend on the client's locality: referrals at and below
a zone cut, DS at a cut, and static wildcards' synthesized answers
(``_resolved``: the full path's bytes, built once). Names under a geo-aware
wildcard, whose answers depend on the locality, are joined like a geo-aware
name's from per-locality entries kept per name (``_synthesized``, where
``_negative`` sends them to the full path). Everything else goes through
``wire.parse_query`` and ``Resolver.respond`` (an IXFR query over UDP first
through ``xfr.udp_ixfr``, with the transfer policy the TCP transfers use:
the current SOA for an admitted client; its outcome, and FORMERR for a
malformed one, counted in ``fedns_dns_xfr_total{proto="udp"}``, as the
TCP transfers count). No exception leaves ``handle``:
an unexpected one becomes SERVFAIL, a counter and (once) a log line.

DNS Cookies (``dnsserver.cookies``): the server cookie depends on the
client's address and the time, so it cannot live in a ``Context``. A query
whose OPT record has a COOKIE option is never kept in ``contexts`` (each
client cookie would be a key of its own there); its context, with the
reply's OPT length grown by the COOKIE option, is kept apart in
``cookie_contexts``, and ``_with_cookie`` joins the client's COOKIE option
(``ServerCookies.reply``: kept per option and address) onto it per query.
A query without one takes exactly the path it took before: the cookie work
sits where the ``contexts`` lookup misses. Both paths ask the same
``ServerCookies``, so they send the same bytes. A malformed COOKIE option
gets FORMERR; with ``server.require_server_cookie``, a UDP query without a
valid server cookie gets BADCOOKIE (both from the full path).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass, field

from config.model import Server
from dnsserver import wire
from dnsserver.answers import CHASE, NODATA, REFER, AnswerTable, Chain, Entry, encode_entry
from dnsserver.cookies import ACCEPTED, ServerCookies
from dnsserver.cookies import REPLY_LEN as COOKIE_REPLY_LEN
from dnsserver.errors import DropPacket, MalformedQuery
from dnsserver.locality import Locator
from dnsserver.metrics import LOCALITY_KINDS, DnsMetrics, locality_kind
from dnsserver.names import wire_to_labels
from dnsserver.resolver import Resolver
from dnsserver.xfr import transfer_policy, udp_ixfr

log = logging.getLogger("dnsserver.handler")

TCP_LIMIT = wire.MAX_UDP
CONTEXT_CACHE_MAX = 65536  # distinct header + OPT records (mostly: ECS prefixes) per state
COOKIE_CONTEXT_MAX = 65536  # distinct OPT records with a COOKIE option per state
CLIENT_CACHE_MAX = 65536  # client addresses located per ServingState
# qtypes the fast path leaves to the full path: OPT and 128-254 (transfers,
# MAILA/MAILB, TSIG, TKEY and the other meta types; ANY is answered here)
_FULL_PATH_QTYPES = frozenset((wire.T_OPT, *range(128, wire.T_ANY)))
# a query's flags and counts (QR=0, opcode QUERY; AA/TC/Z/AD/RA/rcode ignored)
# -> the flags of a positive authoritative reply (QR, AA, RD and CD copied)
# and whether the query has an OPT record (QD=1 and AR=1, else QD=1 only)
_HEADERS: dict[bytes, tuple[bytes, bool]] = {
    bytes((a, b)) + b"\x00\x01\x00\x00\x00\x00\x00" + bytes((ar,)):
        (bytes((0x84 | (a & 0x01), b & 0x10)), bool(ar))
    for a in range(8) for b in range(256) for ar in (0, 1)}
# what a query's header and OPT record (everything but its ID and question)
# decide: (the flags of a positive reply, UDP payload limit, the reply's OPT
# record for an answer that does not depend on locality (ECS scope 0), the
# same for one that does, locality index into ``Resolver.localities`` or None
# (locate by the client address), metrics kind of that locality)
Context = tuple[bytes, int, bytes, bytes, "int | None", str]
_NO_EDNS: tuple[int, bytes, bytes, int | None, str] = (512, b"", b"", None, "")


@dataclass(frozen=True, slots=True)
class CookieContext:
    """What a header and an OPT record with a COOKIE option decide apart
    from the cookie: the ``Context`` whose OPT records' RDLENGTH already
    counts the reply's COOKIE option, and where the option's data lies in
    the key (all but the ID and the question)."""

    context: Context
    start: int
    end: int


# a negative answer decided from the lower-cased question alone: (a positive
# reply's flags -> this answer's, both with RD and CD as the query had them;
# its counts without and with an OPT record; the authority section; the qtype
# counters of its rcode and locality kind for UDP and TCP), or False (the full
# path answers it). Its fields line up with a positive ``Reply``'s, so the fast
# path joins both the same way.
Negative = tuple[dict[bytes, bytes], bytes, bytes, bytes,
                 tuple[dict[int, int], dict[int, int]]] | bool
# the bytes ``bytes.lower()`` can produce from another byte
_LETTERS = frozenset(range(0x61, 0x7B))


@functools.cache
def _flag_map(first: int, rcode: int) -> dict[bytes, bytes]:
    """A positive reply's flags (QR, AA, and RD and CD as the query had them)
    -> those of a negative one with the first byte ``first`` (QR, AA or not)
    and ``rcode``, for each of the four ways RD and CD can be set."""
    return {bytes((0x84 | rd, cd)): bytes((first | rd, rcode | cd))
            for rd in (0, 0x01) for cd in (0, 0x10)}


NEGATIVE_CACHE_MAX = 65536  # lower-cased questions per ServingState
SYNTHESIZED_CACHE_MAX = 65536  # names under geo-aware wildcards per ServingState


@dataclass(frozen=True, slots=True)
class ServingState:
    """What one Snapshot serves; swapped as a whole (one reference assignment)."""

    resolver: Resolver
    table: AnswerTable
    serial: int
    udp_max: int = 1232  # max(512, server.edns_udp_size)
    opt_heads: tuple[bytes, bytes, bytes] = (b"", b"", b"")  # OPT up to RDLENGTH per variant
    # locality -> its index in the table's per-locality lists (0: unknown)
    loc_index: dict[str, int] = field(default_factory=dict)
    # what the fast path worked out per distinct header + OPT record, client
    # address and negative question; they belong to this state (its locator
    # results, OPT heads and names), so a swap starts from empty caches
    contexts: dict[bytes, Context | bool] = field(default_factory=dict)
    clients: dict[str, tuple[int, str]] = field(default_factory=dict)
    negatives: dict[bytes, Negative] = field(default_factory=dict)
    # header + OPT records with a COOKIE option (kept apart: one per client cookie)
    cookie_contexts: dict[bytes, CookieContext] = field(default_factory=dict)
    # lower-cased question under a geo-aware wildcard -> its per-locality
    # entries (as ``AnswerTable.questions``), or False (the full path)
    synthesized: dict[bytes, list[Entry] | bool] = field(default_factory=dict)
    # id of a geo-aware wildcard's per-locality list in ``table`` -> whether its
    # bytes answer any name under it (``_owner_only``)
    wildcard_bytes: dict[int, bool] = field(default_factory=dict)

    @classmethod
    def make(cls, resolver: Resolver, table: AnswerTable, serial: int) -> ServingState:
        size = resolver.server.edns_udp_size
        heads = (b"", wire.opt_record(size, do=False)[:-2], wire.opt_record(size, do=True)[:-2])
        index = {loc: i for i, loc in enumerate(resolver.localities)}
        return cls(resolver, table, serial, max(512, size), heads, index)


def _ixfr_question(flags: int, question: bytes | None) -> bool:
    """Is this an IXFR query (opcode QUERY, qtype IXFR), by its flags and question?"""
    return (question is not None and not (flags >> 11) & 0xF
            and question[-4:-2] == wire.T_IXFR.to_bytes(2, "big"))


def _geo_wildcard(state: ServingState, qname: bytes, qtype: int) -> list[Entry] | None:
    """The per-locality entries of the wildcard that answers ``qname`` (in the
    zone, not existing, not below a zone cut) for ``qtype``, when they differ
    between localities (a geo-aware wildcard), else None."""
    resolver = state.resolver
    if resolver.occluded(qname):
        return None
    wild = resolver.wildcard_of(qname)
    own = None if wild is None else state.table.get(wild, qtype)
    return own if type(own) is list else None


def _owner_only(entry: tuple[bytes, bytes, bytes]) -> bool:
    """Does the ``Reply`` hold only A/AAAA records owned by the question name
    (each owner a pointer to offset 12, nothing else pointing anywhere)? Then
    its bytes answer any question name: a wildcard's serve every name under it."""
    counts, _, rest = entry
    if counts[4:] != b"\x00\x00\x00\x00":
        return False  # authority or additional records
    i = 0
    for _ in range((counts[2] << 8) | counts[3]):
        head = rest[i:i + 12]
        if len(head) < 12 or head[:2] != b"\xc0\x0c" or head[4:6] != b"\x00\x01":
            return False
        rdlength = (head[10] << 8) | head[11]
        if not ((head[2:4] == b"\x00\x01" and rdlength == 4)
                or (head[2:4] == b"\x00\x1c" and rdlength == 16)):
            return False
        i += 12 + rdlength
    return i == len(rest)


class QueryHandler:
    def __init__(self, locator: Locator, metrics: DnsMetrics, server: Server,
                 *, fast_path: bool = True, cookies: ServerCookies | None = None) -> None:
        """``cookies``: the server-cookie keeper (None: the COOKIE option is
        ignored, as by a server without cookie support)."""
        self.locator = locator
        self.metrics = metrics
        self.fast_path = fast_path
        self.cookies = cookies
        # BADCOOKIE over UDP for a cookie without a valid server cookie (reloadable)
        self.require_cookie = server.require_server_cookie
        self.state: ServingState | None = None
        self._logged_error = False
        self._kinds: dict[str, str] = {}
        self._tick = 1  # queries until the next timed one (the first is timed)
        self._period = 1  # queries from the last timed one to the next
        self._last_timed = 0.0  # perf_counter() when the last timed query came
        self.slow_queries = 0  # queries the full path answered (tests, benches)
        # who may transfer the zone: the object the TCP transfers use (IXFR over UDP)
        self.transfers = transfer_policy(server)
        # per locality kind: qtype -> positive replies, for UDP and for TCP
        self._positive = {k: metrics.counters(wire.NOERROR, k) for k in LOCALITY_KINDS}

    def swap(self, state: ServingState) -> None:
        """Serve ``state`` from now on (a locator reload always comes with a
        new state, so the per-state locality caches see it)."""
        self.state = state

    # -- locality ----------------------------------------------------------------

    def locate(self, ecs: wire.Ecs | None, client: str) -> tuple[str, int]:
        """(locality, ECS scope) for a client; scope 0 when ECS was not used."""
        if ecs is not None:
            hit = self._ecs_locality(ecs.family, ecs.source, ecs.address)
            if hit is not None:
                return hit
        loc, _ = self.locator.locate(wire.packed_address(client), None)
        return loc, 0

    def _ecs_locality(self, family: int, source: int, address: bytes) -> tuple[str, int] | None:
        """(locality, scope) for an ECS option's subnet (``address`` padded to 4
        or 16 bytes), or None when the subnet is private and in no configured
        network: locate the client's own address instead (a private subnet
        means something only where the config says so, e.g. a pod CIDR).
        Both paths decide ECS here."""
        if source == 0:  # RFC 7871 7.1.2: the client opted out
            return "", 0
        if family == 2 and source >= 96 and address[:12] == wire.V4_MAPPED:
            # an IPv4 subnet written as IPv4-mapped IPv6 (::ffff:a.b.c.d/96+n)
            # is located as the IPv4 subnet a.b.c.d/n; the scope is in the
            # query's family, so the 96 bits of the prefix are added back
            hit = self._ecs_locality(1, source - 96, address[12:])
            return None if hit is None else (hit[0], 96 + hit[1])
        if wire.is_private(address):
            hit = self.locator.locate_network(address, source)
            if hit is None:
                return None
            loc, scope = hit
        else:
            loc, scope = self.locator.locate(address, source)
        width = 32 if family == 1 else 128
        return loc, scope if scope < width else width

    # -- the query -----------------------------------------------------------------

    def handle(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        """The reply to one query from ``client`` (None: send nothing).

        The fast path, inline: one dict lookup for the header and OPT record
        together (``_context``: validation, reply flags, locality index, the
        reply's OPT, worked out once per distinct pair), one for the
        lower-cased question, one list index for the locality, one ``join``.
        A negative answer (NXDOMAIN, NODATA, REFUSED) is one more lookup, in
        ``state.negatives`` (filled by ``_negative_entry``), and is joined the
        same way; anything else goes to ``_slow``."""
        tick = self._tick - 1
        if not tick:  # this query is timed (duration and size; see _timed)
            return self._timed(data, client, tcp)
        self._tick = tick
        try:
            state = self.state
            qend = data.find(b"\x00", 12) + 5  # after the question's type and class
            if (qend < 18 or qend > len(data) or qend > 16 + wire.MAX_NAME or state is None
                    or not self.fast_path):
                return self._slow(data, client, tcp)
            key = data[2:12] + data[qend:]  # all but the ID and the question
            context = state.contexts.get(key)
            if context is None:
                found = self._context(key, state)
                context = (self._with_cookie(found, key, client, tcp)  # this client's cookie
                           if isinstance(found, CookieContext) else found)
            if context is False:
                return self._slow(data, client, tcp)
            flags, limit, opt, geo_opt, loc, kind = context  # type: ignore[misc]
            question = data[12:qend]
            lowered = question.lower()
            value = state.table.questions.get(lowered)
            if type(value) is list:
                if loc is None:
                    loc, kind = self._client_locality(client, state)
                entry = value[loc]
                if type(entry) is tuple:
                    counts, counts_opt, rest = entry
                    counters = self._positive[kind]
                else:  # NODATA for this locality (counted under its kind)
                    negative = state.negatives.get(lowered)
                    if negative is None:
                        negative = self._negative_entry(data, qend, lowered, state, nodata=True)
                    if negative is False:
                        return self._slow(data, client, tcp, counted=True)
                    flagmap, counts, counts_opt, rest, _ = negative  # type: ignore[misc]
                    flags = flagmap[flags]
                    counters = self._positive[kind]
                opt = geo_opt
            elif type(value) is tuple:
                counts, counts_opt, rest = value
                counters = self._positive["none"]
            elif type(value) is Chain:  # a static CNAME chain
                if value.geo:  # into a geo-aware name
                    if loc is None:
                        loc, kind = self._client_locality(client, state)
                    counts, counts_opt, rest = value.reply(loc)
                    counters = self._positive[kind]
                    opt = geo_opt
                else:
                    counts, counts_opt, rest = value.reply(0)
                    counters = self._positive["none"]
            else:  # NXDOMAIN, NODATA or REFUSED, or the full path
                negative = state.negatives.get(lowered)
                if negative is None:
                    negative = self._negative_entry(data, qend, lowered, state)
                if negative is False:  # the full path, or a name under a geo-aware wildcard
                    return (self._synthesized(data, qend, question, lowered, context, client,  # type: ignore[arg-type]
                                              tcp, state)
                            or self._slow(data, client, tcp, counted=True))
                flagmap, counts, counts_opt, rest, counters = negative  # type: ignore[misc]
                flags = flagmap[flags]
            if tcp:
                limit = TCP_LIMIT
            if qend + len(rest) + len(opt) > limit:
                out = self._truncated(data, qend, flags[0] & 0xFE, flags[1] & 0xEF, opt)
                self.metrics.truncate("tcp" if tcp else "udp")
            elif opt:
                out = b"".join((data[:2], flags, counts_opt, question, rest, opt))
            else:
                out = b"".join((data[:2], flags, counts, question, rest))
            qtype = (data[qend - 4] << 8) | data[qend - 3]
            counter = counters[tcp]
            counter[qtype] = counter.get(qtype, 0) + 1
            return out
        except Exception:
            return self._servfail(data)

    def _timed(self, data: bytes, client: str, tcp: bool) -> bytes | None:
        """``handle`` with its duration and reply size observed.

        The next timed query is the one a second from now at the rate seen
        since the last, and never more than ``sample_every`` queries on: about
        one a second on a quiet server (so its latency panel has data), and 1
        in ``sample_every`` on a busy one (a timed query is slower; the fewer,
        the less they weigh on the tail). The gap at most doubles from one
        timed query to the next, so two queries close together do not make a
        quiet server look busy. UDP and TCP share the count."""
        started = time.perf_counter()
        elapsed = started - self._last_timed
        per_second = self._period / elapsed if elapsed > 0.0 else float("inf")
        period = max(1, min(self.metrics.sample_every, 2 * self._period, int(per_second)))
        self._period = period
        self._last_timed = started
        self._tick = period + 1  # the call below is not timed again
        out = self.handle(data, client, tcp)
        if out is not None:
            self.metrics.observe("tcp" if tcp else "udp", time.perf_counter() - started,
                                 len(out))
        return out

    def _negative_entry(self, data: bytes, qend: int, lowered: bytes, state: ServingState,
                        *, nodata: bool = False) -> Negative:
        """The fast path's negative answer (NXDOMAIN, NODATA or REFUSED) to
        the question ``lowered``, or False (the full path: a positive answer
        that ``questions`` leaves out, e.g. a qtype with a letter byte, or a
        class other than IN), decided by ``_negative`` and kept in
        ``state.negatives``. ``nodata``: the locality's entry said NODATA.

        A question whose type or class has a lower-case letter byte is decided
        every time and never kept: ``lower()`` maps another type (HTTPS 0x0041)
        onto the same key, so a kept entry could answer a question it was not
        decided for. Without such a byte the key's type and class are the
        query's own."""
        qtype = (data[qend - 4] << 8) | data[qend - 3]
        negative = self._negative(state, lowered, qtype, nodata=nodata)
        if not _LETTERS.intersection(lowered[-4:]):
            if len(state.negatives) >= NEGATIVE_CACHE_MAX:
                state.negatives.clear()
            state.negatives[lowered] = negative
        return negative

    def _negative(self, state: ServingState, lowered: bytes, qtype: int, *,
                  nodata: bool = False) -> Negative:
        """The ``Negative`` answer to the lower-cased question ``lowered``
        (name, type, class) of type ``qtype`` (as sent: a type byte can be a
        letter), or False for the full path; its counters are those of
        locality kind "none" (an answer that does not depend on locality)."""
        if lowered[-2:] != b"\x00\x01":  # (lower() leaves these two bytes as sent)
            return False  # not class IN
        table = state.table
        qname = lowered[:-4]
        shape = table.names.get(qname)
        rcode = NODATA
        aa = 0x04
        if shape is None:
            if (qtype in _FULL_PATH_QTYPES or not table.complete
                    or not wire.plain_name(qname)):
                return False
            resolver = state.resolver
            if resolver.in_zone(qname):
                if resolver.occluded(qname):  # a referral
                    return self._resolved(state, lowered, qtype)
                wild = resolver.wildcard_of(qname) if resolver.has_wildcards else None
                if wild is not None:
                    if type(table.get(wild, qtype)) is list:
                        return False  # per locality: ``_synthesized``
                    return self._resolved(state, lowered, qtype)
                rcode = wire.NXDOMAIN
            else:
                rcode, aa = wire.REFUSED, 0  # REFUSED: no AA, no SOA
        elif REFER in shape:  # at or below a zone cut
            if qtype in _FULL_PATH_QTYPES:
                return False
            return self._resolved(state, lowered, qtype)
        elif not nodata:
            if qtype in shape:
                if table.get(qname, qtype) != NODATA:
                    return False  # positive, not in ``questions``
            elif CHASE in shape or qtype in _FULL_PATH_QTYPES:
                return False
        return self._negative_reply(state, len(qname), rcode, aa)

    def _negative_reply(self, state: ServingState, qlen: int, rcode: int, aa: int) -> Negative:
        """The ``Negative`` with ``rcode`` for a question name of wire length
        ``qlen`` (``aa``: 0x04, with the SOA in authority; 0: neither)."""
        auth = b""
        if aa:
            auth = state.resolver.negative_authority(qlen) or b""
            if not auth and state.resolver.negative_soa is not None:
                return False  # an SOA the blob cannot express
        counts = b"\x00\x01\x00\x00" + (b"\x00\x01" if auth else b"\x00\x00")
        return (_flag_map(0x80 | aa, rcode), counts + b"\x00\x00", counts + b"\x00\x01",
                auth, self.metrics.counters(rcode, "none"))

    def _resolved(self, state: ServingState, lowered: bytes, qtype: int) -> Negative:
        """The resolver's reply to the lower-cased question ``lowered`` (of
        type ``qtype`` as sent) in the ``Negative`` shape, when it does not
        depend on the client's locality (else False: the full path): a
        referral, DS at a cut, or a static wildcard's synthesized answer.
        Built as the full path builds it (``Resolver.render``, question
        lower-cased); the bytes after the question point into the question
        only by offset, so they serve the question in any letter case."""
        resolver = state.resolver
        qname = lowered[:-4]
        ans = resolver.lookup(qname, qtype, "")
        if ans.depends:
            return False  # a geo-aware wildcard: answered per locality
        out = resolver.render(qid=0, qflags=0, question=lowered, labels=wire_to_labels(qname),
                              qtype=qtype, qclass=wire.C_IN, ans=ans, edns=None, scope=0,
                              limit=wire.MAX_UDP)
        counts = out[4:12]
        plus = counts[:6] + (((counts[6] << 8) | counts[7]) + 1).to_bytes(2, "big")
        rcode = out[3] & 0x0F
        return (_flag_map(out[2], rcode), counts, plus, out[12 + len(lowered):],
                self.metrics.counters(rcode, "none"))

    def _synthesized(self, data: bytes, qend: int, question: bytes, lowered: bytes,
                     context: Context, client: str, tcp: bool,
                     state: ServingState) -> bytes | None:
        """The reply to a name under a geo-aware wildcard (``*.shop``: a
        wildcard Ingress host) as ``handle`` joins a geo-aware name's, or None
        (the full path answers it), from what ``handle`` worked out (the end
        of the question, the question as sent and lower-cased, the header and
        OPT context). ``handle`` reaches it where ``_negative`` sent the name
        to the full path: it is in no table and its answer depends on the
        locality, so a ``Negative`` cannot hold it. Its per-locality entries
        are built once per name (``_synthesized_entries``) and kept in
        ``state.synthesized``; a reply over the size limit is left to the
        full path, which stays the reference."""
        if not state.resolver.has_wildcards:
            return None
        flags, limit, _, opt, loc, kind = context
        per = state.synthesized.get(lowered)
        if per is None:
            per = self._synthesized_entries(state, lowered)
            if len(state.synthesized) >= SYNTHESIZED_CACHE_MAX:
                state.synthesized.clear()
            state.synthesized[lowered] = per
        if per is False:
            return None
        if loc is None:
            loc, kind = self._client_locality(client, state)
        entry = per[loc]  # type: ignore[index]
        if type(entry) is tuple:
            counts, counts_opt, rest = entry
        else:  # NODATA for this locality: the SOA, as for a geo-aware name's
            negative = self._negative_reply(state, qend - 16, NODATA, 0x04)
            if negative is False:
                return None
            flagmap, counts, counts_opt, rest, _ = negative  # type: ignore[misc]
            flags = flagmap[flags]
        if qend + len(rest) + len(opt) > (TCP_LIMIT if tcp else limit):
            return None  # truncated by the full path
        out = b"".join((data[:2], flags, counts_opt if opt else counts, question, rest, opt))
        qtype = (data[qend - 4] << 8) | data[qend - 3]
        counter = self._positive[kind][tcp]
        counter[qtype] = counter.get(qtype, 0) + 1
        return out

    @staticmethod
    def _synthesized_entries(state: ServingState, lowered: bytes) -> list[Entry] | bool:
        """The per-locality entries of the lower-cased question ``lowered``
        when its name does not exist and a geo-aware wildcard answers it with
        per-locality records, else False. Built from the resolver's synthesized
        answers (owner rewritten to the name), one per distinct entry of the
        wildcard's own per-locality list (localities with the same records
        there have the same records here), encoded as the table encodes a
        geo-aware name (``answers.encode_entry``)."""
        if lowered[-2:] != b"\x00\x01" or _LETTERS.intersection(lowered[-4:]):
            return False  # not class IN, or a type ``lower()`` may have changed
        resolver = state.resolver
        qname = lowered[:-4]
        qtype = (lowered[-4] << 8) | lowered[-3]
        if (qtype in _FULL_PATH_QTYPES or not wire.plain_name(qname)
                or not resolver.in_zone(qname) or resolver.exists(qname)):
            return False
        own = _geo_wildcard(state, qname, qtype)
        if own is None:
            return False
        shared = state.wildcard_bytes.get(id(own))  # (the table keeps ``own`` alive)
        if shared is None:
            shared = state.wildcard_bytes[id(own)] = all(
                type(e) is not tuple or _owner_only(e) for e in own)
        if shared:
            return own  # the wildcard's own bytes serve every name under it
        labels = wire_to_labels(qname)
        made: dict[int, Entry] = {}
        out: list[Entry] = []
        for i, model in enumerate(own):
            entry = made.get(id(model))
            if entry is None:
                ans, _ = resolver.resolve(qname, qtype, resolver.localities[i])
                got = encode_entry(resolver, labels, len(qname), qtype, ans)
                if got is None:
                    return False
                entry = made[id(model)] = got
            out.append(entry)
        return out

    @staticmethod
    def _truncated(data: bytes, qend: int, f1: int, f2: int, opt: bytes) -> bytes:
        """TC=1 with the question and OPT only (``f1``/``f2``: the reply's flags
        before RD/CD are copied)."""
        return (data[:2] + bytes((f1 | 0x02 | (data[2] & 0x01), f2 | (data[3] & 0x10)))
                + b"\x00\x01\x00\x00\x00\x00" + (b"\x00\x01" if opt else b"\x00\x00")
                + data[12:qend] + opt)

    def _context(self, key: bytes, state: ServingState) -> Context | CookieContext | bool:
        """What a query's header (``key[:10]``: flags and counts) and OPT
        record (``key[10:]``, everything after the question) decide, worked
        out once per distinct ``key`` until the next swap: a ``Context``, or
        False (the full path: QR set, an opcode other than QUERY, counts other
        than QD=1 and AR=0/1, an OPT record the fast path does not take, or
        bytes after a question without one); with cookies on, a
        ``CookieContext`` for an OPT record with one well-formed COOKIE
        option (kept in ``state.cookie_contexts``, not in ``contexts``)."""
        if self.cookies is not None:
            known = state.cookie_contexts.get(key)
            if known is not None:
                return known
        # (reply flags, has the OPT); None: not for the fast path
        head = _HEADERS.get(key[:10])
        entry: Context | bool = False
        span: tuple[int, int] | bool | None = None
        if head is not None:
            raw = key[10:]
            if not head[1]:
                edns = None if raw else _NO_EDNS
            else:
                span = self._cookie_span(raw)
                edns = (None if span is False
                        else self._edns(raw, state, COOKIE_REPLY_LEN if span else 0))
            if edns is not None:
                entry = (head[0], *edns)
        if entry is not False and type(span) is tuple:
            return self._keep_cookie_context(key, state, entry, span)  # type: ignore[arg-type]
        if len(state.contexts) >= CONTEXT_CACHE_MAX:
            state.contexts.clear()
        state.contexts[key] = entry
        return entry

    def _cookie_span(self, raw: bytes) -> tuple[int, int] | bool | None:
        """Where the COOKIE option's data lies in the OPT record ``raw``
        (offsets into the context key), None when there is none (or cookies
        are off: the option is ignored then), False for the full path: more
        than one, or a length that gets FORMERR."""
        if self.cookies is None:
            return None
        spans = wire.option_spans(raw, wire.OPT_COOKIE)
        if not spans:
            return None
        start, end = spans[0]
        if len(spans) > 1 or not wire.cookie_well_formed(raw[start:end]):
            return False
        return start + 10, end + 10

    @staticmethod
    def _keep_cookie_context(key: bytes, state: ServingState, context: Context,
                             span: tuple[int, int]) -> CookieContext:
        """``context`` (of a key with a COOKIE option at ``span``) kept in
        ``state.cookie_contexts``, bounded as the other caches."""
        entry = CookieContext(context, span[0], span[1])
        if len(state.cookie_contexts) >= COOKIE_CONTEXT_MAX:
            state.cookie_contexts.clear()
        state.cookie_contexts[key] = entry
        return entry

    def _with_cookie(self, cookie: CookieContext, key: bytes, client: str,
                     tcp: bool) -> Context | bool:
        """The ``Context`` of this query: ``cookie``'s with the COOKIE option
        for ``client`` appended to its OPT records (counted), or False when
        the full path answers it (BADCOOKIE: it counts it then)."""
        assert self.cookies is not None  # a CookieContext exists only with cookies on
        option, result = self.cookies.reply(key[cookie.start:cookie.end], client)
        if result not in ACCEPTED and self.require_cookie and not tcp:
            return False
        self.metrics.cookies.count(result)
        flags, limit, opt, geo_opt, loc, kind = cookie.context
        return flags, limit, opt + option, geo_opt + option, loc, kind

    def _edns(self, raw: bytes, state: ServingState, extra: int = 0
              ) -> tuple[int, bytes, bytes, int | None, str] | None:
        """The OPT record ``raw``: (UDP limit, the reply's OPT record, the same
        with the ECS scope, locality index or None to locate by the client
        address, its metrics kind), or None (the full path). ``extra``: bytes
        of options the caller appends to both records (counted in RDLENGTH)."""
        parsed = wire.fast_opt(raw)
        if parsed is None:
            return None
        size, do, ecs = parsed
        limit = size if size < state.udp_max else state.udp_max
        head = state.opt_heads[2 if do else 1]
        loc: str | None = None
        kind = ""
        if ecs is None:
            opt = geo_opt = head + extra.to_bytes(2, "big")
        else:
            hit = self._ecs_locality(ecs[1], ecs[2], wire.ecs_address(ecs))
            loc, scope = (None, 0) if hit is None else hit
            head += (len(ecs) + 4 + extra).to_bytes(2, "big") + b"\x00\x08" + len(
                ecs).to_bytes(2, "big") + ecs[:3]
            opt = head + b"\x00" + ecs[4:]
            geo_opt = head + bytes((scope,)) + ecs[4:]
        index: int | None = None
        if loc is not None:
            kind = self._kinds.get(loc) or self._kind(loc)
            index = state.loc_index.get(loc, 0)
        return limit, opt, geo_opt, index, kind

    def _client_locality(self, client: str, state: ServingState) -> tuple[int, str]:
        """(locality index, metrics kind) of a client located by its address."""
        hit = state.clients.get(client)
        if hit is None:
            loc, _ = self.locator.locate(wire.packed_address(client), None)
            hit = (state.loc_index.get(loc, 0), self._kinds.get(loc) or self._kind(loc))
            if len(state.clients) >= CLIENT_CACHE_MAX:
                state.clients.clear()
            state.clients[client] = hit
        return hit

    def _kind(self, loc: str) -> str:
        kind = self._kinds[loc] = locality_kind(loc)
        if len(self._kinds) > 4096:
            self._kinds.clear()
        return kind

    def _slow(self, data: bytes, client: str, tcp: bool, *, counted: bool = False
              ) -> bytes | None:
        """The full path. ``counted``: the fast path counted the query's cookie."""
        self.slow_queries += 1
        proto = "tcp" if tcp else "udp"
        try:
            q = wire.parse_query(data)
        except DropPacket as exc:
            self.metrics.drop(exc.reason)
            return None
        except MalformedQuery as exc:
            flags = wire.reply_flags(exc.flags, rcode=wire.FORMERR, aa=False)
            self.metrics.request(proto, -1, wire.FORMERR, "none")
            if not tcp and _ixfr_question(exc.flags, exc.question):  # e.g. its SOA is bad
                self.metrics.transfers.count("udp", "formerr")
            return wire.short_reply(exc.qid, flags, exc.question, None)
        valid_cookie = True
        if self.cookies is not None and q.edns is not None:
            if q.edns.cookie_malformed:
                return self._malformed_cookie(q, proto)
            if q.edns.cookie is not None:
                q, valid_cookie = self._server_cookie(q, client, counted)
        state = self.state
        if state is None:
            flags = wire.reply_flags(q.flags, rcode=wire.SERVFAIL, aa=False)
            self.metrics.request(proto, q.qtype, wire.SERVFAIL, "none")
            return wire.short_reply(q.qid, flags, q.question, None)
        if not valid_cookie and not tcp and self.require_cookie:  # RFC 7873 5.2.3/5.2.4
            self.metrics.request(proto, q.qtype, wire.BADCOOKIE, "none")
            return state.resolver.error(q, wire.BADCOOKIE)
        # the state's knobs, as the fast path's (a reload changes both at the next state)
        limit = TCP_LIMIT if tcp else wire.udp_limit(q.edns,
                                                     state.resolver.server.edns_udp_size)
        loc, scope = ("", 0)
        out: bytes | None = None
        depends = False
        if (not tcp and q.qtype == wire.T_IXFR and q.opcode == wire.OP_QUERY
                and (q.edns is None or q.edns.version == 0)):
            out = udp_ixfr(self.transfers, q, data, client, state.resolver, limit,
                           self.metrics.transfers)
        if out is None:
            ecs = q.edns.ecs if q.edns is not None else None
            if q.qclass == wire.C_IN and q.opcode == wire.OP_QUERY and q.question is not None:
                loc, scope = self.locate(ecs, client)
            out, depends = state.resolver.respond(
                q, locality=loc, scope=scope, client=wire.packed_address(client), limit=limit)
        rcode = out[3] & 0x0F
        if q.edns is not None and q.edns.version > 0:
            rcode = wire.BADVERS
        if out[2] & 0x02:
            self.metrics.truncate(proto)
        self.metrics.request(proto, q.qtype, rcode, locality_kind(loc) if depends else "none")
        return out

    def _server_cookie(self, q: wire.Query, client: str, counted: bool
                       ) -> tuple[wire.Query, bool]:
        """``q`` (with a well-formed COOKIE option) with the reply's COOKIE
        option for ``client`` among its reply options, and whether its server
        cookie was valid; counted unless the fast path did."""
        assert self.cookies is not None and q.edns is not None and q.edns.cookie is not None
        option, result = self.cookies.reply(q.edns.cookie, client)
        if not counted:
            self.metrics.cookies.count(result)
        edns = dataclasses.replace(q.edns, reply_options=option)
        return dataclasses.replace(q, edns=edns), result in ACCEPTED

    def _malformed_cookie(self, q: wire.Query, proto: str) -> bytes:
        """FORMERR, without an OPT record, for a COOKIE option of a length
        RFC 7873 section 5.2.2 refuses; counted."""
        self.metrics.cookies.count("malformed")
        self.metrics.request(proto, q.qtype, wire.FORMERR, "none")
        flags = wire.reply_flags(q.flags, rcode=wire.FORMERR, aa=False)
        return wire.short_reply(q.qid, flags, q.question, None)

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
