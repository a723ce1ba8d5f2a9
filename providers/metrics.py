"""Prometheus metrics of the provider syncers, registered on a given registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ProviderMetrics:
    """One set of collectors shared by every syncer of a process."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.sync_duration = Histogram(
            "fedns_provider_sync_duration_seconds",
            "Duration of one provider sync (read, plan, apply, re-read).",
            ["provider"], registry=reg,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.changes = Counter(
            "fedns_provider_changes_total",
            "Record-set changes applied by a provider syncer.",
            ["provider", "action"], registry=reg,
        )
        self.errors = Counter(
            "fedns_provider_errors_total",
            "Provider errors by kind (transient, conflict, permanent, record, unsafe).",
            ["provider", "kind"], registry=reg,
        )
        self.last_success = Gauge(
            "fedns_provider_last_success_timestamp_seconds",
            "Unix time of the last successful sync.",
            ["provider"], registry=reg,
        )
        self.up = Gauge(
            "fedns_provider_up",
            "1 when the last sync of the provider succeeded, else 0.",
            ["provider"], registry=reg,
        )
