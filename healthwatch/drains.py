"""Drains of a whole cluster or one shard: the drain API's, the config's, the annotations'.

A drain may carry a reason, the time it started (``since``, Unix time), who
asked (``by``: the HTTP client's address) and an expiry (``until``). The
planner only looks at *which* clusters and shards are drained
(``DrainSet.clusters``/``shards``); the rest is for the operator.

The drains file (``DRAINS_FILE``), version 2::

    {"version": 2, "clusters": ["us"], "shards": [{"cluster": "eu", "service": "ns/name"}],
     "details": [{"cluster": "us", "service": null, "reason": "upgrade",
                  "since": 1700000000.0, "until": 1700003600.0, "by": "10.0.0.7"}]}

``clusters`` and ``shards`` are exactly version 1's fields, so a version 1
reader (a rollback) still sees every drain. A drain without a ``details``
entry (every drain of a version 1 file) has no reason, an unknown start and
no expiry.

Each drain has a ``source``. ``"api"``: the drain API's (``Drains``), kept
by one fedns process and persisted in its state dir (the only drains the
file holds). ``"config"``: the config's ``drains``, and ``"annotation"``: a
shard's ``fedns.io/drain`` annotation (``ShardSpec.drain``); every replica
reads those two alike, so they live in memory only (``DeclaredDrains``) and
end where they were declared, never through the API (``DeclaredDrainError``).
One target may be drained by several sources at once: a ``DrainSet`` keeps
one ``Drain`` per target and source, and the status lists each of them.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from config.duration import DurationError, parse_duration
from config.model import MAX_REASON, Config, ConfigDrain, check_drain_reason
from healthwatch.errors import HealthwatchError, StateError
from healthwatch.model import DRAIN_ANNOTATION, ShardSpec, split_service
from healthwatch.state import DRAINS_FILE, StateStore

log = logging.getLogger("healthwatch.drains")

FILE_VERSION = 2
MAX_DURATION = 7 * 86400.0  # seconds: a drain meant to last longer belongs in the config

DrainKey = tuple[str, str | None]  # (cluster, None) or (cluster, service)
DrainSource = Literal["api", "config", "annotation"]
# The order of one target's drains: the API's first (the one the drain API
# changes and answers with), then the declared ones.
SOURCES: tuple[DrainSource, ...] = ("api", "config", "annotation")
_RANK = {source: i for i, source in enumerate(SOURCES)}


class DrainOptionError(HealthwatchError):
    """A drain's reason or duration is not acceptable."""


class DeclaredDrainError(HealthwatchError):
    """An undrain through the API of a target that only the config or an
    annotation drains: the API cannot end it, only its origin can (the HTTP
    API answers 409 with this message)."""

    def __init__(self, *, target: str, origins: tuple[str, ...]) -> None:
        self.target = target
        self.origins = origins
        super().__init__(f"{target} is " + "; it is also ".join(origins))


def check_reason(reason: str) -> str:
    """``reason`` without surrounding blanks; DrainOptionError if unusable (the
    rules of the config's ``drains``: ``config.model.check_drain_reason``)."""
    try:
        return check_drain_reason(reason)
    except ValueError as exc:
        raise DrainOptionError(str(exc)) from None


def check_duration(seconds: float) -> float:
    """``seconds`` if it is a usable drain duration; DrainOptionError otherwise."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise DrainOptionError(f"drain duration must be positive, got {seconds:g}s")
    if seconds > MAX_DURATION:
        raise DrainOptionError(f"drain duration {seconds:g}s is longer than the limit of "
                               f"{MAX_DURATION / 86400:g} days (remove the cluster from the "
                               "config instead)")
    return seconds


def parse_drain_duration(value: object) -> float:
    """A drain's ``for`` (``30m``, ``2h``, or seconds) in seconds, within bounds."""
    try:
        seconds = parse_duration(value)
    except DurationError as exc:
        raise DrainOptionError(f"'for': {exc}") from exc
    return check_duration(seconds)


@dataclass(frozen=True, slots=True)
class Drain:
    """One drained cluster (``service`` None) or shard, and what is known of it."""

    cluster: str
    service: str | None = None
    reason: str = ""
    since: float | None = None  # Unix time; None: unknown (a version 1 file)
    until: float | None = None  # Unix time it ends by itself; None: no expiry
    by: str = ""  # who asked: the HTTP client's address
    # "api" (persisted), "config" or "annotation" (declared: never persisted)
    source: DrainSource = "api"

    @property
    def key(self) -> DrainKey:
        return (self.cluster, self.service)

    @property
    def ident(self) -> tuple[str, str | None, DrainSource]:
        """What tells drains of a DrainSet apart: the target and the source."""
        return (self.cluster, self.service, self.source)

    @property
    def target(self) -> str:
        return self.cluster if self.service is None else f"{self.cluster}/{self.service}"

    @property
    def label(self) -> str:
        """``target``, with the source in parentheses unless it is the API:
        ``us``, ``us (config)``, ``eu/default/nginx (annotation)``."""
        return self.target if self.source == "api" else f"{self.target} ({self.source})"

    @property
    def bare(self) -> bool:
        """An API drain of which nothing is known (a version 1 file's)."""
        return self == Drain(self.cluster, self.service)

    def expired(self, now: float) -> bool:
        return self.until is not None and self.until <= now

    def to_dict(self) -> dict[str, Any]:
        """The drain as the API and ``/v1/status`` show it (with its source)."""
        return {**self.file_dict(), "source": self.source}

    def file_dict(self) -> dict[str, Any]:
        """The drain as the drains file keeps it (a ``details`` entry)."""
        return {"cluster": self.cluster, "service": self.service, "reason": self.reason,
                "since": self.since, "until": self.until, "by": self.by}

    @classmethod
    def from_dict(cls, d: Any) -> Drain:
        if not isinstance(d, dict) or not isinstance(d.get("cluster"), str):
            raise ValueError(f"bad details entry {d!r}")
        service = d.get("service")
        reason = d.get("reason", "")
        by = d.get("by", "")
        if service is not None and not isinstance(service, str):
            raise ValueError(f"bad service in details entry {d!r}")
        if not isinstance(reason, str) or not isinstance(by, str):
            raise ValueError(f"bad reason or by in details entry {d!r}")
        times = [d.get("since"), d.get("until")]
        for t in times:
            if t is not None and (isinstance(t, bool) or not isinstance(t, int | float)
                                  or not math.isfinite(t)):
                raise ValueError(f"bad since/until in details entry {d!r}")
        since, until = (None if t is None else float(t) for t in times)
        return cls(d["cluster"], service, reason, since, until, by)


@dataclass(frozen=True, slots=True)
class DrainSet:
    """Drained clusters and drained shards ``(cluster, service)``, with details.

    ``service`` is ``ShardSpec.service``: ``"ns/name"``, ``"ingress:ns/name"`` or
    ``"httproute:ns/name"``.
    ``details`` holds what is known of each drain (``Drain``), one per target
    and source; a drained name without one is an API drain with no reason, an
    unknown start and no expiry.
    """

    clusters: frozenset[str] = frozenset()
    shards: frozenset[tuple[str, str]] = frozenset()
    details: frozenset[Drain] = frozenset()

    @classmethod
    def of(cls, drains: Iterable[Drain]) -> DrainSet:
        """The set of ``drains`` (a later one with the same target and source wins)."""
        by_ident = {d.ident: d for d in drains}
        per_target = Counter(d.key for d in by_ident.values())
        return cls(frozenset(c for c, s, _ in by_ident if s is None),
                   frozenset((c, s) for c, s, _ in by_ident if s is not None),
                   # a bare API drain needs no details entry unless it shares its target
                   frozenset(d for d in by_ident.values()
                             if not (d.bare and per_target[d.key] == 1)))

    def union(self, other: DrainSet) -> DrainSet:
        """Every drain of both sets (``other``'s wins for the same target and source)."""
        if not (other.clusters or other.shards):
            return self
        if not (self.clusters or self.shards):
            return other
        return DrainSet.of([*self.entries(), *other.entries()])

    def reason(self, cluster: str, service: str) -> str | None:
        """Why the shard is drained, or None."""
        if cluster in self.clusters:
            return "cluster drained"
        if (cluster, service) in self.shards:
            return "shard drained"
        return None

    def names(self) -> DrainSet:
        """What the planner sees: the drained clusters and shards, no details."""
        return DrainSet(self.clusters, self.shards)

    def entries(self) -> list[Drain]:
        """Every drain: drained clusters first, then shards, each sorted, and
        one ``Drain`` per source of a target, in ``SOURCES`` order."""
        known: dict[DrainKey, list[Drain]] = {}
        for d in sorted(self.details, key=_by_source):
            known.setdefault(d.key, []).append(d)
        keys: list[DrainKey] = [(c, None) for c in sorted(self.clusters)]
        keys += sorted(self.shards)
        return [d for k in keys for d in known.get(k) or [Drain(*k)]]

    def drains_of(self, cluster: str, service: str | None = None) -> list[Drain]:
        """The drains of this cluster (``service`` None) or shard, one per source
        in ``SOURCES`` order; empty if it is not drained."""
        drained = (cluster in self.clusters if service is None
                   else (cluster, service) in self.shards)
        if not drained:
            return []
        mine = sorted((d for d in self.details if d.key == (cluster, service)), key=_by_source)
        return mine or [Drain(cluster, service)]

    def get(self, cluster: str, service: str | None = None) -> Drain | None:
        """The drain of this cluster (``service`` None) or shard, or None; the
        API's when there is one."""
        return next(iter(self.drains_of(cluster, service)), None)

    def sources(self, cluster: str, service: str | None = None) -> list[DrainSource]:
        """Where the drains of this cluster or shard come from (``SOURCES`` order)."""
        return [d.source for d in self.drains_of(cluster, service)]

    def covering(self, cluster: str, service: str | None = None) -> list[str]:
        """What keeps this cluster (``service`` None) or shard, or part of it,
        out besides its own API drain: its config and annotation drains, a
        shard's cluster drains, a cluster's shard drains; each as
        ``Drain.label`` names it (``us``, ``us (config)``)."""
        own = [d.label for d in self.drains_of(cluster, service) if d.source != "api"]
        if service is not None:
            return own + [d.label for d in self.drains_of(cluster)]
        return own + [d.label for c, s in sorted(self.shards) if c == cluster
                      for d in self.drains_of(c, s)]

    def expired(self, now: float) -> list[Drain]:
        return [d for d in self.entries() if d.expired(now)]

    def active(self, now: float) -> DrainSet:
        """This set without the drains whose ``until`` has passed."""
        return DrainSet.of(d for d in self.entries() if not d.expired(now))

    def next_expiry(self) -> float | None:
        """The earliest ``until`` of a drain, or None when nothing expires."""
        times = [d.until for d in self.entries() if d.until is not None]
        return min(times) if times else None

    def to_dict(self) -> dict[str, Any]:
        """The drains file: the API's drains only (declared ones are never
        written: every replica reads them from their origin)."""
        api = [d for d in self.entries() if d.source == "api"]
        return {
            "version": FILE_VERSION,
            "clusters": [d.cluster for d in api if d.service is None],
            "shards": [{"cluster": d.cluster, "service": d.service}
                       for d in api if d.service is not None],
            "details": [d.file_dict() for d in api if not d.bare],
        }

    @classmethod
    def from_dict(cls, d: Any) -> DrainSet:
        """Version 1 (names only) or 2 (names and details); ValueError if malformed."""
        if not isinstance(d, dict):
            raise ValueError("drains file is not a JSON object")
        version = d.get("version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"bad version {version!r}")
        clusters = d.get("clusters", [])
        shards = d.get("shards", [])
        details = d.get("details", [])
        if not isinstance(clusters, list) or not all(isinstance(c, str) for c in clusters):
            raise ValueError("'clusters' must be a list of strings")
        if not isinstance(shards, list):
            raise ValueError("'shards' must be a list")
        if not isinstance(details, list):
            raise ValueError("'details' must be a list")
        pairs: set[tuple[str, str]] = set()
        for s in shards:
            if not (isinstance(s, dict) and isinstance(s.get("cluster"), str)
                    and isinstance(s.get("service"), str)):
                raise ValueError(f"bad shard entry {s!r}")
            pairs.add((s["cluster"], s["service"]))
        names = DrainSet(frozenset(clusters), frozenset(pairs))
        known = [x for x in map(Drain.from_dict, details) if names.get(*x.key) is not None]
        bare = [Drain(c, s) for c, s in [*((c, None) for c in clusters), *pairs]]
        return cls.of([*bare, *known])


class Drains:
    """The current DrainSet; every change is written through to the store."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.current = DrainSet()

    def load(self) -> DrainSet:
        """The persisted drains, as they are (expired ones too: see ``expire``)."""
        data = self._store.load(DRAINS_FILE)
        if data is not None:
            try:
                self.current = DrainSet.from_dict(data)
            except ValueError as exc:
                self._store.report(
                    StateError(path=str(self._store.path(DRAINS_FILE)), why=str(exc)))
        return self.current

    def drain(self, cluster: str, service: str | None = None, *, now: float | None = None,
              reason: str = "", until: float | None = None, by: str = "") -> bool:
        """Drain a cluster (``service`` None) or one shard; True if what is drained
        changed. Draining it again keeps its start, replaces its expiry and
        ``by``, and its reason unless ``reason`` is empty; it returns False."""
        now = time.time() if now is None else now
        prev = self.current.get(cluster, service)
        if prev is not None:
            since = prev.since if prev.since is not None else now
            reason = reason or prev.reason
        else:
            since = now
        new = Drain(cluster, service, reason, since, until, by)
        if new == prev:
            return False
        others = [d for d in self.current.entries() if d.key != new.key]
        self.current = DrainSet.of([*others, new])
        saved = self._store.save(DRAINS_FILE, self.current.to_dict())
        log.info("drain cluster=%s service=%s reason=%r since=%s until=%s by=%s "
                 "again=%s persisted=%s", cluster, service or "-", reason, _time(since),
                 _time(until), by or "-", prev is not None, saved)
        return prev is None

    def undrain(self, cluster: str, service: str | None = None, *, now: float | None = None,
                by: str = "") -> bool:
        """End a drain; True if it was drained."""
        now = time.time() if now is None else now
        prev = self.current.get(cluster, service)
        if prev is None:
            return False
        saved = self._remove([prev])
        log.info("undrain cluster=%s service=%s reason=%r since=%s drained_for=%s by=%s "
                 "persisted=%s", cluster, service or "-", prev.reason, _time(prev.since),
                 _age(prev.since, now), by or "-", saved)
        return True

    def expire(self, now: float, *, at_start: bool = False) -> list[Drain]:
        """End every drain whose ``until`` has passed; return them."""
        gone = self.current.expired(now)
        if not gone:
            return []
        saved = self._remove(gone)
        for d in gone:
            log.info("drain_expired cluster=%s service=%s reason=%r since=%s until=%s "
                     "late=%.1fs at_start=%s persisted=%s", d.cluster, d.service or "-",
                     d.reason, _time(d.since), _time(d.until), now - (d.until or now),
                     at_start, saved)
        return gone

    def _remove(self, gone: list[Drain]) -> bool:
        keys = {d.key for d in gone}
        self.current = DrainSet.of(d for d in self.current.entries() if d.key not in keys)
        return self._store.save(DRAINS_FILE, self.current.to_dict())


class DeclaredDrains:
    """The drains every replica reads alike, kept in memory only: the config's
    ``drains`` (until their ``until``) and the ``fedns.io/drain`` annotations
    of the shards each cluster's source reports (``ShardSpec.drain``).

    ``current`` is a new DrainSet only when one of them changes, and a
    cluster's annotation drains are recomputed from that cluster's report
    alone, so a report costs no pass over every shard. A drain keeps the
    time this process first saw it as its ``since``.
    """

    def __init__(self) -> None:
        self._config: tuple[Drain, ...] = ()  # every drain the config declares
        self._active: tuple[Drain, ...] = ()  # those whose until has not passed
        self._annotated: dict[str, tuple[Drain, ...]] = {}  # cluster -> its drains
        self._config_path = "<memory>"
        self.current = DrainSet()

    def configure(self, config: Config, now: float) -> bool:
        """Take the config's drains (at start and on each reload); True if
        ``current`` changed."""
        before = {d.key: d for d in self._config}
        self._config = tuple(_config_drain(cd, before.get((cd.cluster, cd.service)), now)
                             for cd in config.drains)
        self._config_path = config.source_path
        after = {d.key for d in self._config}
        for d in self._config:
            if d.key not in before:
                log.info("config_drain cluster=%s service=%s reason=%r until=%s active=%s",
                         d.cluster, d.service or "-", d.reason, _time(d.until),
                         not d.expired(now))
        for key, d in before.items():
            if key not in after:
                log.info("config_undrain cluster=%s service=%s reason=%r drained_for=%s",
                         d.cluster, d.service or "-", d.reason, _age(d.since, now))
        return self._refresh(now)

    def observe(self, cluster: str, shards: Iterable[ShardSpec], now: float) -> bool:
        """Take the shards of ``cluster``'s new report; True if ``current`` changed."""
        before = {d.key: d for d in self._annotated.get(cluster, ())}
        after: dict[DrainKey, Drain] = {}
        for spec in shards:
            if spec.drain is not None and spec.cluster == cluster:
                key: DrainKey = (cluster, spec.service)
                after.setdefault(key, _annotation_drain(spec, before.get(key), now))
        if after == before:
            return False
        for d in after.values():
            if before.get(d.key) != d:
                log.info("annotation_drain cluster=%s service=%s reason=%r", cluster,
                         d.service, d.reason)
        for d in before.values():
            if d.key not in after:
                log.info("annotation_undrain cluster=%s service=%s drained_for=%s", cluster,
                         d.service, _age(d.since, now))
        self._annotated[cluster] = tuple(after.values())
        return self._refresh(now)

    def forget(self, cluster: str, now: float) -> bool:
        """Drop the annotation drains of a cluster no longer configured."""
        if self._annotated.pop(cluster, None) is None:
            return False
        return self._refresh(now)

    def expire(self, now: float) -> list[Drain]:
        """End the config drains whose ``until`` has passed since the last look;
        return them."""
        gone = [d for d in self._active if d.expired(now)]
        if gone:
            self._refresh(now)
        for d in gone:
            log.info("drain_expired cluster=%s service=%s reason=%r until=%s late=%.1fs "
                     "source=config", d.cluster, d.service or "-", d.reason, _time(d.until),
                     now - (d.until or now))
        return gone

    def next_expiry(self) -> float | None:
        """The earliest ``until`` of an active config drain, or None."""
        times = [d.until for d in self._active if d.until is not None]
        return min(times) if times else None

    def origin(self, drain: Drain) -> str:
        """Where a declared drain comes from and how to end it (the answer to
        an undrain through the API)."""
        if drain.source == "config":
            entry = f"cluster: {drain.cluster}"
            if drain.service is not None:
                entry += f", service: {drain.service}"
            return (f"drained by the config (drains: {{{entry}}} in {self._config_path}); "
                    "remove it there and reload")
        kind, ns, name = split_service(drain.service or "")
        return (f"drained by the annotation {DRAIN_ANNOTATION} on {kind} {ns}/{name} in "
                f"cluster {drain.cluster}; remove the annotation or set it to \"false\"")

    def _refresh(self, now: float) -> bool:
        self._active = tuple(d for d in self._config if not d.expired(now))
        annotated = (d for drains in self._annotated.values() for d in drains)
        new = DrainSet.of([*self._active, *annotated])
        changed = new != self.current
        self.current = new
        return changed


def _config_drain(cd: ConfigDrain, before: Drain | None, now: float) -> Drain:
    since = before.since if before is not None else now
    return Drain(cd.cluster, cd.service, cd.reason, since, cd.until, source="config")


def _annotation_drain(spec: ShardSpec, before: Drain | None, now: float) -> Drain:
    since = before.since if before is not None else now
    return Drain(spec.cluster, spec.service, spec.drain or "", since, source="annotation")


def _by_source(d: Drain) -> int:
    return _RANK[d.source]


def _time(t: float | None) -> str:
    return "-" if t is None else str(int(t))


def _age(since: float | None, now: float) -> str:
    return "-" if since is None else f"{max(0.0, now - since):.0f}s"


__all__ = ["MAX_REASON", "SOURCES", "DeclaredDrainError", "DeclaredDrains", "Drain",
           "DrainOptionError", "DrainSet", "DrainSource", "Drains", "check_duration",
           "check_reason", "parse_drain_duration"]
