"""Objects, resourceVersions and the event history of a simulated cluster."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    kind: str
    api_version: str
    namespaced: bool


RESOURCES: dict[str, ResourceInfo] = {
    "services": ResourceInfo("Service", "v1", True),
    "nodes": ResourceInfo("Node", "v1", False),
    "endpointslices": ResourceInfo("EndpointSlice", "discovery.k8s.io/v1", True),
    "ingresses": ResourceInfo("Ingress", "networking.k8s.io/v1", True),
    "serviceexports": ResourceInfo("ServiceExport", "multicluster.x-k8s.io/v1alpha1", True),
    "gateways": ResourceInfo("Gateway", "gateway.networking.k8s.io/v1", True),
    "httproutes": ResourceInfo("HTTPRoute", "gateway.networking.k8s.io/v1", True),
}


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    resource: str
    type: str  # ADDED | MODIFIED | DELETED
    namespace: str
    line: bytes  # the JSON watch line, newline-terminated


class Expired(Exception):
    """The requested resourceVersion is older than the retained history."""


class ObjectStore:
    """All objects of one simulated cluster. Lives on one event loop."""

    def __init__(self, history: int = 10_000) -> None:
        self.rv = 1
        self.compacted = 0  # watches from a resourceVersion below this get 410 Gone
        self._objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {
            r: {} for r in RESOURCES
        }
        self._history: deque[Event] = deque()
        self._history_limit = history
        self._subscribers: dict[str, set[asyncio.Queue[Any]]] = {r: set() for r in RESOURCES}

    @staticmethod
    def info(resource: str) -> ResourceInfo:
        return RESOURCES[resource]

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object; returns the stored copy."""
        info = RESOURCES[resource]
        stored = copy.deepcopy(obj)
        stored.setdefault("apiVersion", info.api_version)
        stored.setdefault("kind", info.kind)
        meta = stored.setdefault("metadata", {})
        if info.namespaced:
            meta.setdefault("namespace", "default")
        key = (meta.get("namespace", ""), meta["name"])
        old = self._objects[resource].get(key)
        meta["uid"] = old["metadata"]["uid"] if old else str(uuid.uuid4())
        meta.setdefault("creationTimestamp", "2024-01-01T00:00:00Z")
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        self._objects[resource][key] = stored
        self._record(resource, "MODIFIED" if old else "ADDED", stored)
        return stored

    def delete(self, resource: str, namespace: str, name: str) -> bool:
        key = (namespace if RESOURCES[resource].namespaced else "", name)
        old = self._objects[resource].pop(key, None)
        if old is None:
            return False
        self.rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._record(resource, "DELETED", gone)
        return True

    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        key = (namespace if RESOURCES[resource].namespaced else "", name)
        return self._objects[resource].get(key)

    def items(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            obj
            for (ns, _), obj in sorted(self._objects[resource].items())
            if namespace is None or ns == namespace
        ]

    def since(self, resource: str, rv: int) -> list[Event]:
        """Events of ``resource`` after ``rv``; raises Expired if they are gone."""
        if rv < self.compacted:
            raise Expired(rv)
        return [e for e in self._history if e.rv > rv and e.resource == resource]

    def compact(self) -> None:
        """Forget all history: any watch from an older resourceVersion gets 410."""
        self._history.clear()
        self.compacted = self.rv

    def subscribe(self, resource: str) -> asyncio.Queue[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._subscribers[resource].add(queue)
        return queue

    def unsubscribe(self, resource: str, queue: asyncio.Queue[Any]) -> None:
        self._subscribers[resource].discard(queue)

    def _record(self, resource: str, type_: str, obj: dict[str, Any]) -> None:
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"
        event = Event(self.rv, resource, type_, obj["metadata"].get("namespace", ""), line)
        self._history.append(event)
        while len(self._history) > self._history_limit:
            self.compacted = self._history.popleft().rv
        for queue in self._subscribers[resource]:
            queue.put_nowait(event)
