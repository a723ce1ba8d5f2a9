"""Build a backend and a syncer for one configured provider."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from config.model import Config, Provider
from healthwatch.snapshot import Record, Snapshot
from providers.backend import Backend
from providers.delegation import delegation_records
from providers.errors import PermanentError
from providers.geo import geo_regions, route_by_geo
from providers.latency import latency_regions, route_by_latency
from providers.metrics import ProviderMetrics
from providers.rrset import RRKey, RRSet, group, publishable
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


def desired_sets(config: Config, provider: Provider
                 ) -> Callable[[Snapshot], Mapping[RRKey, RRSet]]:
    """What ``provider`` publishes as record sets: ``desired_records`` grouped,
    geo-aware names routed where the provider asks for it (Route53 latency,
    Cloud DNS geo)."""
    records = desired_records(config, provider)
    latency = latency_regions(provider)
    if latency:
        return lambda snapshot: route_by_latency(snapshot, group(records(snapshot)), latency)
    geo = geo_regions(provider)
    if geo:
        return lambda snapshot: route_by_geo(snapshot, group(records(snapshot)), geo)
    return lambda snapshot: group(records(snapshot))


def make_syncer(config: Config, provider: Provider, metrics: ProviderMetrics,
                backend: Backend | None = None) -> Syncer:
    return Syncer(backend if backend is not None else make_backend(provider), provider,
                  desired_sets(config, provider), metrics)
