"""The simulated Kubernetes API server for tests (lives in ``healthwatch.kube.sim``
because ``fedns demo`` ships it too)."""

from healthwatch.kube.sim import (
    RESOURCES,
    FakeKubeAPI,
    KubeconfigEntry,
    ObjectStore,
    RequestRecord,
    endpoint_slice,
    gateway,
    httproute,
    ingress,
    listener,
    node,
    parent_ref,
    service,
    service_export,
    write_kubeconfig,
)

__all__ = [
    "RESOURCES",
    "FakeKubeAPI",
    "KubeconfigEntry",
    "ObjectStore",
    "RequestRecord",
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
