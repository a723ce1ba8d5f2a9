"""Snapshot -> ServingState: incremental when only some names changed.

A full build (``Resolver`` + ``AnswerTable.build``) costs seconds for a large
federation; after one health change only a handful of names differ. This
module finds them (``changed_names``) and derives the new state from the old
one (``derive_state``), so the common update costs milliseconds: a health
change, and also a Service that appears or goes (its names, and the empty
non-terminals above them, are added or dropped). A full build is needed when
the zone, the localities or the protocol knobs change; ``Rebuilder`` runs
those, and derives of many names, in a worker thread so the event loop
keeps answering from the old state meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from config.model import Server
from dnsserver import answers
from dnsserver.answers import AnswerTable
from dnsserver.handler import ServingState
from dnsserver.names import name_to_wire
from dnsserver.resolver import Resolver
from healthwatch.heap import paused
from healthwatch.snapshot import Record, Snapshot

log = logging.getLogger("dnsserver.rebuild")

KEYS_PER_NAME = 16  # more than the questions a name stores (its types + the chase types)
# changed names derived on the event loop at once; more go to a worker thread
INLINE_MAX_NAMES = 512


def changed_names(old: Snapshot, new: Snapshot) -> set[str]:
    """Names whose records or geo answers differ between ``old`` and ``new``.

    Uses the planner's ``new.changed`` when it is relative to ``old``
    (``new.base_serial == old.serial``); otherwise compares the two: records
    position by position (identity first, so unchanged Records cost one
    ``is``), or grouped by name when records moved (another count, or a
    difference between two names); geo answers name by name.
    """
    hint = getattr(new, "changed", None)
    if hint is not None and getattr(new, "base_serial", None) == old.serial:
        return set(hint)
    out: set[str] = set()
    if old.records is not new.records:
        if len(old.records) != len(new.records):
            out.update(_differ_by_name(old.records, new.records))
        else:
            for a, b in zip(old.records, new.records, strict=True):
                if a is not b and a != b:
                    if a.name != b.name:  # records moved: names appeared and went
                        out.update(_differ_by_name(old.records, new.records))
                        break
                    out.add(a.name)
    if old.geo is not new.geo:
        og, ng = old.geo, new.geo
        for name, per in ng.items():
            before = og.get(name)
            if before is not per and before != per:
                out.add(name)
        out.update(name for name in og if name not in ng)
    return out


def _differ_by_name(old: Sequence[Record], new: Sequence[Record]) -> set[str]:
    """Names whose records differ, records grouped by name (another count:
    names appeared or went)."""
    def grouped(records: Sequence[Record]) -> dict[str, set[Record]]:
        out: dict[str, set[Record]] = {}
        for rec in records:
            out.setdefault(rec.name, set()).add(rec)
        return out
    a, b = grouped(old), grouped(new)
    return {n for n in a.keys() | b.keys() if a.get(n) != b.get(n)}


def full_state(snapshot: Snapshot, server: Server) -> ServingState:
    """Everything built anew; the cyclic collector paused meanwhile (the build
    makes no cyclic garbage, and at 10,000 services Python would otherwise
    start about seven full collections during it: ``healthwatch.heap``)."""
    with paused():
        resolver = Resolver(snapshot, server)
        return ServingState.make(resolver, AnswerTable.build(resolver), snapshot.serial)


def derive_state(prev: ServingState, snapshot: Snapshot, server: Server,
                 names: set[str] | None = None) -> ServingState | None:
    """The state for ``snapshot`` built from ``prev`` by rebuilding only the
    changed names (``names``, else ``changed_names``), or None when a full
    build is needed."""
    if prev.resolver.server is not server or not prev.table.complete:
        return None
    if names is None:
        names = changed_names(prev.resolver.snapshot, snapshot)
    table = prev.table
    if len(table.questions) + len(table.letters) + KEYS_PER_NAME * len(names) > \
            answers.DEFAULT_MAX_KEYS:
        return None  # new names could pass the key bound: the full build applies it
    derived = prev.resolver.derive(snapshot, names)
    if derived is None:
        return None
    resolver, flipped = derived
    wired = list(flipped)
    for n in names:
        try:
            wired.append(name_to_wire(n))
        except ValueError:
            continue
    return ServingState.make(resolver, table.derive(resolver, wired), snapshot.serial)


def build_state(prev: ServingState | None, snapshot: Snapshot, server: Server,
                names: set[str] | None = None) -> tuple[ServingState, str]:
    """The state for ``snapshot``: derived from ``prev`` when it can be, else
    built anew (also when deriving fails); and which ("incremental", "full").
    ``names``: the changed names between the two, when already worked out."""
    if prev is not None:
        try:
            state = derive_state(prev, snapshot, server, names)
        except Exception:
            log.exception("incremental_build_failed serial=%d", snapshot.serial)
            state = None
        if state is not None:
            return state, "incremental"
    return full_state(snapshot, server), "full"


class Rebuilder:
    """Builds ServingStates off the event loop; the newest Snapshot wins.

    ``submit`` never blocks the loop for long: a change of up to
    ``INLINE_MAX_NAMES`` names is derived at once (milliseconds); a larger
    one (a cluster failing over at 10,000 services rebuilds ~35,000 names,
    7 s) and a full build run in a worker thread, while the loop goes on
    answering TCP, HTTP and probes and the old state keeps serving (a
    derive updates its maps name by name). Owned by ``DnsServer`` (``stop``
    waits for a running build).
    """

    def __init__(self, current: Callable[[], ServingState | None],
                 install: Callable[[ServingState, float, str], None],
                 server: Callable[[], Server]) -> None:
        self._current = current
        self._install = install
        self._server = server
        self._wanted: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None
        # (prev, snapshot, their changed names) that ``submit`` worked out and
        # sent to the thread: the thread does not work them out again
        self._known: tuple[ServingState, Snapshot, set[str]] | None = None

    def submit(self, snapshot: Snapshot) -> None:
        self._wanted = snapshot
        if self._task is not None and not self._task.done():
            return  # the running build picks the newest up when it ends
        prev = self._current()
        self._known = None
        if prev is not None:
            started = time.perf_counter()
            try:
                names = changed_names(prev.resolver.snapshot, snapshot)
                if len(names) > INLINE_MAX_NAMES:  # derived in the thread, from these
                    self._known = (prev, snapshot, names)
                    state = None
                else:
                    state = derive_state(prev, snapshot, self._server(), names)
            except Exception:
                log.exception("incremental_build_failed serial=%d", snapshot.serial)
                state = None
            if state is not None:
                self._wanted = None
                self._install(state, time.perf_counter() - started, "incremental")
                return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._wanted is not None:
            snap = self._wanted
            self._wanted = None
            prev = self._current()
            server = self._server()
            if prev is not None and snap is prev.resolver.snapshot and \
                    prev.resolver.server is server:
                continue  # already served
            known, self._known = self._known, None
            names = (known[2] if known is not None and known[0] is prev
                     and known[1] is snap else None)
            started = time.perf_counter()
            try:
                state, how = await asyncio.to_thread(build_state, prev, snap, server, names)
            except Exception:
                log.exception("snapshot_rejected serial=%s", snap.serial)
                continue
            self._install(state, time.perf_counter() - started, how)

    async def stop(self) -> None:
        self._wanted = None
        task, self._task = self._task, None
        if task is not None:
            try:
                await task
            except Exception:
                log.exception("rebuild_failed_on_stop")
