"""Snapshot -> ServingState: incremental when only some names changed.

A full build (``Resolver`` + ``AnswerTable.build``) costs seconds for a large
federation; after one health change only a handful of names differ. This
module finds them (``changed_names``) and derives the new state from the old
one (``derive_state``), so the common update costs milliseconds. A full build
is needed when the zone, the localities, the protocol knobs or the set of
names change; ``Rebuilder`` runs those in a worker thread so the event loop
keeps answering from the old state meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from config.model import Server
from dnsserver.answers import AnswerTable
from dnsserver.handler import ServingState
from dnsserver.resolver import Resolver, name_to_wire
from healthwatch.heap import paused
from healthwatch.snapshot import Snapshot

log = logging.getLogger("dnsserver.rebuild")


def changed_names(old: Snapshot, new: Snapshot) -> set[str] | None:
    """Names whose records differ between ``old`` and ``new``; None if unknown.

    Uses the planner's ``new.changed`` when it is relative to ``old``
    (``new.base_serial == old.serial``); otherwise compares the two: records
    position by position (identity first, so unchanged Records cost one
    ``is``), geo answers name by name. Records that moved (another count)
    give None: build everything.
    """
    hint = getattr(new, "changed", None)
    if hint is not None and getattr(new, "base_serial", None) == old.serial:
        return set(hint)
    out: set[str] = set()
    if old.records is not new.records:
        if len(old.records) != len(new.records):
            return None
        for a, b in zip(old.records, new.records, strict=True):
            if a is not b and a != b:
                out.add(a.name)
                out.add(b.name)
    if old.geo is not new.geo:
        if len(old.geo) != len(new.geo):
            return None
        og = old.geo
        for name, per in new.geo.items():
            before = og.get(name)
            if before is per:
                continue
            if before is None:
                return None
            if before != per:
                out.add(name)
    return out


def full_state(snapshot: Snapshot, server: Server) -> ServingState:
    """Everything built anew; the cyclic collector paused meanwhile (the build
    makes no cyclic garbage, and at 10,000 services Python would otherwise
    start about seven full collections during it: ``healthwatch.heap``)."""
    with paused():
        resolver = Resolver(snapshot, server)
        return ServingState.make(resolver, AnswerTable.build(resolver), snapshot.serial)


def derive_state(prev: ServingState, snapshot: Snapshot, server: Server) -> ServingState | None:
    """The state for ``snapshot`` built from ``prev`` by rebuilding only the
    changed names, or None when a full build is needed."""
    if prev.resolver.server is not server or not prev.table.complete:
        return None
    names = changed_names(prev.resolver.snapshot, snapshot)
    if names is None:
        return None
    resolver = prev.resolver.derive(snapshot, names)
    if resolver is None:
        return None
    wired = []
    for n in names:
        try:
            wired.append(name_to_wire(n))
        except ValueError:
            continue
    table = prev.table.derive(resolver, wired)
    return ServingState.make(resolver, table, snapshot.serial)


class Rebuilder:
    """Builds ServingStates off the event loop; the newest Snapshot wins.

    ``submit`` never blocks for a full build: an incremental update happens
    at once, a full one in a worker thread (the old state keeps serving).
    Owned by ``DnsServer`` (``stop`` waits for a running build).
    """

    def __init__(self, current: Callable[[], ServingState | None],
                 install: Callable[[ServingState, float, str], None],
                 server: Callable[[], Server]) -> None:
        self._current = current
        self._install = install
        self._server = server
        self._wanted: Snapshot | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, snapshot: Snapshot) -> None:
        self._wanted = snapshot
        if self._task is not None and not self._task.done():
            return  # the running build picks the newest up when it ends
        prev = self._current()
        if prev is not None:
            started = time.perf_counter()
            try:
                state = derive_state(prev, snapshot, self._server())
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
            started = time.perf_counter()
            try:
                state = None if prev is None else derive_state(prev, snap, server)
                how = "incremental"
                if state is None:
                    how = "full"
                    state = await asyncio.to_thread(full_state, snap, server)
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
