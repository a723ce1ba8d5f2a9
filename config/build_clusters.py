"""Clusters, their static services/ingresses and probes: config data -> model values."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from config import names
from config.build_kubernetes import Resolved, for_cluster
from config.model import (
    Cluster,
    FederateMode,
    Federation,
    HttpProbe,
    Network,
    Probe,
    StaticIngress,
    StaticService,
    TcpProbe,
)
from config.node import Node
from config.yamltree import Path

T = TypeVar("T")
_STATUS = re.compile(r"^\s*(\d{3})\s*(?:-\s*(\d{3})\s*)?$")
_MODES: dict[str, FederateMode] = {
    "annotation": "annotation",
    "label": "label",
    "serviceexport": "serviceexport",
}
_DEFAULT_PROBES: dict[str, Literal["none", "http", "tcp"]] = {
    "none": "none",
    "http": "http",
    "tcp": "tcp",
}
_KUBE_ONLY = ("kubeconfig", "context", "federation", "kubernetes")
_STATIC_ONLY = ("services", "ingresses")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def checked(node: Node, path: Path, text: str, parse: Callable[[str], T]) -> T | None:
    """``parse(text)``, reporting its ValueError at ``path``."""
    try:
        return parse(text)
    except ValueError as exc:
        node.ctx.error(path, str(exc))
        return None


def url(text: str) -> str:
    """An http(s) URL with a host and a valid port."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http:// or https:// URL")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return text.strip()


def networks(node: Node, key: str) -> tuple[Network, ...]:
    out = [checked(node, p, t, names.network) for p, t in node.texts(key)]
    return tuple(n for n in out if n is not None)


def addresses(node: Node, key: str) -> tuple[str, ...]:
    out = [checked(node, p, t, names.ip) for p, t in node.texts(key)]
    return tuple(a for a in out if a is not None)


def hostnames(node: Node, key: str) -> tuple[str, ...]:
    out = [checked(node, p, t, names.absolute) for p, t in node.texts(key)]
    return tuple(h for h in out if h is not None)


def probe(node: Node) -> Probe | None:
    """The probe of a service or ingress; the schema guarantees exactly one of http/tcp."""
    http, tcp = node.text("http"), node.text("tcp")
    if tcp is not None:
        for key in ("host", "status", "insecure"):
            if node.has(key):
                node.ctx.error(node.at(key), "only applies to http probes", at_key=True)
        hp = checked(node, node.at("tcp"), tcp, lambda t: names.hostport(t, need_ip=False))
        return TcpProbe(hp[0], hp[1]) if hp else None
    if http is None:
        return None
    target = checked(node, node.at("http"), http, url)
    lo, hi = 200, 399
    status = node.raw("status")
    if isinstance(status, int) and not isinstance(status, bool):
        lo = hi = status
    elif isinstance(status, str) and (m := _STATUS.match(status)):
        lo, hi = int(m[1]), int(m[2] or m[1])
        if lo > hi:
            node.ctx.error(node.at("status"), f"empty status range {status!r}")
    host = node.text("host")
    if host is not None:
        host = checked(node, node.at("host"), host, lambda h: names.absolute(h)[:-1])
    if target is None:
        return None
    return HttpProbe(target, host, lo, hi, bool(node.flag("insecure")))


def _generated_name_fits(node: Node, service: str, namespace: str) -> None:
    """The longest generated name (S.N.F.svc.AZ.REGION.Z) must fit in 253 characters."""
    ctx = node.ctx
    longest = max(
        (len(az) + len(r) + 2 for r, azs in ctx.region_zones.items() for az in (*azs, "")),
        default=0,
    )
    size = len(f"{service}.{namespace}.{ctx.federation}.svc.{ctx.zone}") + longest
    if ctx.zone and ctx.federation and size > 254:
        ctx.error(node.at("name"), f"generated names for {service}.{namespace} exceed 253 chars")


def service(node: Node) -> StaticService | None:
    name, namespace = node.text("name"), node.text("namespace")
    pnode = node.node("probe")
    cluster_ip = node.text("cluster_ip")
    built = StaticService(
        name=(name or "").lower(),
        namespace=(namespace or "").lower(),
        addresses=addresses(node, "addresses"),
        hostnames=hostnames(node, "hostnames"),
        ready=_or(node.integer("ready"), 1),
        cluster_ip=checked(node, node.at("cluster_ip"), cluster_ip, names.ip)
        if cluster_ip
        else None,
        probe=probe(pnode) if pnode else None,
        weight=node.integer("weight"),
    )
    if name is None or namespace is None:
        return None
    _generated_name_fits(node, built.name, built.namespace)
    return built


def ingress(node: Node) -> StaticIngress | None:
    zone = node.ctx.zone
    hosts: list[str] = []
    for path, text in node.texts("hosts"):
        host = checked(node, path, text, lambda t: names.absolute(t, zone, wildcard=True))
        if host is not None and zone is not None and not names.in_zone(host, zone):
            node.ctx.error(path, f"host {host} is outside the zone {zone}")
        elif host is not None and zone is not None and (why := names.ingress_host_refusal(
                host, zone, node.ctx.federation or "")) is not None:
            node.ctx.error(path, f"host {why[1]}")
        elif host is not None:
            hosts.append(host)
    pnode = node.node("probe")
    name, namespace = node.text("name"), node.text("namespace")
    built = StaticIngress(
        name=(name or "").lower(),
        namespace=(namespace or "").lower(),
        hosts=tuple(hosts),
        addresses=addresses(node, "addresses"),
        hostnames=hostnames(node, "hostnames"),
        ready=_or(node.integer("ready"), 1),
        probe=probe(pnode) if pnode else None,
    )
    return built if name is not None and namespace is not None else None


def _locality(node: Node, source: str) -> tuple[str | None, str | None]:
    """Region and AZ of a cluster, checked against ``regions`` (region derived from AZ)."""
    ctx = node.ctx
    region, zone = node.text("region"), node.text("zone")
    region = region.lower() if region else None
    zone = zone.lower() if zone else None
    if source == "static" and zone is None and not node.has("zone"):
        ctx.error(node.path, "a static cluster needs 'zone' (and 'region' unless the zone says it)")
    if region is not None and region not in ctx.region_zones:
        known = ", ".join(ctx.region_zones) or "none defined"
        ctx.error(node.at("region"), f"unknown region {region!r} (regions: {known})")
        return region, zone
    if zone is None:
        return region, zone
    owner = next((r for r, azs in ctx.region_zones.items() if zone in azs), None)
    if region is None:
        if owner is None:
            ctx.error(node.at("zone"), f"zone {zone!r} is not in any region's zones")
        return owner, zone
    if owner != region:
        zones = ", ".join(ctx.region_zones.get(region, ())) or "none"
        ctx.error(node.at("zone"), f"zone {zone!r} is not in region {region!r} (zones: {zones})")
    return region, zone


def cluster(node: Node, kube: Resolved) -> Cluster | None:
    """The cluster at ``node``; ``kube`` is the top-level ``kubernetes`` block,
    which a ``source: kubernetes`` cluster's own block overrides."""
    ctx = node.ctx
    source: Literal["static", "kubernetes"] = (
        "kubernetes" if node.text("source") == "kubernetes" else "static"
    )
    wrong = _STATIC_ONLY if source == "kubernetes" else _KUBE_ONLY
    for misplaced in wrong:
        if node.has(misplaced):
            ctx.error(node.at(misplaced), f"not allowed for a {source} cluster", at_key=True)
    region, zone = _locality(node, source)
    services = [s for s in map(service, node.nodes("services")) if s is not None]
    seen: dict[tuple[str, str], int] = {}
    for i, svc in enumerate(services):
        key = (svc.namespace, svc.name)
        if key in seen:
            ctx.error(
                (*node.at("services"), i, "name"),
                f"duplicate service {svc.namespace}/{svc.name} in this cluster",
            )
        seen.setdefault(key, i)
    ingresses = [g for g in map(ingress, node.nodes("ingresses")) if g is not None]
    fed = node.node("federation")
    kubeconfig = node.text("kubeconfig")
    mode = fed.text("mode") if fed else None
    dflt = Federation()
    federation = Federation(
        mode=_MODES.get(mode or "", dflt.mode),
        annotation=(fed.text("annotation") if fed else None) or dflt.annotation,
        label_selector=(fed.text("label_selector") if fed else None) or dflt.label_selector,
    )
    default_probe = node.text("default_probe")
    knobs = for_cluster(node, kube) if source == "kubernetes" else None
    name = node.text("name")
    if name is None:
        return None
    return Cluster(
        name=name,
        region=region,
        zone=zone,
        source=source,
        networks=networks(node, "networks"),
        services=tuple(services),
        ingresses=tuple(ingresses),
        kubeconfig=ctx.file_path(kubeconfig) if kubeconfig else None,
        context=node.text("context"),
        federation=federation,
        default_probe=_DEFAULT_PROBES.get(default_probe or "", "none"),
        default_probe_path=node.text("default_probe_path") or "/healthz",
        kubernetes=knobs,
    )
