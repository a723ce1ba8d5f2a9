"""Prometheus metrics of the health engine (registered on a given registry)."""

from __future__ import annotations

from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily

from healthwatch.hysteresis import PENDING_REASON
from healthwatch.snapshot import Snapshot

PROBE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PlainHistogram:
    """A histogram in plain ints and floats, turned into a metric family at
    scrape time: no lock, so safe where taking one is not (the query path,
    a garbage-collector callback). One writer at a time."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def family(self, name: str, doc: str, labels: list[str], values: list[str],
               fam: HistogramMetricFamily | None = None) -> HistogramMetricFamily:
        fam = fam or HistogramMetricFamily(name, doc, labels=labels)
        buckets: list[tuple[str, float]] = []
        acc = 0
        for bound, c in zip(self.bounds, self.counts, strict=False):
            acc += c
            buckets.append((repr(bound), float(acc)))
        buckets.append(("+Inf", float(self.count)))
        fam.add_metric(values, buckets, self.total)
        return fam


class HealthMetrics:
    """Labels are bounded: configured clusters, federated services, fixed enums."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.shard_healthy = Gauge(
            "fedns_shard_healthy", "1 if the shard is healthy and served, else 0",
            ["service", "cluster", "region"], registry=registry)
        self.shard_drained = Gauge(
            "fedns_shard_drained", "1 if an operator drained the shard (or its cluster), else 0",
            ["service", "cluster", "region"], registry=registry)
        self.transitions = Counter(
            "fedns_health_transitions_total", "Shard health changes",
            ["service", "cluster", "direction"], registry=registry)
        self.failovers = Counter(
            "fedns_failovers_total",
            "Times a name started answering some region from outside it",
            ["service"], registry=registry)
        self.probe_duration = Histogram(
            "fedns_probe_duration_seconds", "Active probe duration",
            ["cluster"], buckets=PROBE_BUCKETS, registry=registry)
        self.probe_results = Counter(
            "fedns_probe_results_total", "Active probe results by outcome",
            ["cluster", "result"], registry=registry)
        self.snapshot_serial = Gauge(
            "fedns_snapshot_serial", "Serial of the published snapshot", registry=registry)
        self.snapshot_timestamp = Gauge(
            "fedns_snapshot_timestamp_seconds", "Unix time the published snapshot was built",
            registry=registry)
        self.snapshot_stale = Gauge(
            "fedns_snapshot_stale", "1 while serving last-known-good state from disk",
            registry=registry)
        self.source_up = Gauge(
            "fedns_source_up", "1 if the cluster's source is reachable", ["cluster"],
            registry=registry)
        self.source_synced = Gauge(
            "fedns_source_synced", "1 once the cluster's source has listed everything",
            ["cluster"], registry=registry)
        self._shard_labels: set[tuple[str, str, str]] = set()
        self._clusters: set[str] = set()

    def probe(self, cluster: str, kind: str, seconds: float) -> None:
        self.probe_duration.labels(cluster).observe(seconds)
        self.probe_results.labels(cluster, kind).inc()

    def published(self, snap: Snapshot, previous: Snapshot | None,
                  failover_services: list[str]) -> None:
        """Update every gauge from a newly published snapshot."""
        self.snapshot_serial.set(snap.serial)
        self.snapshot_timestamp.set(snap.generated_at)
        self.snapshot_stale.set(1 if snap.stale else 0)
        # Unchanged shards are the same objects as in ``previous`` (the planner
        # reuses them): skip their label calls, the costly part at scale.
        before = {(s.service, s.cluster): s for s in previous.shards} if previous else {}
        labels: set[tuple[str, str, str]] = set()
        for s in snap.shards:
            key = (s.service, s.cluster, s.region)
            labels.add(key)
            old = before.get((s.service, s.cluster))
            if old is s:
                continue
            self.shard_healthy.labels(*key).set(1 if s.healthy else 0)
            self.shard_drained.labels(*key).set(1 if s.drained else 0)
            # a shard leaving "probe pending" is a first verdict, not a transition
            if old is not None and old.reason != PENDING_REASON and old.healthy != s.healthy:
                self.transitions.labels(s.service, s.cluster,
                                        "up" if s.healthy else "down").inc()
        for key in self._shard_labels - labels:
            self.shard_healthy.remove(*key)
            self.shard_drained.remove(*key)
        self._shard_labels = labels
        clusters: set[str] = set()
        for c in snap.clusters:
            clusters.add(c.name)
            self.source_up.labels(c.name).set(1 if c.reachable else 0)
            self.source_synced.labels(c.name).set(1 if c.synced else 0)
        for name in self._clusters - clusters:
            self.source_up.remove(name)
            self.source_synced.remove(name)
        self._clusters = clusters
        for service in failover_services:
            self.failovers.labels(service).inc()
