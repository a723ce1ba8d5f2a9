"""Source factory: a configured Cluster -> the Source that watches it."""

from __future__ import annotations

import importlib
from typing import Any

from prometheus_client import CollectorRegistry

from config.model import Cluster, Config
from healthwatch.errors import SourceUnavailableError
from healthwatch.hostnames import ResolvingSource
from healthwatch.interfaces import Source
from healthwatch.static_source import StaticSource


def make_source(cluster: Cluster, config: Config, *,
                registry: CollectorRegistry | None = None) -> Source:
    """Build the Source for ``cluster``.

    Sources that may report LB hostnames are wrapped in a ``ResolvingSource``
    (SPEC §2); ``registry`` (a CollectorRegistry) gets the kube metrics.
    ``kubernetes`` sources live in ``healthwatch.kube`` and are imported only
    when a cluster uses them (the kubernetes client is heavy to import).
    """
    if cluster.source == "static":
        static = StaticSource(cluster, config)
        named = (any(s.hostnames for s in cluster.services)
                 or any(i.hostnames for i in cluster.ingresses))
        return ResolvingSource(static) if named else static
    if cluster.source == "kubernetes":
        try:
            kube: Any = importlib.import_module("healthwatch.kube")
        except ModuleNotFoundError as exc:
            if exc.name not in ("healthwatch.kube", "healthwatch"):
                raise
            raise SourceUnavailableError(
                cluster=cluster.name, source="kubernetes",
                why="the healthwatch.kube package is not installed") from exc
        factory = getattr(kube, "make_kube_source", None)
        if factory is None:
            raise SourceUnavailableError(
                cluster=cluster.name, source="kubernetes",
                why="healthwatch.kube has no make_kube_source()")
        extra = {"registry": registry} if registry is not None else {}
        source: Source = factory(cluster, config, **extra)
        return ResolvingSource(source)
    raise SourceUnavailableError(cluster=cluster.name, source=str(cluster.source),
                                 why="unknown source type")
