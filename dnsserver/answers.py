"""AnswerTable: precomputed wire replies for the fast path.

Built once per Snapshot (never per query) by running the full resolver for
every key, so a precomputed reply is byte-identical to what the full path
produces. Keys are ``(qname lower-cased wire bytes, qtype, qclass, variant)``
where ``variant`` is ``wire.V_PLAIN`` (no EDNS), ``wire.V_EDNS`` or
``wire.V_EDNS_DO``. A value is either an ``Entry`` (the same reply for every
client) or a ``dict`` locality -> ``Entry`` (the answer differs by locality;
the ``""`` key is the unknown/fallback locality). Names whose answers do not
depend on locality share one entry across all localities, so only geo names
(and names whose CNAME chain reaches one) cost per-locality space.

The size class of the brief is realised per entry: ``Entry.full`` is the whole
reply and ``Entry.truncated`` the TC=1 reply; the fast path picks the
truncated one when the full one (plus ECS) exceeds the client's limit.

An ``Entry``'s bytes carry ID 0, RD=0 and CD=0; with EDNS the OPT record is
last and has no options, so ECS is appended by patching its RDLENGTH.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from dnsserver import wire
from dnsserver.resolver import Answer, Resolver, wire_to_labels

log = logging.getLogger("dnsserver.answers")

# qtypes precomputed for every name besides the types it has
COMMON_QTYPES = (wire.T_A, wire.T_AAAA, wire.T_HTTPS, wire.T_ANY, wire.T_CNAME, wire.T_TXT)
DEFAULT_MAX_KEYS = 2_000_000
_VARIANTS = (wire.V_PLAIN, wire.V_EDNS, wire.V_EDNS_DO)

Entry = tuple[bytes, bytes]  # (full reply, truncated reply)
Value = Entry | dict[str, Entry]
Key = tuple[bytes, int, int, int]


@dataclass(frozen=True, slots=True)
class TableStats:
    keys: int
    entries: int
    per_locality_keys: int
    complete: bool  # False when the key bound stopped the build
    build_seconds: float


class AnswerTable:
    """Immutable mapping Key -> Value (read by the fast path with ``get``)."""

    __slots__ = ("get", "stats")

    def __init__(self, table: dict[Key, Value], stats: TableStats) -> None:
        self.get = table.get
        self.stats = stats

    @classmethod
    def empty(cls) -> AnswerTable:
        return cls({}, TableStats(0, 0, 0, True, 0.0))

    @classmethod
    def build(cls, resolver: Resolver, *, max_keys: int = DEFAULT_MAX_KEYS) -> AnswerTable:
        started = time.perf_counter()
        table: dict[Key, Value] = {}
        entries = 0
        per_loc_keys = 0
        complete = True
        edns_size = resolver.server.edns_udp_size
        opts = {
            wire.V_PLAIN: None,
            wire.V_EDNS: wire.opt_record(edns_size, do=False),
            wire.V_EDNS_DO: wire.opt_record(edns_size, do=True),
        }
        for name in resolver.names():
            if len(table) + 3 * len(COMMON_QTYPES) > max_keys:
                complete = False
                break
            bodies = _Bodies(resolver, name)
            for qtype in sorted(resolver.types_at(name) | set(COMMON_QTYPES)):
                question = name + qtype.to_bytes(2, "big") + b"\x00\x01"
                first = resolver.lookup(name, qtype, "")
                if not first.depends:
                    body = bodies.pack(first, qtype)
                    for v in _VARIANTS:
                        table[(name, qtype, wire.C_IN, v)] = _entry(first, body, question, opts[v])
                        entries += 1
                    continue
                per_loc_keys += 3
                maps: dict[int, dict[str, Entry]] = {v: {} for v in _VARIANTS}
                made: dict[tuple[int, Answer], Entry] = {}
                for loc in resolver.localities:
                    ans = first if loc == "" else resolver.lookup(name, qtype, loc)
                    packed = bodies.pack(ans, qtype)
                    for v in _VARIANTS:
                        entry = made.get((v, ans))
                        if entry is None:
                            entry = made[(v, ans)] = _entry(ans, packed, question, opts[v])
                            entries += 1
                        maps[v][loc] = entry
                for v in _VARIANTS:
                    table[(name, qtype, wire.C_IN, v)] = maps[v]
        # CoreDNS's upstream health probe (". IN NS", RD=1) and its cousins: fast REFUSED
        for qtype in (wire.T_NS, wire.T_SOA, wire.T_A):
            question = b"\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
            for v in _VARIANTS:
                flags = wire.reply_flags(0, rcode=wire.REFUSED, aa=False)
                reply = wire.short_reply(0, flags, question, opts[v])
                table[(b"\x00", qtype, wire.C_IN, v)] = (reply, reply)
        stats = TableStats(len(table), entries, per_loc_keys, complete,
                           time.perf_counter() - started)
        if not complete:
            log.warning("answer_table_bounded keys=%d max_keys=%d", len(table), max_keys)
        return cls(table, stats)


class _Bodies:
    """Packed bodies for one name: one dnslib pack per distinct ``Answer``.

    The same sections under another qtype differ only in the question's qtype
    bytes (compression pointers never point into them), so those are patched.
    """

    def __init__(self, resolver: Resolver, name: bytes) -> None:
        self.resolver = resolver
        self.labels = wire_to_labels(name)
        self.qtype_at = 12 + len(name)
        self.bodies: dict[Answer, bytes] = {}

    def pack(self, ans: Answer, qtype: int) -> bytes:
        body = self.bodies.get(ans)
        if body is None:
            body = self.bodies[ans] = self.resolver.pack_body(self.labels, qtype, wire.C_IN, ans)
        at = self.qtype_at
        return body[:at] + qtype.to_bytes(2, "big") + body[at + 2:]


def _entry(ans: Answer, body: bytes, question: bytes, opt: bytes | None) -> Entry:
    flags = wire.reply_flags(0, rcode=ans.rcode, aa=True)
    full = wire.assemble(0, flags, question, body, opt)
    truncated = wire.short_reply(0, flags | wire.TC, question, opt)
    return full, truncated
