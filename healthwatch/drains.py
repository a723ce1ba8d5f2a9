"""Operator drains of a whole cluster or one shard, persisted in state_dir.

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
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from config.duration import DurationError, parse_duration
from healthwatch.errors import HealthwatchError, StateError
from healthwatch.state import DRAINS_FILE, StateStore

log = logging.getLogger("healthwatch.drains")

FILE_VERSION = 2
MAX_REASON = 200  # characters
MAX_DURATION = 7 * 86400.0  # seconds: a drain meant to last longer belongs in the config

DrainKey = tuple[str, str | None]  # (cluster, None) or (cluster, service)


class DrainOptionError(HealthwatchError):
    """A drain's reason or duration is not acceptable."""


def check_reason(reason: str) -> str:
    """``reason`` without surrounding blanks; DrainOptionError if unusable."""
    if not isinstance(reason, str):
        raise DrainOptionError(f"reason must be a string, got {type(reason).__name__}")
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise DrainOptionError(f"reason is {len(text)} characters long; at most {MAX_REASON}")
    if not text.isprintable():
        raise DrainOptionError("reason must be printable text (no control characters, "
                               "no line breaks)")
    return text


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

    @property
    def key(self) -> DrainKey:
        return (self.cluster, self.service)

    @property
    def target(self) -> str:
        return self.cluster if self.service is None else f"{self.cluster}/{self.service}"

    def expired(self, now: float) -> bool:
        return self.until is not None and self.until <= now

    def to_dict(self) -> dict[str, Any]:
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
    ``details`` holds what is known of each drain (``Drain``); a drained name
    without one has no reason, an unknown start and no expiry.
    """

    clusters: frozenset[str] = frozenset()
    shards: frozenset[tuple[str, str]] = frozenset()
    details: frozenset[Drain] = frozenset()

    @classmethod
    def of(cls, drains: Iterable[Drain]) -> DrainSet:
        """The set of ``drains`` (a later one with the same key wins)."""
        by_key = {d.key: d for d in drains}
        return cls(frozenset(c for c, s in by_key if s is None),
                   frozenset((c, s) for c, s in by_key if s is not None),
                   frozenset(d for d in by_key.values() if d != Drain(*d.key)))

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
        """One ``Drain`` per drained cluster or shard, clusters first, sorted."""
        known = {d.key: d for d in self.details}
        keys: list[DrainKey] = [(c, None) for c in sorted(self.clusters)]
        keys += sorted(self.shards)
        return [known.get(k) or Drain(k[0], k[1]) for k in keys]

    def get(self, cluster: str, service: str | None = None) -> Drain | None:
        """The drain of this cluster (``service`` None) or shard, or None."""
        drained = (cluster in self.clusters if service is None
                   else (cluster, service) in self.shards)
        if not drained:
            return None
        return next((d for d in self.details if d.key == (cluster, service)),
                    Drain(cluster, service))

    def covering(self, cluster: str, service: str | None = None) -> list[str]:
        """The drains other than this cluster's (``service`` None) or shard's
        own that keep it, or part of it, out: a shard's cluster drain, a
        cluster's shard drains (as ``Drain.target`` names them)."""
        if service is not None:
            return [cluster] if cluster in self.clusters else []
        return sorted(f"{c}/{s}" for c, s in self.shards if c == cluster)

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
        return {
            "version": FILE_VERSION,
            "clusters": sorted(self.clusters),
            "shards": [{"cluster": c, "service": s} for c, s in sorted(self.shards)],
            "details": [d.to_dict() for d in self.entries() if d != Drain(*d.key)],
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


def _time(t: float | None) -> str:
    return "-" if t is None else str(int(t))


def _age(since: float | None, now: float) -> str:
    return "-" if since is None else f"{max(0.0, now - since):.0f}s"


__all__ = ["Drain", "DrainOptionError", "DrainSet", "Drains", "check_duration",
           "check_reason", "parse_drain_duration"]
