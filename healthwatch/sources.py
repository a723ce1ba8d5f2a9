"""Source factory: a configured Cluster -> the Source that watches it."""

from __future__ import annotations

import importlib
from typing import Any

from config.model import Cluster, Config
from healthwatch.errors import SourceUnavailableError
from healthwatch.interfaces import Source
from healthwatch.static_source import StaticSource


def make_source(cluster: Cluster, config: Config) -> Source:
    """Build the Source for ``cluster``.

    ``kubernetes`` sources live in ``healthwatch.kube`` and are imported only
    when a cluster uses them (the kubernetes client is heavy to import).
    """
    if cluster.source == "static":
        return StaticSource(cluster, config)
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
        source: Source = factory(cluster, config)
        return source
    raise SourceUnavailableError(cluster=cluster.name, source=str(cluster.source),
                                 why="unknown source type")
