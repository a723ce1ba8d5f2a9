"""The resources a member cluster is watched for, and how to list/watch each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes import client

from healthwatch.kube.facts import (
    Facts,
    Marker,
    export_facts,
    ingress_facts,
    node_facts,
    service_facts,
    slice_facts,
)

ListCall = Callable[..., Any]  # a kubernetes-client list_* method


@dataclass(frozen=True, slots=True)
class Resource:
    name: str  # plural, used in logs, metrics and status ("services")
    call: Callable[[client.ApiClient], ListCall]
    digest: Callable[[Any], Facts]


SERVICE_EXPORT = ("multicluster.x-k8s.io", "v1alpha1", "serviceexports")


def _exports(api: client.ApiClient) -> ListCall:
    return partial(client.CustomObjectsApi(api).list_cluster_custom_object, *SERVICE_EXPORT)


def resources(marker: Marker, *, mode: str, nodes: bool) -> tuple[Resource, ...]:
    """The resources to watch: ServiceExports only in ``serviceexport`` mode,
    Nodes only when the config leaves region or zone to be discovered."""
    out = [
        Resource(
            "services",
            lambda api: client.CoreV1Api(api).list_service_for_all_namespaces,
            partial(service_facts, marker=marker),
        ),
        Resource(
            "endpointslices",
            lambda api: client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
            slice_facts,
        ),
        Resource(
            "ingresses",
            lambda api: client.NetworkingV1Api(api).list_ingress_for_all_namespaces,
            partial(ingress_facts, marker=marker),
        ),
    ]
    if nodes:
        out.append(Resource("nodes", lambda api: client.CoreV1Api(api).list_node, node_facts))
    if mode == "serviceexport":
        out.append(Resource("serviceexports", _exports, export_facts))
    return tuple(out)
