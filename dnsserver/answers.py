"""AnswerTable: precomputed wire replies for the fast path.

Built from a ``Resolver`` (never per query) by running the full resolver for
every name, so a precomputed reply is byte-identical to what the full path
produces. ``questions`` maps the lower-cased question as it is on the wire
(name, type, class IN) to a ``Value``: the fast path's one lookup. ``names``
maps each lower-cased wire name to its ``Shape`` (the qtypes stored for it,
one shared tuple per distinct set), which the negative answers need. The
qtypes with a byte that ``bytes.lower`` changes or produces (A-Z, a-z: HTTPS
is 0x0041), which a lower-cased query could not tell apart, are kept in
``letters`` by (name, qtype) instead, and the fast path leaves their positive
answers to the full path.

A ``Value`` is

- a ``Reply`` (a 3-tuple): a positive reply (QR and AA, NOERROR) as its
  header counts without and with an OPT record and the sections after the
  question; the fast path joins the client's ID, flags from its RD/CD, the
  counts, the client's question bytes, the sections and the OPT record (with
  ECS) of the query's EDNS variant, and never slices the stored parts;
- ``NODATA`` (an int): the negative reply, made per query from the
  Resolver's SOA blob (``Resolver.negative_authority``), so an SOA serial
  change never touches the table;
- a ``list`` of the above, one per locality in ``Resolver.localities``
  order (index 0 is the unknown/fallback locality ``""``), when the answer
  differs by client locality: the fast path picks by a small int, without
  hashing the locality.

A qtype missing from a name's shape means NODATA, unless the shape has
``CHASE`` (the name owns a CNAME: other qtypes follow it; full path) or is
``(REFER,)`` (the name is at or below a zone cut: no entries; the handler
asks the resolver once per question, ``QueryHandler._negative``). A
name missing from ``names`` means NXDOMAIN when the table is ``complete`` and
the name is in the zone. Answers that are not plain (a CNAME chain that ends
in NXDOMAIN/NODATA carries the SOA) are left out and take the full path.

``derive`` rebuilds only the names whose records changed (plus the names
whose CNAME chains or glue reach them, and the apex) in maps shared with the
table it derives from: the cost follows the changed names, not the zone. A
zone cut that comes or goes brings the names below it (``Resolver.derive``
returns them); a CNAME into a name that does not exist depends on the names
that decide whether NXDOMAIN, a wildcard or a referral answers it
(``Resolver.wildcard_deps``). Names that do not exist are not in the table:
their answers (NXDOMAIN, wildcard synthesis, referrals) are worked out per
serving state, which a new Snapshot replaces.

Memory (a large zone has hundreds of thousands of names): replies equal
within a name are one object, a name's per-locality lists equal across
qtypes are one list, names share their shapes (no dict per name), and the
dependency maps hold the table's own name objects (equal forward tuples
shared).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

from dnsserver import wire
from dnsserver.names import name_to_wire, wire_to_labels
from dnsserver.resolver import Answer, Resolver

log = logging.getLogger("dnsserver.answers")

# qtypes precomputed for every name besides the types it has
COMMON_QTYPES = (wire.T_ANY,)
CHASE_QTYPES = (wire.T_A, wire.T_AAAA, wire.T_HTTPS, wire.T_TXT, wire.T_ANY)
_COMPOSE_QTYPES = frozenset(CHASE_QTYPES) - {wire.T_ANY}
DEFAULT_MAX_KEYS = 4_000_000
# record types whose target name an answer depends on (the chain goes on
# there; NS answers carry the target's addresses): a target that appears,
# goes or changes rebuilds the name (``AnswerTable.derive``)
_TARGET_TYPES = frozenset(("CNAME", "NS"))
NODATA = 0
CHASE = -1
REFER = -2

# a positive reply: (QD/AN/NS/AR counts, the same with AR + 1 for an OPT
# record, the sections after the question); counts objects are shared
Reply = tuple[bytes, bytes, bytes]
Entry = Reply | int
# a chain's tail: record count and the records' parts joined by the owner pointer
Tail = tuple[int, tuple[bytes, ...]]


@dataclass(frozen=True, slots=True)
class Chain:
    """A static CNAME chain into a geo-aware name: the prefix is stored once
    and the target's per-locality tails are shared with every chain that
    ends there; ``reply`` joins a locality's ``Reply`` on first use."""

    an: int  # the prefix's ANCOUNT
    rrs: bytes  # the prefix's records as packed after the question
    ptr: bytes  # the compression pointer to the target name
    # the target's Tail, or its Tails by locality index (``Resolver.localities``)
    tails: Tail | list[Tail]
    # locality index -> the joined reply (at most one per locality of ``tails``)
    replies: dict[int, Reply] = field(default_factory=dict, compare=False, repr=False)
    # True when the answer depends on the client's locality (``tails`` is a list)
    geo: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "geo", type(self.tails) is list)

    def reply(self, loc: int) -> Reply:
        """The positive reply for a client in locality index ``loc`` (any
        index, 0 say, for a static tail)."""
        got = self.replies.get(loc)
        if got is None:
            tails = self.tails
            count, parts = cast(Tail, tails[loc] if type(tails) is list else tails)
            counts = b"\x00\x01" + (self.an + count).to_bytes(2, "big") + b"\x00\x00\x00\x00"
            got = (*_counts(counts), self.rrs + self.ptr.join(parts))
            if len(self.replies) >= _CHAIN_REPLIES_MAX:
                self.replies.clear()
            self.replies[loc] = got
        return got


Value = Entry | list[Entry] | Chain
Types = dict[int, Value]
# a name's stored qtypes, sorted (``CHASE`` first where the name owns a
# CNAME); names with the same qtypes share one tuple
Shape = tuple[int, ...]
_SHAPES: dict[Shape, Shape] = {}
Deps = tuple[bytes, ...]  # distinct names (a tuple: a fraction of a frozenset's size)
_EMPTY: Types = {}
# the entries of a name at or below a zone cut: its shape is ``(REFER,)``
_REFERRAL: Types = {REFER: NODATA}
_PTRS: dict[int, bytes] = {}  # compression pointer bytes by offset (chains share them)
_COUNTS: dict[bytes, tuple[bytes, bytes]] = {}  # header counts -> (them, with AR + 1)
_POSITIVE_FLAGS = (wire.QR | wire.AA).to_bytes(2, "big")
_CHAIN_REPLIES_MAX = 4096  # bounds a Chain's memo (localities are far fewer)


@dataclass(frozen=True, slots=True)
class TableStats:
    keys: int  # (name, qtype) values
    entries: int  # distinct reply byte strings
    per_locality_keys: int
    complete: bool  # False when the key bound stopped the build
    build_seconds: float
    names: int = 0
    rebuilt_names: int = 0  # names built by this table (all of them for a full build)


def question_key(name: bytes, qtype: int) -> bytes | None:
    """``questions``' key for (``name``, ``qtype``, IN), or None when a byte of
    ``qtype`` is a letter (its lower-cased form could be another qtype's)."""
    hi, lo = qtype >> 8, qtype & 0xFF
    if qtype < 0 or 0x41 <= (hi & 0xDF) <= 0x5A or 0x41 <= (lo & 0xDF) <= 0x5A:
        return None
    return name + bytes((hi, lo)) + b"\x00\x01"


def _shape(types: Types) -> Shape:
    """``types``' qtypes as the one shared tuple of them."""
    shape = tuple(sorted(types))
    return _SHAPES.setdefault(shape, shape) if len(_SHAPES) < 4096 else shape


class AnswerTable:
    """Immutable: ``names`` and ``questions`` (read by the fast path) plus what
    ``derive`` needs."""

    __slots__ = ("complete", "deps", "letters", "names", "questions", "rdeps", "stats")

    def __init__(self, stats: TableStats, rdeps: dict[bytes, Deps], deps: dict[bytes, Deps],
                 names: dict[bytes, Shape] | None = None,
                 questions: dict[bytes, Value] | None = None,
                 letters: dict[tuple[bytes, int], Value] | None = None) -> None:
        self.names: dict[bytes, Shape] = {} if names is None else names
        self.questions: dict[bytes, Value] = {} if questions is None else questions
        self.letters: dict[tuple[bytes, int], Value] = {} if letters is None else letters
        self.stats = stats
        self.complete = stats.complete
        # name -> the names whose answers contain records of it or go there
        # (``rdeps``), and its inverse, name -> those names (``deps``; names
        # without any are left out). ``derive`` replaces a rebuilt name's
        # edges with the ones it has now, found through ``deps``: an edge
        # that went away (a chain that moved, a name that went) does not
        # rebuild the name again.
        self.rdeps = rdeps
        self.deps = deps

    def get(self, qname: bytes, qtype: int) -> Value | None:
        """The stored value for (qname, qtype), None if not stored."""
        shape = self.names.get(qname)
        if shape is None or qtype not in shape:
            return None
        if qtype == CHASE:
            return NODATA
        key = question_key(qname, qtype)
        if key is None:
            return self.letters.get((qname, qtype))
        return self.questions.get(key)

    def _put(self, name: bytes, types: Types) -> None:
        """Store ``name``'s values, then its shape (dropping the qtypes that only
        its old shape had)."""
        old = self.names.get(name, ())
        for qtype in old:
            if qtype not in types:
                key = question_key(name, qtype)
                if key is not None:
                    self.questions.pop(key, None)
                else:
                    self.letters.pop((name, qtype), None)
        for qtype, value in types.items():
            if qtype >= 0:  # (not a marker: CHASE, REFER)
                key = question_key(name, qtype)
                if key is not None:
                    self.questions[key] = value
                else:
                    self.letters[(name, qtype)] = value
        self.names[name] = _shape(types)

    @classmethod
    def empty(cls) -> AnswerTable:
        return cls(TableStats(0, 0, 0, False, 0.0), {}, {})

    @classmethod
    def build(cls, resolver: Resolver, *, max_keys: int | None = None) -> AnswerTable:
        """Every name's entries, up to ``max_keys`` questions (default
        ``DEFAULT_MAX_KEYS``, read at each call); beyond it the table is
        incomplete and the rest takes the full path."""
        if max_keys is None:
            max_keys = DEFAULT_MAX_KEYS
        started = time.perf_counter()
        b = _Builder(resolver)
        table = cls(TableStats(0, 0, 0, True, 0.0), {}, {})
        complete = True
        every = resolver.names()
        for name in every:
            if b.keys >= max_keys:
                complete = False
                break
            table._put(name, b.name(name))
        stats = b.stats(len(table.names), complete, time.perf_counter() - started,
                        len(table.names))
        if not complete:
            log.warning("answer_table_bounded keys=%d max_keys=%d", b.keys, max_keys)
        rdeps, deps = _link(b.deps, every)
        return cls(stats, rdeps, deps, table.names, table.questions, table.letters)

    def derive(self, resolver: Resolver, changed: Iterable[bytes]) -> AnswerTable:
        """The table for ``resolver`` (derived from this table's resolver with
        ``Resolver.derive``), rebuilding ``changed`` names (with the names whose
        existence changed), the apex and every name whose answers include them
        or lead to them: a name that appeared gets its entries, one that went
        loses them.

        O(rebuilt names): the maps are shared with this table and updated in
        place, one question at a time (a query, which reads one question,
        sees its old answer or its new one); the returned object carries
        the new stats. All new entries are built before the first
        assignment, so an exception leaves this table unchanged."""
        started = time.perf_counter()
        todo = {resolver.zone, *changed}
        for name in list(todo):
            todo.update(self.rdeps.get(name, ()))
        names = self.names
        b = _Builder(resolver)
        built: list[tuple[bytes, Types]] = []
        gone: list[bytes] = []
        for name in todo:
            if not resolver.exists(name):
                if name in names:
                    gone.append(name)
            elif self.complete or name in names:  # (skip one beyond an incomplete bound)
                built.append((name, b.name(name)))
        rdeps, deps = self.rdeps, self.deps
        for name, types in built:
            self._put(name, types)
        for name in gone:
            self._put(name, {})
            del names[name]
        # Every name whose dependencies can have changed was rebuilt (its own
        # records or a name its answers reached changed): its edges become
        # the ones it has now. A name that went has none; the names that
        # still lead to it keep theirs, so they are rebuilt when it comes back.
        for name, _ in built:
            _relink(rdeps, deps, name, b.deps.get(name, ()))
        for name in gone:
            _relink(rdeps, deps, name, ())
        stats = b.stats(len(names), self.complete, time.perf_counter() - started,
                        len(built) + len(gone))
        return AnswerTable(stats, rdeps, deps, names, self.questions, self.letters)


def _relink(rdeps: dict[bytes, Deps], deps: dict[bytes, Deps], name: bytes,
            now: Deps) -> None:
    """Make ``name``'s edges those to ``now`` (its targets as just built,
    sorted). Unchanged targets, a rebuild's usual case, cost one comparison."""
    was = deps.get(name, ())
    if was == now:
        return
    for t in was:
        if t not in now:
            kept = tuple(n for n in rdeps.get(t, ()) if n != name)
            if kept:
                rdeps[t] = kept
            else:
                rdeps.pop(t, None)
    for t in now:
        if t not in was:
            rdeps[t] = (*rdeps.get(t, ()), name)
    if now:
        deps[name] = now
    else:
        deps.pop(name, None)


def encode_entry(resolver: Resolver, labels: wire.Name, qlen: int, qtype: int,
                 ans: Answer) -> Entry | None:
    """The table's entry for the answer ``ans`` to (``labels``, ``qtype``, IN),
    ``qlen`` the name's wire length: NODATA, a ``Reply`` (the bytes after the
    question), or None when the fast path cannot serve it (NXDOMAIN, a CNAME
    chain ending negative, a reply that is not plainly positive)."""
    if resolver.negative_body(ans, qlen) is not None:
        return NODATA if ans.rcode == wire.NOERROR else None
    if ans.authority:
        return None  # CNAME chain ending negative: carries the SOA
    flags = wire.reply_flags(0, rcode=ans.rcode, aa=True).to_bytes(2, "big")
    if flags != _POSITIVE_FLAGS:
        return None  # not a plain positive reply: full path
    body = resolver.pack_body(labels, qtype, wire.C_IN, ans)
    return (*_counts(body[4:12]), body[12 + qlen + 4:])


def _counts(counts: bytes) -> tuple[bytes, bytes]:
    """``counts`` and the same with ARCOUNT + 1, as shared objects."""
    pair = _COUNTS.get(counts)
    if pair is None:
        plus = counts[:6] + ((counts[6] << 8 | counts[7]) + 1).to_bytes(2, "big")
        pair = (counts, plus)
        if len(_COUNTS) < 4096:
            _COUNTS[counts] = pair
    return pair


def _link(deps: dict[bytes, Deps], names: list[bytes]
          ) -> tuple[dict[bytes, Deps], dict[bytes, Deps]]:
    """``deps`` (name -> its targets) inverted (target -> the names that depend
    on it) and as kept (equal target tuples shared), each target the object
    of ``names`` (sorted; the table's own keys) where that holds the name:
    no second copy."""
    canon: dict[bytes, bytes] = {}
    out: dict[bytes, list[bytes]] = {}
    shared: dict[Deps, Deps] = {}
    forward: dict[bytes, Deps] = {}
    for name, targets in deps.items():
        for t in targets:
            c = canon.get(t)
            if c is None:
                i = bisect.bisect_left(names, t)
                c = canon[t] = names[i] if i < len(names) and names[i] == t else t
            out.setdefault(c, []).append(name)
        kept = tuple(canon[t] for t in targets)
        forward[name] = shared.setdefault(kept, kept)
    return {t: tuple(s) for t, s in out.items()}, forward


class _Builder:
    """Builds one name's ``Types`` at a time; counts for ``TableStats``."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.keys = 0
        self.entries = 0
        self.per_loc = 0
        self.deps: dict[bytes, Deps] = {}
        self._wire_names: dict[str, bytes] = {}
        self._tails: dict[tuple[bytes, int], tuple[wire.Name, Tail | list[Tail]] | None] = {}

    def stats(self, names: int, complete: bool, seconds: float, rebuilt: int) -> TableStats:
        return TableStats(self.keys, self.entries, self.per_loc, complete, seconds, names,
                          rebuilt)

    def name(self, name: bytes) -> Types:
        r = self.resolver
        if r.occluded(name):
            return _REFERRAL  # every answer is the resolver's referral (or DS NODATA)
        types_at = r.types_at(name)
        if not types_at:
            return _EMPTY  # empty non-terminal (or nothing servable): NODATA for all
        chase = wire.T_CNAME in types_at
        qtypes = types_at | set(CHASE_QTYPES if chase else COMMON_QTYPES)
        out: Types = {CHASE: NODATA} if chase else {}
        bodies: dict[Answer, Entry | None] = {}
        per_locs: list[list[Entry]] = []  # this name's, one per distinct content
        labels = wire_to_labels(name)
        deps: set[bytes] = set()
        geo = r.is_geo(name)

        def encode(ans: Answer, qtype: int) -> Entry | None:
            if ans in bodies:
                return bodies[ans]
            for rec in (*ans.answer, *ans.additional):
                if rec.name != presentation:
                    deps.add(self._wire(rec.name))
                if rec.rtype in _TARGET_TYPES:  # where the chain (or glue) goes,
                    target = self._wire(rec.value)  # whether it exists yet or not
                    deps.add(target)
                    if rec.rtype == "CNAME" and not r.exists(target) and r.in_zone(target):
                        # answered by NXDOMAIN, a wildcard or a referral: what
                        # decides which (``Resolver.wildcard_deps``)
                        deps.update(r.wildcard_deps(target))
            for rec in ans.authority:  # a referral after a CNAME: the cut, its glue
                if rec.rtype == "NS":
                    deps.add(self._wire(rec.name))
                    deps.add(self._wire(rec.value))
            entry = encode_entry(r, labels, len(name), qtype, ans)
            if type(entry) is tuple:
                self.entries += 1
            bodies[ans] = entry
            return entry

        presentation = _presentation(labels)
        for qtype in sorted(qtypes):
            first, touched = r.resolve(name, qtype, "")
            if not touched:
                entry = encode(first, qtype)
                if entry is not None:
                    out[qtype] = entry
                    self.keys += 1
                continue
            if not geo:  # a static chain into a geo-aware name
                chain = self._chain(name, labels, qtype, first, deps)
                if chain is not None:
                    out[qtype] = chain
                    self.keys += 1
                    self.per_loc += type(chain.tails) is list
                continue
            answers = self._per_locality(name, qtype, first, presentation)
            if len(set(answers.values())) == 1:
                entry = encode(first, qtype)
                if entry is not None:
                    out[qtype] = entry
                    self.keys += 1
                continue
            per: list[Entry] = []
            for loc in r.localities:
                e = encode(answers[loc], qtype)
                if e is None:
                    break
                per.append(e)
            else:
                out[qtype] = next((d for d in per_locs if d == per), per)
                if out[qtype] is per:
                    per_locs.append(per)
                self.keys += 1
                self.per_loc += 1
        deps.discard(name)
        if deps:
            self.deps[name] = tuple(sorted(deps))
        return out

    def _per_locality(self, name: bytes, qtype: int, first: Answer,
                      presentation: str) -> dict[str, Answer]:
        """Every locality's answer for a geo-aware name: one resolve per group
        of localities with the same records, unless an answer leaves the name
        (a CNAME), which may then differ inside a group."""
        r = self.resolver
        out: dict[str, Answer] = {}
        for group in r.geo_groups(name):
            ans = first if group[0] == "" else r.resolve(name, qtype, group[0])[0]
            if any(rec.name != presentation for rec in ans.answer):
                return {loc: r.resolve(name, qtype, loc)[0] for loc in r.localities}
            for loc in group:
                out[loc] = ans
        return out

    def _chain(self, name: bytes, labels: wire.Name, qtype: int, first: Answer,
               deps: set[bytes]) -> Chain | None:
        """The static CNAME prefix of a chain that ends in a geo-aware name,
        with that name's per-locality records (``Chain``), or None (full path)."""
        if qtype not in _COMPOSE_QTYPES:
            return None
        r = self.resolver
        recs = first.answer
        k = 0
        while k < len(recs) and recs[k].rtype == "CNAME":
            k += 1
        if k == 0:
            return None
        prefix = tuple(r.rr(rec) for rec in recs[:k])
        target_labels = prefix[-1][2][0]
        target = self._wire(recs[k - 1].value)
        if not r.is_geo(target) or any(r.is_geo(self._wire(rec.name)) for rec in recs[:k]):
            return None
        tails = self._tail(target, qtype)
        if tails is None or tails[0] != target_labels:
            return None
        offsets: dict[wire.Name, int] = {}
        body = wire.pack_message(labels, qtype, wire.C_IN, (prefix, (), ()), offsets)
        at = offsets.get(target_labels)
        if at is None:
            return None
        for rec in recs[:k]:
            deps.add(self._wire(rec.name))
        deps.add(target)
        self.entries += 1
        ptr = _PTRS.get(at)
        if ptr is None:
            ptr = _PTRS[at] = bytes((0xC0 | (at >> 8), at & 0xFF))
        return Chain(k, body[12 + len(name) + 4:], ptr, tails[1])

    def _tail(self, target: bytes, qtype: int
              ) -> tuple[wire.Name, Tail | list[Tail]] | None:
        """``target``'s records for ``qtype`` per locality as ``Tail`` s (owner
        name left out), or None when an answer is not plain records without
        names in their data (negative, CNAME, glue)."""
        key = (target, qtype)
        if key in self._tails:
            return self._tails[key]
        r = self.resolver
        owner: wire.Name | None = None
        made: dict[Answer, Tail] = {}
        per: dict[str, Tail] = {}
        result: tuple[wire.Name, Tail | list[Tail]] | None = None
        for group in r.geo_groups(target):
            ans = r.resolve(target, qtype, group[0])[0]
            tail = made.get(ans)
            if tail is None:
                if not ans.answer or ans.authority or ans.additional or ans.rcode:
                    break
                parts = [b""]
                for rec in ans.answer:
                    own, fixed, rdata = r.rr(rec)
                    if owner is None:
                        owner = own
                    if own != owner or any(type(p) is not bytes for p in rdata):
                        break
                    data = b"".join(rdata)  # type: ignore[arg-type]
                    parts.append(fixed + len(data).to_bytes(2, "big") + data)
                else:
                    tail = made[ans] = (len(ans.answer), tuple(parts))
                if tail is None:
                    break
            for loc in group:
                per[loc] = tail
        else:
            assert owner is not None
            result = (owner, per[""] if len(made) == 1 else [per[loc] for loc in r.localities])
        self._tails[key] = result
        return result

    def _wire(self, name: str) -> bytes:
        w = self._wire_names.get(name)
        if w is None:
            w = self._wire_names[name] = name_to_wire(name)
        return w


def _presentation(labels: tuple[bytes, ...]) -> str:
    return "".join(lab.decode("ascii", "replace") + "." for lab in labels) or "."
