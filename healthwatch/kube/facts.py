"""Digest raw Kubernetes objects (decoded JSON) into the few facts fedns needs.

Gateway API objects are digested one by one too: an HTTPRoute's facts name
its Gateways (``ParentRef``), and ``ClusterState`` joins them.

This runs on the watch threads, so the event loop only sees small frozen
values and memory grows with what matters, not with object size. Everything
here is pure; a malformed object raises ``ObjectError``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from config.model import MAX_REASON
from healthwatch.kube.errors import ObjectError
from healthwatch.model import DRAIN_ANNOTATION as DRAIN_ANNOTATION  # beside the others

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
REGION_LABELS = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
ZONE_LABELS = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
GATEWAY_GROUP = "gateway.networking.k8s.io"
PROBE_ANNOTATION = "fedns.io/probe"
WEIGHT_ANNOTATION = "fedns.io/weight"
# DRAIN_ANNOTATION ("fedns.io/drain"; defined in healthwatch.model, where the
# drain API's answers name it too): its value is the reason; these values (any
# case) mean "not drained", so GitOps can toggle it, and these mean "drained"
# without saying why
NOT_DRAINED = frozenset({"false", "off", "no"})
DRAINED = frozenset({"true", "on", "yes"})
MAX_BACKEND_WEIGHT = 1_000_000  # HTTPRoute backendRefs[].weight: 0..1000000 (API schema)

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
    drain: str | None = None  # fedns.io/drain: the reason; None: not drained (drain_reason)


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
    drain: str | None = None


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


@dataclass(frozen=True, slots=True)
class Listener:
    """One listener of a Gateway: what an attached route's names default to
    and how it is probed."""

    name: str
    hostname: str | None  # absolute, lower-case (maybe ``*.x``); None: any host
    https: bool  # protocol HTTPS
    port: int | None = None  # spec.listeners[].port; None only if the object lacks it


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    """A Gateway (gateway.networking.k8s.io): the addresses its controller
    published, shared by every route attached to it."""

    namespace: str
    name: str
    listeners: tuple[Listener, ...] = ()
    addresses: tuple[str, ...] = ()  # status.addresses of type IPAddress
    hostnames: tuple[str, ...] = ()  # status.addresses of type Hostname, absolute


@dataclass(frozen=True, slots=True)
class ParentRef:
    """A Gateway (or one of its listeners, ``section``) an HTTPRoute attaches to."""

    gateway: Key
    section: str | None  # sectionName: one listener; None: all of them
    accepted: bool  # status.parents holds Accepted=True for this reference


@dataclass(frozen=True, slots=True)
class RouteFacts:
    """An HTTPRoute (gateway.networking.k8s.io); its Gateways are joined later."""

    namespace: str
    name: str
    marked: bool
    hostnames: tuple[str, ...] = ()  # spec.hostnames, lower-case, absolute
    parents: tuple[ParentRef, ...] = ()  # the parentRefs that name Gateways
    # the Services some backendRef with a weight above 0 names: those that get traffic
    backends: tuple[Key, ...] = ()
    # backendRefs exist and every one (of any kind) weighs 0: no traffic goes anywhere
    all_weights_zero: bool = False
    probe: str | None = None
    weight: str | None = None
    drain: str | None = None


Facts = (ServiceFacts | SliceFacts | IngressFacts | NodeFacts | ExportFacts | GatewayFacts
         | RouteFacts)


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


def drain_reason(annotations: Labels) -> str | None:
    """The reason a ``fedns.io/drain`` annotation gives, or None when the
    object is not drained that way (no annotation, or ``false``/``off``/``no``).
    ``true``/``on``/``yes`` and an empty value drain without a reason.

    An annotation is free text, so the reason is made fit for logs and
    ``fedns status`` rather than refused (a bad reason must not undo a drain):
    one line, printable characters only, at most MAX_REASON characters.
    """
    raw = annotations.get(DRAIN_ANNOTATION)
    if raw is None:
        return None
    word = raw.strip().lower()
    if word in NOT_DRAINED:
        return None
    if word in DRAINED:
        return ""
    text = " ".join("".join(c for c in raw if c.isprintable() or c.isspace()).split())
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 1] + "\u2026"
    return text


def _absolute(host: str) -> str:
    """A host as fedns keeps it: lower-case, with one trailing dot."""
    return host.lower().rstrip(".") + "."


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
            absolute = _absolute(host)
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
        drain=drain_reason(meta.annotations),
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
            absolute = _absolute(host)
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
        drain=drain_reason(meta.annotations),
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


# -- Gateway API (gateway.networking.k8s.io/v1) -------------------------------------

def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _objects(value: Any, what: str, kind: str, name: str) -> list[dict[str, Any]]:
    """A list whose entries must all be objects (a list of structs in the API)."""
    items = _list(value, what, kind, name)
    if not all(isinstance(item, dict) for item in items):
        raise ObjectError(kind=kind, name=name, problem=f"{what} has a non-object entry")
    return items


def _bounded_int(value: Any, low: int, high: int, what: str, kind: str, name: str) -> int | None:
    """An integer field within [low, high]; None when absent (null counts as
    absent). A bool is not an integer here, though Python says it is."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise ObjectError(kind=kind, name=name,
                      problem=f"{what} {shown} is not an integer in {low}..{high}")


def _listener(raw: dict[str, Any], full: str) -> Listener:
    hostname = _text(raw.get("hostname"))
    protocol = raw.get("protocol")
    return Listener(
        name=_text(raw.get("name")) or "",
        hostname=_absolute(hostname) if hostname else None,
        https=isinstance(protocol, str) and protocol.upper() == "HTTPS",
        port=_bounded_int(raw.get("port"), 1, 65535, "spec.listeners[].port", "Gateway", full),
    )


def _gateway_addresses(status: dict[str, Any], full: str) -> tuple[tuple[str, ...],
                                                                    tuple[str, ...]]:
    """``status.addresses``: IPs (type ``IPAddress``, the API's default) and
    hostnames (type ``Hostname``); other types and bad values are skipped."""
    addresses: list[str] = []
    hostnames: list[str] = []
    for entry in _objects(status.get("addresses"), "status.addresses", "Gateway", full):
        value = _text(entry.get("value"))
        kind = entry.get("type", "IPAddress")
        if value is None:
            continue
        if kind == "IPAddress":
            ip = _optional_ip(value)
            if ip is not None and ip not in addresses:
                addresses.append(ip)
        elif kind == "Hostname" and _absolute(value) not in hostnames:
            hostnames.append(_absolute(value))
    return tuple(addresses), tuple(hostnames)


def gateway_facts(obj: Any) -> GatewayFacts:
    meta = metadata(obj, "Gateway")
    full = f"{meta.namespace}/{meta.name}"
    spec = _dict(obj.get("spec"), "spec", "Gateway", full)
    status = _dict(obj.get("status"), "status", "Gateway", full)
    listeners = _objects(spec.get("listeners"), "spec.listeners", "Gateway", full)
    addresses, hostnames = _gateway_addresses(status, full)
    return GatewayFacts(
        namespace=meta.namespace,
        name=meta.name,
        listeners=tuple(_listener(raw, full) for raw in listeners),
        addresses=addresses,
        hostnames=hostnames,
    )


def _gateway_ref(raw: Any, namespace: str) -> tuple[Key, str | None] | None:
    """(Gateway, sectionName) that a parentRef names, or None when it names
    another kind of parent (a Service, for mesh routing). Group and kind default
    to the Gateway's, the namespace to the route's."""
    if not isinstance(raw, dict):
        return None
    if raw.get("group", GATEWAY_GROUP) != GATEWAY_GROUP or raw.get("kind", "Gateway") != "Gateway":
        return None
    name = _text(raw.get("name"))
    if name is None:
        return None
    return ((_text(raw.get("namespace")) or namespace, name), _text(raw.get("sectionName")))


def _accepted(status: dict[str, Any], namespace: str, full: str) -> set[tuple[Key, str | None]]:
    """The parent references whose ``status.parents`` entry (any controller's)
    holds the condition ``Accepted`` = ``"True"``."""
    out: set[tuple[Key, str | None]] = set()
    for entry in _objects(status.get("parents"), "status.parents", "HTTPRoute", full):
        ref = _gateway_ref(entry.get("parentRef"), namespace)
        conditions = _list(entry.get("conditions"), "status.parents[].conditions", "HTTPRoute",
                           full)
        if ref is not None and any(isinstance(c, dict) and c.get("type") == "Accepted"
                                   and c.get("status") == "True" for c in conditions):
            out.add(ref)
    return out


def _parents(spec: dict[str, Any], status: dict[str, Any], namespace: str,
             full: str) -> tuple[ParentRef, ...]:
    accepted = _accepted(status, namespace, full)
    out: list[ParentRef] = []
    for raw in _list(spec.get("parentRefs"), "spec.parentRefs", "HTTPRoute", full):
        ref = _gateway_ref(raw, namespace)
        if ref is not None:
            parent = ParentRef(gateway=ref[0], section=ref[1], accepted=ref in accepted)
            if parent not in out:
                out.append(parent)
    return tuple(out)


def _backend_weight(ref: dict[str, Any], full: str) -> int:
    """A backendRef's weight: its share of its rule's traffic (absent: 1, the
    API's default; 0: none)."""
    weight = _bounded_int(ref.get("weight"), 0, MAX_BACKEND_WEIGHT,
                          "spec.rules[].backendRefs[].weight", "HTTPRoute", full)
    return 1 if weight is None else weight


def _service_ref(ref: dict[str, Any], namespace: str) -> Key | None:
    """The Service a backendRef names (group ``""``, kind ``Service``: the
    defaults; the namespace defaults to the route's), or None for another kind."""
    if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
        return None
    name = _text(ref.get("name"))
    return None if name is None else (_text(ref.get("namespace")) or namespace, name)


def _backend_services(spec: dict[str, Any], namespace: str, full: str) -> tuple[
        tuple[Key, ...], bool]:
    """The Services the rules forward traffic to, in the order first named, and
    whether the route has backendRefs that all weigh 0. A Service named only
    with weight 0 gets no traffic, so its endpoints do not make the route
    ready; named in another rule with a weight above 0, it counts."""
    traffic: dict[Key, bool] = {}
    weights: list[int] = []
    for rule in _objects(spec.get("rules"), "spec.rules", "HTTPRoute", full):
        for ref in _list(rule.get("backendRefs"), "spec.rules[].backendRefs", "HTTPRoute", full):
            if not isinstance(ref, dict):
                continue
            weight = _backend_weight(ref, full)
            weights.append(weight)
            key = _service_ref(ref, namespace)
            if key is not None:
                traffic[key] = traffic.get(key, False) or weight > 0
    served = tuple(key for key, gets in traffic.items() if gets)
    return served, bool(weights) and not any(weights)


def httproute_facts(obj: Any, marker: Marker) -> RouteFacts:
    meta = metadata(obj, "HTTPRoute")
    full = f"{meta.namespace}/{meta.name}"
    spec = _dict(obj.get("spec"), "spec", "HTTPRoute", full)
    status = _dict(obj.get("status"), "status", "HTTPRoute", full)
    hostnames: list[str] = []
    for host in _list(spec.get("hostnames"), "spec.hostnames", "HTTPRoute", full):
        if isinstance(host, str) and host and _absolute(host) not in hostnames:
            hostnames.append(_absolute(host))
    backends, all_weights_zero = _backend_services(spec, meta.namespace, full)
    return RouteFacts(
        namespace=meta.namespace,
        name=meta.name,
        marked=marker(meta.labels, meta.annotations),
        hostnames=tuple(hostnames),
        parents=_parents(spec, status, meta.namespace, full),
        backends=backends,
        all_weights_zero=all_weights_zero,
        probe=meta.annotations.get(PROBE_ANNOTATION),
        weight=meta.annotations.get(WEIGHT_ANNOTATION),
        drain=drain_reason(meta.annotations),
    )
