"""A simulated Kubernetes API server (aiohttp, HTTP wire level).

Shipped with the product so that ``fedns demo`` can run the Kubernetes path
without a cluster; the tests use it too (``tests.fakekube`` re-exports it).
It serves list and watch for the resources fedns reads (the Gateway API's
Gateways and HTTPRoutes included), with resourceVersions, bookmarks,
``410 Gone``, chunked watch streams, a request log, and fault controls (pause,
kill, restart, cut a stream, inject junk, withdraw an API group).
"""

from __future__ import annotations

from healthwatch.kube.sim.faults import Fault, FaultPlan
from healthwatch.kube.sim.fleet import SimFleet
from healthwatch.kube.sim.kubeconfig import KubeconfigEntry, write_kubeconfig
from healthwatch.kube.sim.objects import (
    endpoint_slice,
    gateway,
    httproute,
    ingress,
    listener,
    node,
    parent_ref,
    service,
    service_export,
)
from healthwatch.kube.sim.server import FakeKubeAPI, RequestRecord
from healthwatch.kube.sim.store import RESOURCES, ObjectStore

__all__ = [
    "RESOURCES",
    "FakeKubeAPI",
    "Fault",
    "FaultPlan",
    "KubeconfigEntry",
    "ObjectStore",
    "RequestRecord",
    "SimFleet",
    "endpoint_slice",
    "gateway",
    "httproute",
    "ingress",
    "listener",
    "node",
    "parent_ref",
    "service",
    "service_export",
    "write_kubeconfig",
]
