"""Prometheus metrics of the Kubernetes sources, per member cluster.

One ``KubeMetrics`` per registry, shared by every cluster's source
(``kube_metrics(registry)``); each source counts through its ``ClusterMetrics``
(labels bound to its cluster). Counters are thread-safe, so watcher threads
count directly. Labels are bounded: configured clusters, the resources fedns
watches, and fixed sets of event types and credential reload reasons.
"""

from __future__ import annotations

import contextlib
import threading
import weakref

from prometheus_client import CollectorRegistry, Counter, Gauge

EVENT_TYPES = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
RELOAD_REASONS = ("unauthorized", "tls_error", "file_changed")


class KubeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.watch_restarts = Counter(
            "fedns_kube_watch_restarts_total",
            "Watches started again after the previous one ended, broke or failed",
            ["cluster", "resource"], registry=registry)
        self.relists = Counter(
            "fedns_kube_relists_total",
            "Full lists after the first one (after 410 Gone; a retried relist counts once)",
            ["cluster", "resource"], registry=registry)
        self.events = Counter(
            "fedns_kube_events_total",
            "Watch events received, by type (malformed: unparseable lines or objects)",
            ["cluster", "resource", "type"], registry=registry)
        self.api_errors = Counter(
            "fedns_kube_api_errors_total",
            "Failed list or watch calls (HTTP errors, garbage bodies, connection failures; "
            "an optional resource's list refused with 403 once per refusal, a 404 not at all)",
            ["cluster", "resource", "op"], registry=registry)
        self.credential_reloads = Counter(
            "fedns_kube_credential_reloads_total",
            "Kubeconfig credentials loaded again while running, by reason (unauthorized: "
            "after a 401; tls_error: after a failed TLS handshake; file_changed: the "
            "kubeconfig or a file it names changed)",
            ["cluster", "reason"], registry=registry)
        self.last_contact = Gauge(
            "fedns_kube_last_contact_timestamp_seconds",
            "Unix time of the last successful contact with the cluster's API server",
            ["cluster"], registry=registry)

    def cluster(self, name: str) -> ClusterMetrics:
        return ClusterMetrics(self, name)


class ClusterMetrics:
    """The metrics of one cluster's source."""

    def __init__(self, metrics: KubeMetrics, cluster: str) -> None:
        self._m = metrics
        self.cluster = cluster
        self._lock = threading.Lock()
        # (resource,), (resource, type) or (resource, "op", op)
        self._series: set[tuple[str, ...]] = set()

    def watch_restarted(self, resource: str) -> None:
        self._m.watch_restarts.labels(self.cluster, resource).inc()
        self._note((resource,))

    def relisted(self, resource: str) -> None:
        self._m.relists.labels(self.cluster, resource).inc()
        self._note((resource,))

    def api_error(self, resource: str, op: str) -> None:
        self._m.api_errors.labels(self.cluster, resource, op).inc()
        self._note((resource, "op", op))

    def event(self, resource: str, kind: str) -> None:
        kind = kind if kind in EVENT_TYPES or kind == "malformed" else "unknown"
        self._m.events.labels(self.cluster, resource, kind).inc()
        self._note((resource, kind))

    def credentials_reloaded(self, reason: str) -> None:
        reason = reason if reason in RELOAD_REASONS else "unknown"
        self._m.credential_reloads.labels(self.cluster, reason).inc()

    def contact(self, unix_time: float) -> None:
        self._m.last_contact.labels(self.cluster).set(unix_time)

    def prepare(self, resources: list[str]) -> None:
        """Create the zero-valued counters so that rates exist before the first event."""
        for r in resources:
            self._m.watch_restarts.labels(self.cluster, r)
            self._m.relists.labels(self.cluster, r)
            self._note((r,))
            for op in ("list", "watch"):
                self._m.api_errors.labels(self.cluster, r, op)
                self._note((r, "op", op))
        for reason in RELOAD_REASONS:
            self._m.credential_reloads.labels(self.cluster, reason)

    def remove(self) -> None:
        """Drop this cluster's series (its source stopped)."""
        with self._lock:
            series, self._series = self._series, set()
        for key in series:
            if len(key) == 1:
                _drop(self._m.watch_restarts, self.cluster, key[0])
                _drop(self._m.relists, self.cluster, key[0])
            elif len(key) == 3:
                _drop(self._m.api_errors, self.cluster, key[0], key[2])
            else:
                _drop(self._m.events, self.cluster, *key)
        _drop(self._m.last_contact, self.cluster)
        for reason in (*RELOAD_REASONS, "unknown"):
            _drop(self._m.credential_reloads, self.cluster, reason)

    def _note(self, key: tuple[str, ...]) -> None:
        if key not in self._series:
            with self._lock:
                self._series.add(key)


def _drop(metric: Counter | Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, KubeMetrics] = (
    weakref.WeakKeyDictionary())
_BY_REGISTRY_LOCK = threading.Lock()


def kube_metrics(registry: CollectorRegistry) -> KubeMetrics:
    """The ``KubeMetrics`` registered on ``registry`` (created on first use), so
    that every cluster's source can share one registry."""
    with _BY_REGISTRY_LOCK:
        got = _BY_REGISTRY.get(registry)
        if got is None:
            got = KubeMetrics(registry)
            _BY_REGISTRY[registry] = got
        return got
