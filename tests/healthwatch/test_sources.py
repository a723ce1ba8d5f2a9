"""The static source and the source factory."""

from __future__ import annotations

import sys
import types

import pytest

from config.model import Cluster, HttpProbe, StaticIngress, StaticService, TcpProbe
from healthwatch.errors import SourceUnavailableError
from healthwatch.hostnames import ResolvingSource
from healthwatch.interfaces import ReportSink
from healthwatch.model import ClusterReport
from healthwatch.sources import make_source
from healthwatch.static_source import StaticSource, default_probe
from tests.healthwatch.helpers import make_config

CLUSTER = Cluster(
    "us", "us-east1", "us-east1-b",
    services=(
        StaticService("nginx", "default", ("192.0.2.10",), ready=2, cluster_ip="10.0.0.1"),
        StaticService("api", "prod", ("2001:db8::5",), probe=TcpProbe("2001:db8::5", 443)),
        StaticService("elb", "prod", hostnames=("LB.Example.NET",)),
    ),
    ingresses=(StaticIngress("web", "default", ("Shop.Example.com.",), ("192.0.2.11",)),),
    default_probe="http", default_probe_path="ready",
)


async def test_static_source_reports_once_synced_and_reachable() -> None:
    got: list[ClusterReport] = []
    sink: ReportSink = got.append
    src = StaticSource(CLUSTER, make_config(clusters=(CLUSTER,)))
    await src.start(sink)
    await src.stop()
    assert len(got) == 1
    rep = got[0]
    assert rep.cluster == "us" and rep.synced and rep.reachable and rep.region == "us-east1"
    by = {s.name: s for s in rep.shards}
    assert by["nginx"].ready == 2 and by["nginx"].cluster_ip == "10.0.0.1"
    assert by["nginx"].probe == HttpProbe("http://192.0.2.10/ready")   # default probe
    assert by["api"].probe == TcpProbe("2001:db8::5", 443)             # explicit wins
    assert by["elb"].probe is None and by["elb"].hostnames == ("lb.example.net",)
    assert by["web"].kind == "ingress" and by["web"].hosts == ("shop.example.com.",)


def test_default_probe_kinds() -> None:
    tcp = Cluster("c", None, None, default_probe="tcp")
    assert default_probe(tcp, ("192.0.2.1",)) == TcpProbe("192.0.2.1", 80)
    http6 = Cluster("c", None, None, default_probe="http")
    assert default_probe(http6, ("2001:db8::1",)) == HttpProbe("http://[2001:db8::1]/healthz")
    assert default_probe(http6, ()) is None
    assert default_probe(Cluster("c", None, None), ("192.0.2.1",)) is None


def test_factory_static() -> None:
    # CLUSTER has an LB hostname: its static source is wrapped to resolve it
    src = make_source(CLUSTER, make_config())
    assert isinstance(src, ResolvingSource) and isinstance(src.inner, StaticSource)
    plain = Cluster("us", "us-east1", "us-east1-b", services=(CLUSTER.services[0],))
    assert isinstance(make_source(plain, make_config()), StaticSource)


def test_factory_kubernetes_missing_package_is_a_clear_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "healthwatch.kube", None)
    kc = Cluster("k", None, None, source="kubernetes")
    with pytest.raises(SourceUnavailableError, match="cluster k: source 'kubernetes'"):
        make_source(kc, make_config())


def test_factory_kubernetes_uses_make_kube_source(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("healthwatch.kube")
    seen: list[str] = []

    def make_kube_source(cluster: Cluster, config: object) -> object:
        seen.append(cluster.name)
        return StaticSource(cluster, make_config())

    fake.make_kube_source = make_kube_source  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "healthwatch.kube", fake)
    make_source(Cluster("k", None, None, source="kubernetes"), make_config())
    assert seen == ["k"]
