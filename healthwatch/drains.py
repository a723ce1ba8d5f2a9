"""Operator drains of a whole cluster or one shard, persisted in state_dir."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from healthwatch.errors import StateError
from healthwatch.state import DRAINS_FILE, StateStore

log = logging.getLogger("healthwatch.drains")


@dataclass(frozen=True, slots=True)
class DrainSet:
    """Drained clusters and drained shards ``(cluster, service)``.

    ``service`` is ``ShardSpec.service``: ``"ns/name"`` or ``"ingress:ns/name"``.
    """

    clusters: frozenset[str] = frozenset()
    shards: frozenset[tuple[str, str]] = frozenset()

    def reason(self, cluster: str, service: str) -> str | None:
        """Why the shard is drained, or None."""
        if cluster in self.clusters:
            return "cluster drained"
        if (cluster, service) in self.shards:
            return "shard drained"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "clusters": sorted(self.clusters),
            "shards": [{"cluster": c, "service": s} for c, s in sorted(self.shards)],
        }

    @classmethod
    def from_dict(cls, d: Any) -> DrainSet:
        if not isinstance(d, dict):
            raise ValueError("drains file is not a JSON object")
        clusters = d.get("clusters", [])
        shards = d.get("shards", [])
        if not isinstance(clusters, list) or not all(isinstance(c, str) for c in clusters):
            raise ValueError("'clusters' must be a list of strings")
        if not isinstance(shards, list):
            raise ValueError("'shards' must be a list")
        pairs: set[tuple[str, str]] = set()
        for s in shards:
            if not (isinstance(s, dict) and isinstance(s.get("cluster"), str)
                    and isinstance(s.get("service"), str)):
                raise ValueError(f"bad shard entry {s!r}")
            pairs.add((s["cluster"], s["service"]))
        return cls(frozenset(clusters), frozenset(pairs))


class Drains:
    """The current DrainSet; every change is written through to the store."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.current = DrainSet()

    def load(self) -> DrainSet:
        data = self._store.load(DRAINS_FILE)
        if data is not None:
            try:
                self.current = DrainSet.from_dict(data)
            except ValueError as exc:
                self._store.report(
                    StateError(path=str(self._store.path(DRAINS_FILE)), why=str(exc)))
        return self.current

    def drain(self, cluster: str, service: str | None = None) -> bool:
        """Drain a cluster (``service`` None) or one shard; True if it changed."""
        cur = self.current
        if service is None:
            new = DrainSet(cur.clusters | {cluster}, cur.shards)
        else:
            new = DrainSet(cur.clusters, cur.shards | {(cluster, service)})
        return self._set(new, "drain", cluster, service)

    def undrain(self, cluster: str, service: str | None = None) -> bool:
        cur = self.current
        if service is None:
            new = DrainSet(cur.clusters - {cluster}, cur.shards)
        else:
            new = DrainSet(cur.clusters, cur.shards - {(cluster, service)})
        return self._set(new, "undrain", cluster, service)

    def _set(self, new: DrainSet, event: str, cluster: str, service: str | None) -> bool:
        if new == self.current:
            return False
        self.current = new
        saved = self._store.save(DRAINS_FILE, new.to_dict())
        log.info("%s cluster=%s service=%s persisted=%s", event, cluster, service or "-", saved)
        return True
