"""The full query path: Snapshot + query + client locality -> reply bytes.

Knows nothing of sockets. ``Resolver`` is built once per Snapshot; it indexes
the records, converts them to dnslib RRs once, and answers:

- ``lookup(qname, qtype, locality)`` -> ``Answer`` (in-zone resolution:
  CNAME chains, NXDOMAIN/NODATA with the SOA, minimal ANY, NS glue);
- ``render(...)`` -> the packed reply for one ``Answer`` (dnslib packs the
  sections, ``wire`` patches ID, flags, question and OPT);
- ``respond(query, ...)`` -> the reply for any parsed query (errors, CH class,
  NOTIFY, BADVERS, truncation; FORMERR for a meta-type question, REFUSED for
  AXFR/IXFR: ``current_soa`` answers an admitted IXFR over UDP).

``AnswerTable`` calls ``lookup`` and ``render`` at build time, so precomputed
replies and full-path replies are the same bytes.

Wildcards (RFC 4592): a name that does not exist, whose closest encloser (its
longest existing ancestor; empty non-terminals exist) has a ``*`` child, is
answered from that wildcard's records with the owner rewritten to the query
name (``Synthesized``), CNAMEs chased and ANY minimal as for other names, NODATA
(with the SOA) for a type the wildcard lacks; a geo-aware wildcard answers per
client locality. A query for the literal ``*`` name gets its records.

Delegations: a static NS RRset below the apex is a zone cut. The cut name and
every name below it get a referral (NOERROR, AA=0, no answer, the cut's NS
RRset in authority, glue A/AAAA for in-zone nameserver names in additional),
except DS at the cut itself, which the parent answers (NODATA with the SOA:
fedns has no DNSSEC). Records below a cut other than glue are not served
(config refuses them), and wildcards do not match across a cut. A CNAME chain
that runs into a delegated name stops there with the referral in authority
(AA=1: the first answer is ours; RFC 1034 4.3.2 step 3b).

Helpers with one job each live beside it: ``names`` (name conversions),
``records`` (records -> packed RRs), ``recordindex`` (a name's records as the
index holds them, the records of given names) and ``synthesis`` (wildcard
synthesis).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from config.model import Server
from dnsserver import wire
from dnsserver.names import name_to_wire, suffix_at_label
from dnsserver.recordindex import Static, flat_static, has_ns, records_of, scan_records
from dnsserver.records import Interner, code_of, compile_record, qtype_code
from dnsserver.synthesis import Synthesized, owned_by
from healthwatch.snapshot import UNKNOWN, Record, Snapshot

log = logging.getLogger("dnsserver.resolver")

MAX_CHAIN = 8  # CNAME hops chased inside the zone
_VARIES_MEMO_MAX = 65536
_WIRE_MEMO_MAX = 8192  # CNAME targets -> wire names
_TYPED_MAX = 4096  # geo answers -> records by type
_PACKED_MAX = 16384  # packed records kept (the table build packs name by name)
# Resolver.derive's plan: (name, static records or None) and (name, geo
# answers or None) per changed name, the names that appear, those that go
_DerivePlan = tuple[list[tuple[bytes, "Static | None"]],
                    list[tuple[bytes, "Mapping[str, tuple[Record, ...]] | None"]],
                    list[bytes], list[bytes]]


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    depends: bool = False  # differs by client locality (ECS scope applies)
    aa: bool = True  # False for a referral (a zone cut below the apex)


class Resolver:
    """Answers queries from one Snapshot (immutable once built)."""

    def __init__(self, snapshot: Snapshot, server: Server) -> None:
        self.snapshot = snapshot
        self.server = server
        self.zone = name_to_wire(snapshot.zone)
        self._zone_suffix = self.zone
        # The per-name maps hold in-zone names only (nothing else is served).
        # A name exists when it is in ``_static``, ``_geo`` or ``_ents``.
        self._static: dict[bytes, Static] = {}
        # the Snapshot's own per-locality mappings (not copied: records are
        # checked and grouped by type when used, ``_by_type``)
        self._geo: dict[bytes, Mapping[str, tuple[Record, ...]]] = {}
        self._ents: set[bytes] = set()  # empty non-terminals (and the apex)
        # zone cuts (names below the apex with static NS records, not
        # wildcards) and wildcard names (first label ``*``) that have records
        self._cuts: set[bytes] = set()
        self._wilds: set[bytes] = set()
        # name -> how many existing names sit right below it (what ``derive``
        # needs to tell whether a name that loses its records stays an empty
        # non-terminal, and which empty non-terminals go with it)
        self._children: dict[bytes, int] = {}
        # caches shared with derived Resolvers, each bounded
        self._packed: dict[Record, wire.PackedRR] = {}
        self._interner = Interner()
        self._wire_memo: dict[str, bytes] = {}
        self._typed: dict[int, tuple[tuple[Record, ...], dict[int, tuple[Record, ...]]]] = {}
        self._bad: set[Record] = set()
        self._varies_memo: dict[tuple[bytes, int], bool] = {}
        static: dict[bytes, dict[int, list[Record]]] = {}
        for rec in snapshot.records:
            code = self._code(rec)
            if code is None:
                continue
            wname = name_to_wire(rec.name)
            if self.in_zone(wname):
                static.setdefault(wname, {}).setdefault(code, []).append(rec)
        self._static = {n: flat_static(per) for n, per in static.items()}
        zone = self.zone
        for wname, per in static.items():
            if wname[:2] == _WILD:
                self._wilds.add(wname)
            elif wire.T_NS in per and wname != zone:
                self._cuts.add(wname)
        for name, per_loc in snapshot.geo.items():
            try:
                wname = name_to_wire(name)
            except ValueError as exc:
                log.warning("geo_name_skipped name=%r error=%s", name, exc)
                continue
            if self.in_zone(wname):
                self._geo[wname] = per_loc
                if wname[:2] == _WILD:
                    self._wilds.add(wname)
        locs = dict.fromkeys([UNKNOWN, *snapshot.localities])
        for per_loc in snapshot.geo.values():
            locs.update(dict.fromkeys(per_loc))
        self.localities: tuple[str, ...] = tuple(locs)
        ents, geo = self._ents, self._geo
        for wname in [*self._static, *self._geo]:
            i = 0
            while wname[i:] != zone:  # its ancestors up to the apex
                i += 1 + wname[i]
                suffix = wname[i:]
                if suffix in ents or suffix in self._static or suffix in geo:
                    break
                ents.add(suffix)
        if zone not in self._static and zone not in geo:
            ents.add(zone)
        children = self._children
        for wname in {*self._static, *self._geo, *ents}:
            if wname != zone:
                parent = wname[1 + wname[0]:]
                children[parent] = children.get(parent, 0) + 1
        soa = self._typed_static(self.zone).get(wire.T_SOA, ())
        self._set_soa(soa[0] if soa else None)

    def _set_soa(self, rec: Record | None) -> None:
        """The negative-answer SOA (RFC 2308: TTL = min(TTL, MINIMUM)) and its
        wire parts for ``negative_authority``."""
        self.soa = rec  # the apex SOA as configured (NOTIFY's hint, its serial)
        self._soa: Record | None = None
        self._soa_parts: tuple[bytes, bytes, bytes, bytes, bytes] | None = None
        self._neg_blobs: dict[int, bytes] = {}
        if rec is None:
            return
        try:
            minimum = int(rec.value.split()[-1])
        except (ValueError, IndexError):
            minimum = rec.ttl
        self._soa = Record(rec.name, rec.rtype, min(rec.ttl, minimum), rec.value)
        if self._rr(self._soa) is None:
            return
        try:
            mname, rname, *nums = self._soa.value.split()
            ints = b"".join(int(x).to_bytes(4, "big") for x in nums)
            if len(nums) != 5:
                raise ValueError("SOA needs 5 numbers")
            m, r = name_to_wire(mname), name_to_wire(rname)
        except (ValueError, OverflowError):
            return  # served through dnslib (rare: odd SOA presentation)
        self._soa_parts = (
            b"\x00\x06\x00\x01" + self._soa.ttl.to_bytes(4, "big"),
            self._zone_relative(m), self._zone_relative(r), ints,
            b"",
        )

    def _zone_relative(self, name: bytes) -> bytes:
        """Labels of ``name`` before the zone apex (a pointer follows), or the
        whole name with a marker when it lies outside the zone."""
        if self.in_zone(name):
            return name[:len(name) - len(self.zone)]
        return b"\xff" + name  # 0xff: not compressed (no valid label starts so)

    @property
    def negative_soa(self) -> Record | None:
        return self._soa

    def negative_authority(self, qlen: int) -> bytes | None:
        """The authority section of an NXDOMAIN/NODATA reply (the SOA, RFC 2308)
        for an in-zone question name of ``qlen`` wire bytes; None without a
        usable SOA. Names in it are compressed against the zone apex suffix of
        the question (offset ``12 + qlen - len(zone)``), so one blob per
        question length serves every name: the fast path and the full path
        both use it and send the same bytes."""
        blob = self._neg_blobs.get(qlen)
        if blob is not None:
            return blob
        parts = self._soa_parts
        if parts is None:
            return None
        at = 12 + qlen - len(self.zone)
        ptr = bytes((0xC0 | (at >> 8), at & 0xFF))
        head, m, r, ints, _ = parts
        rdata = b"".join(x[1:] if x[:1] == b"\xff" else x + ptr for x in (m, r)) + ints
        blob = ptr + head + len(rdata).to_bytes(2, "big") + rdata
        if len(self._neg_blobs) < 512:
            self._neg_blobs[qlen] = blob
        return blob

    def derive(self, snapshot: Snapshot, changed: Iterable[str]
               ) -> tuple[Resolver, set[bytes]] | None:
        """A Resolver for ``snapshot``, updating this one's per-name maps in
        place for the names in ``changed`` (presentation names whose records
        may differ; the apex is always redone), and the names besides those
        whose existence changed with them: empty non-terminals that appeared
        above a new name or went with the last name below them; and when a
        zone cut came or went, the names below it (one pass over the names:
        their answers become referrals, or stop being). O(changed
        names): the records of a name are found by bisection in
        ``snapshot.records`` (sorted by name, as the planner makes them; a
        linear scan when they are not).

        The maps are shared: each changed name's entry is replaced with one
        dict assignment, so a query on this (old) Resolver sees either a
        name's old records or its new ones. The per-Snapshot parts (the
        Snapshot, the SOA and its blobs) live in the returned object only.
        Nothing is changed when the result is None: another zone or new
        localities; build a new ``Resolver`` then."""
        if snapshot.zone != self.snapshot.zone:
            return None
        if not set(self.localities).issuperset(snapshot.localities):
            return None
        todo = {str(n) for n in changed}
        todo.add(self.snapshot.zone)
        plan = self._derive_plan(snapshot, todo, records_of(snapshot.records, todo))
        if plan is not None and (plan[2] or plan[3]):
            # a name appears or goes: bisection found its records; a scan
            # makes sure (records not sorted can hide a name's records from
            # a bisection), at the cost of one pass over the Snapshot
            plan = self._derive_plan(snapshot, todo, scan_records(snapshot.records, todo))
        if plan is None:
            return None
        statics, geos, added, removed = plan
        for wname, per in statics:  # nothing can fail from here on
            if per is None:
                self._static.pop(wname, None)
            else:
                self._static[wname] = per
        for wname, geo in geos:
            if geo is None:
                self._geo.pop(wname, None)
            else:
                self._geo[wname] = geo
        cuts_moved = self._mark(statics)
        # names that go first (a name before the names below it), then the
        # names that appear: ``_link`` asks whether a parent exists, which
        # must already hold for the new Snapshot
        flipped: set[bytes] = set()
        for wname in sorted(removed, key=len):
            self._unlink(wname, flipped)
        for wname in added:
            self._link(wname, flipped)
        for cut in cuts_moved:  # names below a cut that came or went: referrals now, or not
            flipped.update(self._below(cut))
        new = copy.copy(self)
        new.snapshot = snapshot
        new._varies_memo = {}
        soa = new._typed_static(new.zone).get(wire.T_SOA, ())
        new._set_soa(soa[0] if soa else None)
        return new, flipped

    def _mark(self, statics: list[tuple[bytes, Static | None]]) -> list[bytes]:
        """Bring ``_cuts`` and ``_wilds`` up to date for the names of a derive
        plan (their records already assigned): the cuts that came or went."""
        moved: list[bytes] = []
        cuts, wilds, zone = self._cuts, self._wilds, self.zone
        for wname, per in statics:
            if wname[:2] == _WILD:
                if wname in self._static or wname in self._geo:
                    wilds.add(wname)
                else:
                    wilds.discard(wname)
                continue
            cut = wname != zone and per is not None and has_ns(per)
            if cut != (wname in cuts):
                moved.append(wname)
                if cut:
                    cuts.add(wname)
                else:
                    cuts.discard(wname)
        return moved

    def _below(self, top: bytes) -> list[bytes]:
        """The names strictly below ``top`` (one pass over every name: only
        when a zone cut comes or goes)."""
        n = len(top)
        return [name for name in {*self._static, *self._geo, *self._ents}
                if len(name) > n and name.endswith(top) and suffix_at_label(name, n)]

    def _derive_plan(self, snapshot: Snapshot, todo: set[str],
                     found: Mapping[str, list[Record]]) -> _DerivePlan | None:
        """What ``derive`` assigns: each name's static records and geo answers
        (None: none), the names that appear and the names that go; None when
        a geo answer names a locality this Resolver does not know."""
        known = set(self.localities)
        statics: list[tuple[bytes, Static | None]] = []
        geos: list[tuple[bytes, Mapping[str, tuple[Record, ...]] | None]] = []
        added: list[bytes] = []
        removed: list[bytes] = []
        for name in todo:
            try:
                wname = name_to_wire(name)
            except ValueError:
                continue
            if not self.in_zone(wname):
                continue
            existed = wname in self._static or wname in self._geo
            typed: dict[int, list[Record]] = {}
            for rec in found.get(name, ()):
                code = self._code(rec)
                if code is not None:
                    typed.setdefault(code, []).append(rec)
            per = flat_static(typed) if typed else None
            statics.append((wname, per))
            geo = snapshot.geo.get(name)
            if geo is not None and not known.issuperset(geo):
                return None
            geos.append((wname, geo))
            if existed != (per is not None or geo is not None):
                (removed if existed else added).append(wname)
        return statics, geos, added, removed

    def _link(self, name: bytes, flipped: set[bytes]) -> None:
        """``name`` has records now and had none: count it under its parent;
        ancestors that did not exist become empty non-terminals (``flipped``)."""
        if name in self._ents:  # it existed (an empty non-terminal, or the apex)
            self._ents.discard(name)
            return
        zone, children, ents = self.zone, self._children, self._ents
        while name != zone:
            parent = name[1 + name[0]:]
            below = children.get(parent, 0)
            children[parent] = below + 1
            if below or self.exists(parent):
                return  # the parent existed
            ents.add(parent)
            flipped.add(parent)
            name = parent

    def _unlink(self, name: bytes, flipped: set[bytes]) -> None:
        """``name`` has no records now and had some: it stays as an empty
        non-terminal if names sit below it; else it goes, and so do the
        ancestors that existed only for it (``flipped``). Called for a name
        before the removed names below it."""
        zone, children, ents = self.zone, self._children, self._ents
        if children.get(name) or name == zone:
            ents.add(name)
            return
        while name != zone:
            parent = name[1 + name[0]:]
            below = children.get(parent, 0) - 1
            if below > 0:
                children[parent] = below
                return
            children.pop(parent, None)
            if parent == zone or parent in self._static or parent in self._geo:
                return
            ents.discard(parent)  # an empty non-terminal only for ``name``
            flipped.add(parent)
            name = parent

    # -- indexing ------------------------------------------------------------

    def _code(self, rec: Record) -> int | None:
        """The record's type code, or None if it cannot be served (logged)."""
        code = qtype_code(rec.rtype)
        try:
            name_to_wire(rec.name)
        except ValueError:
            code = None
        if code is None:
            if rec not in self._bad:
                self._bad.add(rec)
                log.warning("record_skipped name=%r type=%s error=bad name or type",
                            rec.name, rec.rtype)
            return None
        if self._rr(rec) is None:
            return None
        return code

    def _by_type(self, recs: tuple[Record, ...]) -> dict[int, tuple[Record, ...]]:
        """``recs`` (servable ones) by type code, memoised per tuple object
        (the planner interns answers: localities with the same answer share
        one tuple)."""
        hit = self._typed.get(id(recs))
        if hit is not None and hit[0] is recs:
            return hit[1]
        typed = self._by_type_new(recs)
        if len(self._typed) >= _TYPED_MAX:
            self._typed.clear()
        self._typed[id(recs)] = (recs, typed)
        return typed

    def _by_type_new(self, recs: Iterable[Record]) -> dict[int, tuple[Record, ...]]:
        out: dict[int, list[Record]] = {}
        for rec in recs:
            code = self._code(rec)
            if code is not None:
                out.setdefault(code, []).append(rec)
        return {t: tuple(rs) for t, rs in out.items()}

    def _rr(self, rec: Record) -> wire.PackedRR | None:
        """The packed record, None if it cannot be served (logged once).
        Packed on demand, a bounded number kept: a packed record is several
        times the size of its ``Record``, and the table build and the full
        path use each one briefly."""
        packed = self._packed
        rr = packed.get(rec)
        if rr is not None or rec in self._bad:
            return rr
        if type(rec) is Synthesized:  # the wildcard's record, another owner (not kept)
            assert rec.source is not None
            src = self._rr(rec.source)
            return None if src is None else (rec.owner, src[1], src[2])
        try:
            rr = compile_record(rec, self._interner)
        except Exception as exc:  # dnslib raises many types on bad rdata
            self._bad.add(rec)
            log.warning("record_skipped name=%s type=%s error=%r", rec.name, rec.rtype, exc)
            return None
        if len(packed) >= _PACKED_MAX:
            packed.clear()
        packed[rec] = rr
        return rr

    def _typed_static(self, name: bytes) -> dict[int, tuple[Record, ...]]:
        """``name``'s locality-free records by type code (a new dict)."""
        static = self._static.get(name)
        if static is None:
            return {}
        if isinstance(static, Record):
            return {code_of(static.rtype): (static,)}
        out: dict[int, tuple[Record, ...]] = {}
        i = 0
        n = len(static)
        while i < n:  # runs of one type code (``flat_static`` made them)
            code = code_of(static[i].rtype)
            j = i + 1
            while j < n and code_of(static[j].rtype) == code:
                j += 1
            out[code] = static[i:j]
            i = j
        return out

    def exists(self, name: bytes) -> bool:
        """Does the in-zone ``name`` exist (records or an empty non-terminal)?"""
        return name in self._static or name in self._geo or name in self._ents

    def in_zone(self, name: bytes) -> bool:
        z = self._zone_suffix
        if not name.endswith(z):
            return False
        if len(name) == len(z):
            return True
        # the suffix must start at a label boundary
        i = 0
        cut = len(name) - len(z)
        while i < cut:
            i += 1 + name[i]
        return i == cut

    def names(self) -> list[bytes]:
        """Every name that exists in the zone (incl. empty non-terminals)."""
        return sorted({*self._static, *self._geo, *self._ents})

    def types_at(self, name: bytes) -> set[int]:
        types = set(self._typed_static(name))
        per_loc = self._geo.get(name)
        if per_loc is not None:
            for recs in {id(r): r for r in per_loc.values()}.values():
                types.update(self._by_type(recs))
        return types

    def geo_names(self) -> set[bytes]:
        return set(self._geo)

    def is_geo(self, name: bytes) -> bool:
        return name in self._geo

    def geo_groups(self, name: bytes) -> list[tuple[str, ...]]:
        """The localities of a geo-aware ``name`` grouped by identical records
        (the first group holds the unknown locality ``""``)."""
        per_loc = self._geo[name]
        fallback = per_loc.get(UNKNOWN, ())
        groups: dict[int, list[str]] = {}
        for loc in self.localities:
            groups.setdefault(id(per_loc.get(loc, fallback)), []).append(loc)
        return [tuple(g) for g in groups.values()]

    def rr(self, rec: Record) -> wire.PackedRR:
        """The packed form of a served record."""
        rr = self._rr(rec)
        assert rr is not None, rec
        return rr

    # -- resolution ------------------------------------------------------------

    def _rrsets(self, name: bytes, locality: str) -> tuple[dict[int, tuple[Record, ...]], bool]:
        per_loc = self._geo.get(name)
        if per_loc is None:
            return self._typed_static(name), False
        recs = per_loc.get(locality)
        if recs is None:
            recs = per_loc.get(UNKNOWN, ())
        geo = self._by_type(recs)
        if name not in self._static:
            return geo, True
        return {**self._typed_static(name), **geo}, True

    def resolve(self, qname: bytes, qtype: int, locality: str) -> tuple[Answer, bool]:
        """(answer without ``depends``, whether a geo-aware name was visited)."""
        answer: list[Record] = []
        additional: list[Record] = []
        authority: tuple[Record, ...] = ()
        touched = False
        name = qname
        visited = {qname}
        rcode = wire.NOERROR
        negative = False
        aa = True
        for _hop in range(MAX_CHAIN + 1):
            if self._cuts:
                cut = self.top_cut(name)
                if cut is not None and (cut != name or qtype != wire.T_DS):
                    authority = self._typed_static(cut).get(wire.T_NS, ())
                    for rec in authority:  # a referral (after a CNAME: the answer's tail)
                        additional.extend(self._glue(name_to_wire(rec.value)))
                    aa = bool(answer)
                    break
            owner: bytes | None = None
            if self.exists(name):
                rrsets, geo = self._rrsets(name, locality)
            else:
                wild = self.wildcard_of(name) if self._wilds else None
                if wild is None:
                    rcode = wire.NXDOMAIN
                    negative = True
                    break
                rrsets, geo = self._rrsets(wild, locality)
                owner = name
            touched = touched or geo
            if qtype == wire.T_ANY:
                if rrsets:  # RFC 8482: one RRset
                    answer.extend(owned_by(rrsets[min(rrsets)], owner))
                else:
                    negative = True
                break
            found = rrsets.get(qtype)
            if found:
                answer.extend(owned_by(found, owner))
                break
            cname = rrsets.get(wire.T_CNAME)
            if cname and qtype != wire.T_CNAME:
                answer.extend(owned_by(cname, owner))
                target = self._target(cname[0].value)
                if not self.in_zone(target) or target in visited:
                    break
                visited.add(target)
                name = target
                continue
            negative = True
            break
        if qtype == wire.T_NS:
            for rec in answer:
                if rec.rtype == "NS":
                    additional.extend(self._glue(name_to_wire(rec.value)))
        if negative and self._soa is not None:
            authority = (self._soa,)
        return Answer(rcode, tuple(answer), authority, tuple(additional), aa=aa), touched

    def top_cut(self, name: bytes) -> bytes | None:
        """The highest zone cut at or above the in-zone ``name`` (the one a
        query for it meets first, walking down from the apex), or None."""
        cuts = self._cuts
        if not cuts:
            return None
        found = name if name in cuts else None
        zone_len = len(self.zone)
        i = 0
        while len(name) - i > zone_len:
            i += 1 + name[i]
            if name[i:] in cuts:
                found = name[i:]
        return found

    def occluded(self, name: bytes) -> bool:
        """Is ``name`` at or below a zone cut (answered by a referral)?"""
        return bool(self._cuts) and self.top_cut(name) is not None

    @property
    def has_wildcards(self) -> bool:
        """Does the zone have a wildcard name (``*.x``) at all?"""
        return bool(self._wilds)

    def closest_encloser(self, name: bytes) -> bytes | None:
        """The nearest existing ancestor of ``name`` (RFC 4592: its closest
        encloser; the apex at the latest), or None outside the zone."""
        i = 0
        exists = self.exists
        while True:
            if not name[i]:
                return None  # (not in the zone)
            i += 1 + name[i]
            if exists(name[i:]):
                return name[i:]

    def wildcard_of(self, name: bytes) -> bytes | None:
        """The wildcard that answers the in-zone ``name``, which does not
        exist: the ``*`` child of its closest encloser, if that has records."""
        encloser = self.closest_encloser(name)
        if encloser is None:
            return None
        wild = _WILD + encloser
        return wild if wild in self._static or wild in self._geo else None

    def wildcard_deps(self, name: bytes) -> list[bytes]:
        """The names whose coming, going or change can change the answer for
        the in-zone ``name`` while it does not exist: its ancestors below the
        apex (a closest encloser or a zone cut) and their ``*`` children and
        the apex's (wildcards). A CNAME into ``name`` depends on them."""
        out: list[bytes] = []
        zone_len = len(self.zone)
        i = 0
        while len(name) - i > zone_len:
            i += 1 + name[i]
            parent = name[i:]
            out.append(_WILD + parent)
            if len(parent) > zone_len:
                out.append(parent)
        return out

    def _target(self, name: str) -> bytes:
        """``name_to_wire`` memoised (CNAME targets, resolved per locality)."""
        w = self._wire_memo.get(name)
        if w is None:
            if len(self._wire_memo) >= _WIRE_MEMO_MAX:
                self._wire_memo.clear()
            w = self._wire_memo[name] = name_to_wire(name)
        return w

    def _glue(self, target: bytes) -> list[Record]:
        if not self.in_zone(target):
            return []
        per = self._typed_static(target)
        return [*per.get(wire.T_A, ()), *per.get(wire.T_AAAA, ())]

    def lookup(self, qname: bytes, qtype: int, locality: str) -> Answer:
        """Resolve an in-zone, class-IN question for a client in ``locality``."""
        ans, touched = self.resolve(qname, qtype, locality)
        if touched and self.varies(qname, qtype):
            return Answer(ans.rcode, ans.answer, ans.authority, ans.additional, True, ans.aa)
        return ans

    def varies(self, qname: bytes, qtype: int) -> bool:
        """Does the answer to (qname, qtype) differ between localities?"""
        key = (qname, qtype)
        hit = self._varies_memo.get(key)
        if hit is not None:
            return hit
        seen = {self.resolve(qname, qtype, loc)[0] for loc in self.localities}
        result = len(seen) > 1
        if len(self._varies_memo) >= _VARIES_MEMO_MAX:
            self._varies_memo.clear()
        self._varies_memo[key] = result
        return result

    # -- rendering -------------------------------------------------------------

    def pack_body(self, labels: tuple[bytes, ...], qtype: int, qclass: int, ans: Answer) -> bytes:
        """The packed message (ID 0, flags 0) with a lower-case question, no OPT."""
        rr = self._rr
        return wire.pack_message(labels, qtype, qclass, (
            tuple(rr(rec) for rec in ans.answer),  # type: ignore[misc]
            tuple(rr(rec) for rec in ans.authority),  # type: ignore[misc]
            tuple(rr(rec) for rec in ans.additional)))  # type: ignore[misc]

    def negative_body(self, ans: Answer, qlen: int) -> bytes | None:
        """The SOA authority blob when ``ans`` is a plain NXDOMAIN/NODATA (no
        records besides the SOA), else None (packed by dnslib)."""
        if ans.answer or ans.additional or ans.rcode not in (wire.NOERROR, wire.NXDOMAIN):
            return None
        if not ans.authority:
            return b"" if self._soa is None else None
        if ans.authority != (self._soa,):
            return None
        return self.negative_authority(qlen)

    def render(self, *, qid: int, qflags: int, question: bytes, labels: tuple[bytes, ...],
               qtype: int, qclass: int, ans: Answer, edns: wire.Edns | None,
               scope: int, limit: int) -> bytes:
        """The reply for ``ans``; truncated (TC=1, question and OPT only) above ``limit``."""
        opt = self.opt_for(edns, scope if ans.depends else 0)
        flags = wire.reply_flags(qflags, rcode=ans.rcode, aa=ans.aa)
        neg = self.negative_body(ans, len(question) - 4)
        if neg is not None:
            out = wire.negative_reply(qid, flags, question, neg, opt)
        else:
            body = self.pack_body(labels, qtype, qclass, ans)
            out = wire.assemble(qid, flags, question, body, opt)
        if len(out) > limit:
            out = wire.short_reply(qid, flags | wire.TC, question, opt)
        return out

    def opt_for(self, edns: wire.Edns | None, scope: int, ext_rcode: int = 0) -> bytes | None:
        """The reply's OPT record for a query with ``edns`` (None: none): ECS
        with ``scope``, then the options the handler decided (``reply_options``:
        the COOKIE option), in the order the fast path joins them."""
        if edns is None:
            return None
        options = b""
        if edns.ecs is not None:
            options = wire.ecs_option(edns.ecs, scope)
        return wire.opt_record(self.server.edns_udp_size, do=edns.do, ext_rcode=ext_rcode,
                               options=options + edns.reply_options)

    # -- the whole query -------------------------------------------------------

    def respond(self, q: wire.Query, *, locality: str, scope: int, client: bytes,
                limit: int) -> tuple[bytes, bool]:
        """The reply to a parsed query: ``(reply, depends_on_locality)``."""
        edns = q.edns
        if edns is not None and edns.version > 0:  # whatever the opcode (RFC 6891 6.1.3)
            flags = wire.reply_flags(q.flags, rcode=0, aa=False)
            opt = wire.opt_record(self.server.edns_udp_size, do=edns.do, ext_rcode=1)
            return wire.short_reply(q.qid, flags, q.question, opt), False
        if q.opcode != wire.OP_QUERY:
            return self._other_opcode(q, client), False
        assert q.question is not None  # parse_query guarantees it for opcode QUERY
        if q.qtype in (wire.T_MAILA, wire.T_MAILB):
            # RFC 1035 3.2.3 defines the QTYPEs, no server behaviour: NOTIMP for
            # any name and class, as BIND answers (NSD, Knot: NODATA), with
            # OPT when the query had one
            return self.error(q, wire.NOTIMP), False
        if q.qclass == wire.C_CH:
            return self._chaos(q, limit), False
        if q.qclass != wire.C_IN or q.qtype in (wire.T_IXFR, wire.T_AXFR):
            return self.error(q, wire.REFUSED), False
        if wire.meta_qtype(q.qtype):  # OPT, TSIG, TKEY, 128-248: as a malformed query
            return self.error(q, wire.FORMERR, with_opt=False), False
        if not self.in_zone(q.qname):
            return self.error(q, wire.REFUSED), False
        ans = self.lookup(q.qname, q.qtype, locality)
        out = self.render(qid=q.qid, qflags=q.flags, question=q.question, labels=q.labels,
                          qtype=q.qtype, qclass=q.qclass, ans=ans, edns=edns, scope=scope,
                          limit=limit)
        return out, ans.depends

    def current_soa(self, q: wire.Query, limit: int) -> bytes | None:
        """The reply to ``q`` (an IXFR query over UDP for the apex that the
        transfer policy admitted, RFC 1995 sections 2 and 4): the zone's
        current SOA alone in the answer (AA=1), whatever the client's serial,
        with OPT when the query had one. None when the zone has no SOA."""
        soa = self._typed_static(self.zone).get(wire.T_SOA, ())
        if not soa or q.question is None:
            return None
        ans = Answer(wire.NOERROR, answer=soa[:1])
        return self.render(qid=q.qid, qflags=q.flags, question=q.question, labels=q.labels,
                           qtype=q.qtype, qclass=q.qclass, ans=ans, edns=q.edns, scope=0,
                           limit=limit)

    def error(self, q: wire.Query, rcode: int, *, with_opt: bool = True) -> bytes:
        """A reply with ``rcode``, the question and (if the query had one) OPT;
        an extended rcode (BADCOOKIE) puts its upper bits in the OPT record."""
        flags = wire.reply_flags(q.flags, rcode=rcode, aa=False)
        opt = self.opt_for(q.edns, 0, rcode >> 4) if with_opt else None
        return wire.short_reply(q.qid, flags, q.question, opt)

    def _other_opcode(self, q: wire.Query, client: bytes) -> bytes:
        if q.opcode == wire.OP_NOTIFY and q.question is not None:
            allowed = wire.in_networks(client, self.server.notify_allow)
            rcode = wire.NOERROR if allowed else wire.REFUSED
            flags = wire.reply_flags(q.flags, rcode=rcode, aa=allowed)
            return wire.short_reply(q.qid, flags, q.question, self.opt_for(q.edns, 0))
        # RFC 8906 section 8.1.4 / RFC 1035: NOTIMP, opcode kept, every other
        # flag clear; an OPT record when the query had one (RFC 6891 6.1.1)
        flags = wire.QR | (q.flags & 0x7800) | wire.NOTIMP
        return wire.short_reply(q.qid, flags, q.question, self.opt_for(q.edns, 0))

    def _chaos(self, q: wire.Query, limit: int) -> bytes:
        name = b".".join(q.labels)
        text: str | None = None
        if q.qtype in (wire.T_TXT, wire.T_ANY):
            if name in (b"version.bind", b"version.server"):
                text = self.server.version
            elif name in (b"id.server", b"hostname.bind"):
                text = self.server.identity
        if text is None:
            return self.error(q, wire.REFUSED)
        data = text.encode("utf-8", "replace")[:255]
        rr = (b"\xc0\x0c\x00\x10\x00\x03\x00\x00\x00\x00" + (len(data) + 1).to_bytes(2, "big")
              + bytes((len(data),)) + data)
        flags = wire.reply_flags(q.flags, rcode=wire.NOERROR, aa=True)
        opt = self.opt_for(q.edns, 0)
        head = (q.qid.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\x00\x01\x00\x01\x00\x00"
                + (b"\x00\x01" if opt else b"\x00\x00"))
        out = head + (q.question or b"") + rr + (opt or b"")
        if len(out) > limit:
            out = wire.short_reply(q.qid, flags | wire.TC, q.question, opt)
        return out


_WILD = b"\x01*"  # a wildcard name's first label, on the wire
