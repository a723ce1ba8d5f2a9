"""Builders of the Kubernetes objects the simulator serves (plain JSON dicts)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

FEDERATE = {"fedns.io/federate": "true"}


def _meta(
    name: str,
    namespace: str | None,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _lb(ips: Sequence[str], hostnames: Sequence[str]) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [{"ip": ip} for ip in ips]
    entries += [{"hostname": h} for h in hostnames]
    return {"loadBalancer": {"ingress": entries} if entries else {}}


def service(
    name: str,
    namespace: str = "default",
    *,
    lb_ips: Sequence[str] = (),
    lb_hostnames: Sequence[str] = (),
    ports: Sequence[int] = (80,),
    type: str = "LoadBalancer",
    cluster_ip: str | None = "10.96.0.10",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = FEDERATE,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": type,
        "ports": [{"port": p, "protocol": "TCP", "name": f"p{p}"} for p in ports],
    }
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels, annotations),
        "spec": spec,
        "status": _lb(lb_ips, lb_hostnames),
    }


def endpoint_slice(
    service_name: str,
    namespace: str = "default",
    *,
    ready: int = 1,
    not_ready: int = 0,
    unknown: int = 0,
    name: str | None = None,
    base: str = "10.244.0.10",
    port: int = 8080,
) -> dict[str, Any]:
    """A slice with ``ready`` ready endpoints, ``not_ready`` not-ready ones and
    ``unknown`` whose ``ready`` condition is absent (which counts as ready)."""
    first = ipaddress.ip_address(base)
    endpoints: list[dict[str, Any]] = []
    for i, state in enumerate([True] * ready + [False] * not_ready + [None] * unknown):
        conditions: dict[str, Any] = {} if state is None else {"ready": state}
        endpoints.append({"addresses": [str(first + i)], "conditions": conditions})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(
            name or f"{service_name}-abcde",
            namespace,
            {"kubernetes.io/service-name": service_name},
            None,
        ),
        "addressType": "IPv6" if first.version == 6 else "IPv4",
        "endpoints": endpoints,
        "ports": [{"port": port, "protocol": "TCP"}],
    }


def ingress(
    name: str,
    namespace: str = "default",
    *,
    hosts: Sequence[str] = (),
    backend: str | None = None,
    lb_ips: Sequence[str] = (),
    lb_hostnames: Sequence[str] = (),
    tls: bool = False,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = FEDERATE,
) -> dict[str, Any]:
    rules: list[dict[str, Any]] = []
    for host in hosts:
        rule: dict[str, Any] = {"host": host}
        if backend:
            rule["http"] = {
                "paths": [
                    {
                        "path": "/",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": backend, "port": {"number": 80}}},
                    }
                ]
            }
        rules.append(rule)
    spec: dict[str, Any] = {"rules": rules}
    if tls:
        spec["tls"] = [{"hosts": list(hosts), "secretName": f"{name}-tls"}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(name, namespace, labels, annotations),
        "spec": spec,
        "status": _lb(lb_ips, lb_hostnames),
    }


def node(name: str, *, region: str | None = None, zone: str | None = None) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name}
    if region:
        labels["topology.kubernetes.io/region"] = region
    if zone:
        labels["topology.kubernetes.io/zone"] = zone
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(name, None, labels, None)}


def service_export(name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": _meta(name, namespace, None, None),
    }


GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY_CONTROLLER = "fedns.io/sim-gateway-controller"


def listener(
    name: str = "http",
    *,
    protocol: str = "HTTP",
    port: int | None = None,
    hostname: str | None = None,
) -> dict[str, Any]:
    """One ``spec.listeners`` entry of a Gateway (port 443 for HTTPS, else 80)."""
    entry: dict[str, Any] = {
        "name": name,
        "protocol": protocol,
        "port": port if port is not None else (443 if protocol == "HTTPS" else 80),
    }
    if hostname is not None:
        entry["hostname"] = hostname
    return entry


def gateway(
    name: str,
    namespace: str = "default",
    *,
    addresses: Sequence[str] = (),
    hostnames: Sequence[str] = (),
    listeners: Sequence[dict[str, Any]] | None = None,
    class_name: str = "sim",
) -> dict[str, Any]:
    """A Gateway whose controller published ``addresses`` (type IPAddress) and
    ``hostnames`` (type Hostname); one HTTP listener on port 80 by default."""
    status = [{"type": "IPAddress", "value": a} for a in addresses]
    status += [{"type": "Hostname", "value": h} for h in hostnames]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "Gateway",
        "metadata": _meta(name, namespace, None, None),
        "spec": {
            "gatewayClassName": class_name,
            "listeners": list(listeners) if listeners is not None else [listener()],
        },
        "status": {"addresses": status},
    }


def parent_ref(
    name: str, namespace: str | None = None, *, section: str | None = None
) -> dict[str, Any]:
    """A ``parentRefs`` entry naming a Gateway (namespace: the route's when None)."""
    ref: dict[str, Any] = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}
    if namespace is not None:
        ref["namespace"] = namespace
    if section is not None:
        ref["sectionName"] = section
    return ref


def _backend_ref(backend: str, weight: int | None, port: int) -> dict[str, Any]:
    namespace, _, name = backend.rpartition("/")
    ref: dict[str, Any] = {"name": name, "port": port}
    if namespace:
        ref["namespace"] = namespace
    if weight is not None:
        ref["weight"] = weight
    return ref


def httproute(
    name: str,
    namespace: str = "default",
    *,
    hostnames: Sequence[str] = (),
    parents: Sequence[str | dict[str, Any]] = ("gw",),
    backends: Sequence[str] = (),
    weights: Mapping[str, int] | None = None,
    backend_port: int = 80,
    accepted: bool = True,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = FEDERATE,
) -> dict[str, Any]:
    """An HTTPRoute attached to ``parents`` (Gateway names in the route's
    namespace, or ``parent_ref(...)``), with one rule forwarding to the Services
    ``backends`` (``name`` or ``namespace/name``) on ``backend_port``, each
    with the ``weight`` that ``weights`` gives it (none: the API's default,
    1). Its status says, for every parent, ``Accepted`` is ``accepted`` (as a
    Gateway controller writes it)."""
    refs = [parent_ref(p) if isinstance(p, str) else dict(p) for p in parents]
    weights = weights or {}
    spec: dict[str, Any] = {
        "parentRefs": refs,
        "rules": [{"backendRefs": [_backend_ref(b, weights.get(b), backend_port)
                                   for b in backends]}],
    }
    if hostnames:
        spec["hostnames"] = list(hostnames)
    condition = {
        "type": "Accepted",
        "status": "True" if accepted else "False",
        "reason": "Accepted" if accepted else "NotAllowedByListeners",
    }
    status = [
        {"parentRef": dict(ref), "controllerName": GATEWAY_CONTROLLER,
         "conditions": [dict(condition)]}
        for ref in refs
    ]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": _meta(name, namespace, labels, annotations),
        "spec": spec,
        "status": {"parents": status},
    }
