"""A name's records as the Resolver's index holds them (``Static``: grouped
by type, ``flat_static``; does it hold NS, ``has_ns``), and the records of given
names in a Snapshot (bisection on the planner's sorted order, or one scan) for
``Resolver.derive``."""

from __future__ import annotations

import bisect

from healthwatch.snapshot import Record

# a name's servable locality-free records, grouped by type: the Record itself
# when there is one (most names), else a tuple; a tuple or a dict per name
# would cost 70-600 bytes more, times every name of a large zone
Static = Record | tuple[Record, ...]


def has_ns(static: Static) -> bool:
    if isinstance(static, Record):
        return static.rtype == "NS"
    return any(rec.rtype == "NS" for rec in static)


def flat_static(typed: dict[int, list[Record]]) -> Static:
    """Records grouped by type as ``Static``."""
    recs = tuple(r for rs in typed.values() for r in rs)
    return recs[0] if len(recs) == 1 else recs


def records_of(records: tuple[Record, ...], names: set[str]) -> dict[str, list[Record]]:
    """The records of each of ``names``: bisection when ``records`` is sorted
    by name around every hit (checked at the run's ends and inside it: in
    records not sorted, a bisection can end on a run of other names), else
    one scan."""
    out: dict[str, list[Record]] = {}
    n = len(records)
    key = _record_name
    for name in names:
        lo = bisect.bisect_left(records, name, key=key)
        hi = bisect.bisect_right(records, name, lo, key=key)
        if (lo > 0 and not records[lo - 1].name < name) or (hi < n and not name < records[hi].name):
            break  # not sorted
        if lo < hi:
            run = list(records[lo:hi])
            if any(rec.name != name for rec in run):
                break  # not sorted
            out[name] = run
    else:
        return out
    return scan_records(records, names)


def scan_records(records: tuple[Record, ...], names: set[str]) -> dict[str, list[Record]]:
    """The records of each of ``names``, by one pass over ``records``."""
    out: dict[str, list[Record]] = {}
    for rec in records:
        if rec.name in names:
            out.setdefault(rec.name, []).append(rec)
    return out


def _record_name(rec: Record) -> str:
    return rec.name
