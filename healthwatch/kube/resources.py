"""The resources a member cluster is watched for, and how to list/watch each.

Custom resources (ServiceExports, the Gateway API's Gateways and HTTPRoutes)
go through ``CustomObjectsApi``. Those of the Gateway API are ``optional``: a
cluster need not install their CRDs, so a list refused for good (404: the API
is not served; 403: RBAC does not grant it) means "none here", not a failure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes import client

from healthwatch.kube.facts import (
    GATEWAY_GROUP,
    Facts,
    Marker,
    export_facts,
    gateway_facts,
    httproute_facts,
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
    group: str  # API group ("" for core), as RBAC rules name it
    # A cluster may not serve it (a CRD not installed): a list refused for good
    # (403/404) is "none of these here", to be asked again later, not an error.
    optional: bool = False


SERVICE_EXPORT = ("multicluster.x-k8s.io", "v1alpha1", "serviceexports")
GATEWAYS = (GATEWAY_GROUP, "v1", "gateways")
HTTPROUTES = (GATEWAY_GROUP, "v1", "httproutes")


def _custom(group: str, version: str, plural: str) -> Callable[[client.ApiClient], ListCall]:
    """The cluster-wide list/watch call of a custom resource."""

    def call(api: client.ApiClient) -> ListCall:
        lister = client.CustomObjectsApi(api).list_cluster_custom_object
        return partial(lister, group, version, plural)

    return call


def resources(
    marker: Marker, *, mode: str, nodes: bool, gateway_api: bool = False
) -> tuple[Resource, ...]:
    """The resources to watch: ServiceExports only in ``serviceexport`` mode,
    Nodes only when the config leaves region or zone to be discovered, and
    with ``gateway_api`` the Gateway API's Gateways and HTTPRoutes (optional:
    the source must treat their refusal for good as "none here")."""
    out = [
        Resource(
            "services",
            lambda api: client.CoreV1Api(api).list_service_for_all_namespaces,
            partial(service_facts, marker=marker),
            "",
        ),
        Resource(
            "endpointslices",
            lambda api: client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces,
            slice_facts,
            "discovery.k8s.io",
        ),
        Resource(
            "ingresses",
            lambda api: client.NetworkingV1Api(api).list_ingress_for_all_namespaces,
            partial(ingress_facts, marker=marker),
            "networking.k8s.io",
        ),
    ]
    if nodes:
        out.append(Resource("nodes", lambda api: client.CoreV1Api(api).list_node, node_facts, ""))
    if mode == "serviceexport":
        out.append(Resource("serviceexports", _custom(*SERVICE_EXPORT), export_facts,
                            SERVICE_EXPORT[0]))
    if gateway_api:
        out.append(Resource("gateways", _custom(*GATEWAYS), gateway_facts, GATEWAY_GROUP,
                            optional=True))
        out.append(Resource("httproutes", _custom(*HTTPROUTES),
                            partial(httproute_facts, marker=marker), GATEWAY_GROUP,
                            optional=True))
    return tuple(out)
