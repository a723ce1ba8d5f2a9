"""Kubernetes member clusters as a source of shards and health (SPEC §4).

``make_kube_source(cluster, config)`` returns a ``Source`` that list+watches
Services, EndpointSlices, Ingresses, Nodes and (in ``serviceexport`` mode)
ServiceExports of one cluster and emits ``ClusterReport``s on change.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from config.model import Cluster, Config
from healthwatch.interfaces import Source
from healthwatch.kube.errors import KubeconfigError, KubeError, ObjectError
from healthwatch.kube.metrics import KubeMetrics, kube_metrics
from healthwatch.kube.options import KubeOptions
from healthwatch.kube.source import KubeSource

__all__ = [
    "KubeError",
    "KubeMetrics",
    "KubeOptions",
    "KubeSource",
    "KubeconfigError",
    "ObjectError",
    "kube_metrics",
    "make_kube_source",
]


def make_kube_source(
    cluster: Cluster,
    config: Config,
    options: KubeOptions | None = None,
    *,
    registry: CollectorRegistry | None = None,
) -> Source:
    """The Source for a ``source: kubernetes`` cluster; with ``registry``, its
    watches are counted in the ``fedns_kube_*`` metrics (see ``metrics.py``)."""
    return KubeSource(cluster, config, options, registry=registry)
