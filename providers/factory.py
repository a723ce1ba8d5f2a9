"""Build a backend and a syncer for one configured provider."""

from __future__ import annotations

from collections.abc import Callable

from config.model import Config, Provider
from healthwatch.snapshot import Record, Snapshot
from providers.backend import Backend
from providers.delegation import delegation_records
from providers.errors import PermanentError
from providers.metrics import ProviderMetrics
from providers.rrset import publishable
from providers.syncer import Syncer


def make_backend(provider: Provider) -> Backend:
    if provider.type == "coredns-etcd":
        from providers.etcd import EtcdBackend
        return EtcdBackend(provider)
    if provider.type == "route53":
        from providers.route53 import Route53Backend
        return Route53Backend(provider)
    if provider.type == "clouddns":
        from providers.clouddns import CloudDnsBackend
        return CloudDnsBackend(provider)
    raise PermanentError(provider.name, f"unknown provider type {provider.type!r}")


def desired_records(config: Config, provider: Provider) -> Callable[[Snapshot], list[Record]]:
    """What ``provider`` publishes: the static view, or the delegation to fedns."""
    if provider.delegate:
        records = delegation_records(config)
        return lambda snapshot: list(records)
    return lambda snapshot: publishable(snapshot.static_view(), snapshot.zone)


def make_syncer(config: Config, provider: Provider, metrics: ProviderMetrics,
                backend: Backend | None = None) -> Syncer:
    return Syncer(backend if backend is not None else make_backend(provider), provider,
                  desired_records(config, provider), metrics)
