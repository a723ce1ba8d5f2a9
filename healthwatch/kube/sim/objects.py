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
