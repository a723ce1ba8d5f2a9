"""Digest raw Kubernetes objects (decoded JSON) into the few facts fedns needs.

This runs on the watch threads, so the event loop only sees small frozen
values and memory grows with what matters, not with object size. Everything
here is pure; a malformed object raises ``ObjectError``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from healthwatch.kube.errors import ObjectError

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
PROBE_ANNOTATION = "fedns.io/probe"
WEIGHT_ANNOTATION = "fedns.io/weight"

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects
Labels = Mapping[str, str]
# Decides from (labels, annotations) whether an object is federated.
Marker = Callable[[Labels, Labels], bool]


@dataclass(frozen=True, slots=True)
class ServiceFacts:
    namespace: str
    name: str
    marked: bool  # federated by annotation/label (ServiceExports are joined later)
    load_balancer: bool  # spec.type == LoadBalancer
    addresses: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    cluster_ip: str | None = None
    port: int | None = None  # first service port
    probe: str | None = None  # raw fedns.io/probe annotation
    weight: str | None = None  # raw fedns.io/weight annotation


@dataclass(frozen=True, slots=True)
class SliceFacts:
    namespace: str
    name: str
    service: str | None  # label kubernetes.io/service-name
    ready: int  # ready addresses


@dataclass(frozen=True, slots=True)
class IngressFacts:
    namespace: str
    name: str
    marked: bool
    hosts: tuple[str, ...]  # rule hosts, lower-case, absolute
    addresses: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()  # backend Service names (same namespace)
    tls: bool = False
    probe: str | None = None
    weight: str | None = None


@dataclass(frozen=True, slots=True)
class NodeFacts:
    namespace: str  # always ""
    name: str
    region: str | None
    zone: str | None


@dataclass(frozen=True, slots=True)
class ExportFacts:
    namespace: str
    name: str


Facts = ServiceFacts | SliceFacts | IngressFacts | NodeFacts | ExportFacts


def _dict(value: Any, what: str, kind: str, name: str | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ObjectError(kind=kind, name=name, problem=f"{what} is not an object")
    return value


def _list(value: Any, what: str, kind: str, name: str | None) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ObjectError(kind=kind, name=name, problem=f"{what} is not a list")
    return value


def _strmap(value: Any, what: str, kind: str, name: str | None) -> dict[str, str]:
    raw = _dict(value, what, kind, name)
    if not all(isinstance(v, str) for v in raw.values()):
        raise ObjectError(kind=kind, name=name, problem=f"{what} has non-string values")
    return raw


@dataclass(frozen=True, slots=True)
class Meta:
    namespace: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    resource_version: str | None


def metadata(obj: Any, kind: str, *, namespaced: bool = True) -> Meta:
    if not isinstance(obj, dict):
        raise ObjectError(kind=kind, problem="object is not a JSON object")
    meta = _dict(obj.get("metadata"), "metadata", kind)
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ObjectError(kind=kind, problem="metadata.name missing")
    ns = meta.get("namespace", "") if namespaced else ""
    if not isinstance(ns, str) or (namespaced and not ns):
        raise ObjectError(kind=kind, name=name, problem="metadata.namespace missing")
    rv = meta.get("resourceVersion")
    full = f"{ns}/{name}" if ns else name
    return Meta(
        namespace=ns,
        name=name,
        labels=_strmap(meta.get("labels"), "metadata.labels", kind, full),
        annotations=_strmap(meta.get("annotations"), "metadata.annotations", kind, full),
        resource_version=rv if isinstance(rv, str) else None,
    )


def _lb_ingress(status: Any, kind: str, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    raw = _dict(status, "status", kind, name).get("loadBalancer")
    lb = _dict(raw, "status.loadBalancer", kind, name)
    addresses: list[str] = []
    hostnames: list[str] = []
    for entry in _list(lb.get("ingress"), "status.loadBalancer.ingress", kind, name):
        if not isinstance(entry, dict):
            continue
        ip = entry.get("ip")
        if isinstance(ip, str) and ip:
            try:
                text = str(ipaddress.ip_address(ip))
            except ValueError:
                text = ""
            if text and text not in addresses:
                addresses.append(text)
        host = entry.get("hostname")
        if isinstance(host, str) and host:
            absolute = host.lower().rstrip(".") + "."
            if absolute not in hostnames:
                hostnames.append(absolute)
    return tuple(addresses), tuple(hostnames)


def _optional_ip(value: Any) -> str | None:
    if not isinstance(value, str) or not value or value == "None":
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def service_facts(obj: Any, marker: Marker) -> ServiceFacts:
    meta = metadata(obj, "Service")
    full = f"{meta.namespace}/{meta.name}"
    spec = _dict(obj.get("spec"), "spec", "Service", full)
    addresses, hostnames = _lb_ingress(obj.get("status"), "Service", full)
    port: int | None = None
    ports = _list(spec.get("ports"), "spec.ports", "Service", full)
    if ports and isinstance(ports[0], dict) and isinstance(ports[0].get("port"), int):
        port = ports[0]["port"]
    return ServiceFacts(
        namespace=meta.namespace,
        name=meta.name,
        marked=marker(meta.labels, meta.annotations),
        load_balancer=spec.get("type") == "LoadBalancer",
        addresses=addresses,
        hostnames=hostnames,
        cluster_ip=_optional_ip(spec.get("clusterIP")),
        port=port,
        probe=meta.annotations.get(PROBE_ANNOTATION),
        weight=meta.annotations.get(WEIGHT_ANNOTATION),
    )


def slice_facts(obj: Any) -> SliceFacts:
    meta = metadata(obj, "EndpointSlice")
    full = f"{meta.namespace}/{meta.name}"
    ready = 0
    for ep in _list(obj.get("endpoints"), "endpoints", "EndpointSlice", full):
        if not isinstance(ep, dict):
            raise ObjectError(kind="EndpointSlice", name=full, problem="endpoint is not an object")
        conditions = _dict(ep.get("conditions"), "endpoints[].conditions", "EndpointSlice", full)
        # The API documents an absent ``ready`` as "unknown; interpret as ready".
        if conditions.get("ready") is False:
            continue
        ready += len(_list(ep.get("addresses"), "endpoints[].addresses", "EndpointSlice", full))
    return SliceFacts(
        namespace=meta.namespace,
        name=meta.name,
        service=meta.labels.get(SERVICE_NAME_LABEL),
        ready=ready,
    )


def _backend_service(backend: Any) -> str | None:
    if not isinstance(backend, dict):
        return None
    service = backend.get("service")
    if isinstance(service, dict) and isinstance(service.get("name"), str):
        name: str = service["name"]
        return name
    return None


def ingress_facts(obj: Any, marker: Marker) -> IngressFacts:
    meta = metadata(obj, "Ingress")
    full = f"{meta.namespace}/{meta.name}"
    spec = _dict(obj.get("spec"), "spec", "Ingress", full)
    hosts: list[str] = []
    backends: list[str] = []
    default = _backend_service(spec.get("defaultBackend"))
    if default:
        backends.append(default)
    for rule in _list(spec.get("rules"), "spec.rules", "Ingress", full):
        if not isinstance(rule, dict):
            raise ObjectError(kind="Ingress", name=full, problem="rule is not an object")
        host = rule.get("host")
        if isinstance(host, str) and host:
            absolute = host.lower().rstrip(".") + "."
            if absolute not in hosts:
                hosts.append(absolute)
        http = _dict(rule.get("http"), "spec.rules[].http", "Ingress", full)
        for path in _list(http.get("paths"), "spec.rules[].http.paths", "Ingress", full):
            name = _backend_service(path.get("backend") if isinstance(path, dict) else None)
            if name and name not in backends:
                backends.append(name)
    addresses, hostnames = _lb_ingress(obj.get("status"), "Ingress", full)
    return IngressFacts(
        namespace=meta.namespace,
        name=meta.name,
        marked=marker(meta.labels, meta.annotations),
        hosts=tuple(hosts),
        addresses=addresses,
        hostnames=hostnames,
        backends=tuple(backends),
        tls=bool(_list(spec.get("tls"), "spec.tls", "Ingress", full)),
        probe=meta.annotations.get(PROBE_ANNOTATION),
        weight=meta.annotations.get(WEIGHT_ANNOTATION),
    )


def _first_label(labels: Labels, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if value:
            return value
    return None


def node_facts(obj: Any) -> NodeFacts:
    meta = metadata(obj, "Node", namespaced=False)
    return NodeFacts(
        namespace="",
        name=meta.name,
        region=_first_label(meta.labels, REGION_LABELS),
        zone=_first_label(meta.labels, ZONE_LABELS),
    )


def export_facts(obj: Any) -> ExportFacts:
    meta = metadata(obj, "ServiceExport")
    return ExportFacts(namespace=meta.namespace, name=meta.name)
