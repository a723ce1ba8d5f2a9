"""``fedns.io/drain`` on a federated Service, Ingress or HTTPRoute drains its
shard in every replica (they all watch the same member clusters): its value is
the reason; ``false``, ``off`` or ``no`` (any case) mean not drained, so GitOps
can toggle it. Parsed in facts, carried on ``ShardSpec.drain``, turned into a
drain by the engine; end to end through the real kubernetes client against
the simulated API server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.model import MAX_REASON, Federation
from healthwatch.drains import DeclaredDrainError
from healthwatch.kube.facts import (
    DRAIN_ANNOTATION,
    drain_reason,
    gateway_facts,
    httproute_facts,
    ingress_facts,
    service_facts,
)
from healthwatch.kube.translate import (
    attachment,
    httproute_shard,
    ingress_shard,
    make_marker,
    service_shard,
)
from healthwatch.snapshot import ShardStatus, Snapshot
from tests.fakekube import FakeKubeAPI, endpoint_slice, gateway, httproute, ingress, service
from tests.healthwatch.kube.harness import One, one_cluster, watched
from tests.healthwatch.kube.test_engine_kube import _published
from tests.healthwatch.kube.test_translate import ctx

FEDERATE = {"fedns.io/federate": "true"}
ANNOTATED = make_marker(Federation())
LOG = logging.getLogger("test")


@pytest.mark.parametrize(("value", "reason"), [
    ("kernel upgrade, INC-4711", "kernel upgrade, INC-4711"),
    ("  bad canary  ", "bad canary"),
    ("", ""),  # present without a reason: drained
    ("true", ""), ("Yes", ""), ("ON", ""),  # a switch that says "drained"
    ("false", None), ("FALSE", None), ("Off", None), (" no ", None),  # GitOps' "not now"
    ("two\nlines\tand tabs", "two lines and tabs"),  # one printable line
    ("bell\x07 rings", "bell rings"),
])
def test_the_value_is_the_reason_and_false_off_no_mean_not_drained(
        value: str, reason: str | None) -> None:
    assert drain_reason({DRAIN_ANNOTATION: value, **FEDERATE}) == reason


def test_no_annotation_is_no_drain_and_a_long_reason_is_cut() -> None:
    assert drain_reason(FEDERATE) is None
    long = drain_reason({DRAIN_ANNOTATION: "x" * 1000})
    assert long is not None and len(long) == MAX_REASON and long.endswith("\u2026")


def test_every_federated_kind_carries_it_to_its_shard() -> None:
    ann = {**FEDERATE, DRAIN_ANNOTATION: "maintenance"}
    svc = service_facts(service("web", lb_ips=["192.0.2.1"], annotations=ann), ANNOTATED)
    spec = service_shard(svc, ctx(), ready=1, exported=False, log=LOG)
    assert spec is not None and spec.drain == "maintenance"

    ing = ingress_facts(ingress("shop", hosts=["shop.example.com"], lb_ips=["192.0.2.2"],
                                annotations={**ann, DRAIN_ANNOTATION: "off"}), ANNOTATED)
    ispec = ingress_shard(ing, ctx(), ready=None, log=LOG)
    assert ispec is not None and ispec.drain is None

    gw = {("default", "gw"): gateway_facts(gateway("gw", addresses=["192.0.2.5"]))}
    route = httproute_facts(httproute("shop", hostnames=["shop.example.com"],
                                      annotations=ann), ANNOTATED)
    rspec = httproute_shard(route, attachment(route, gw), ctx(), ready=None, log=LOG)
    assert rspec is not None and rspec.drain == "maintenance"


# -- end to end: the real client, the simulated API server, the engine -----------------


@pytest.fixture
async def one(tmp_path: Path) -> AsyncIterator[One]:
    """One simulated cluster ``a`` with the federated Service ``web`` (192.0.2.10)
    and the federated HTTPRoute ``shop`` on Gateway ``gw``; an engine watches it."""
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"], backends=["web"]))
    async with watched(api, one_cluster(api, str(tmp_path), 5.0)) as one:
        yield one


def _shard(snap: Snapshot, service: str) -> ShardStatus | None:
    return next((s for s in snap.shards if s.service == service), None)


def _healthy(service: str) -> object:
    return lambda s: (x := _shard(s, service)) is not None and x.healthy


def _drained(service: str) -> object:
    return lambda s: (x := _shard(s, service)) is not None and x.drained


async def test_annotating_a_service_drains_its_shard_and_false_undrains_it(one: One) -> None:
    await _published(one.engine, _healthy("default/web"), within=5.0)
    one.api.apply("services", service("web", lb_ips=["192.0.2.10"], annotations={
        **FEDERATE, DRAIN_ANNOTATION: "bad canary, INC-1"}))
    snap = await _published(one.engine, _drained("default/web"), within=5.0)
    web = _shard(snap, "default/web")
    assert web is not None and not web.healthy and web.reason == "shard drained"
    d = one.engine.drains.get("a", "default/web")
    assert d is not None and (d.source, d.reason) == ("annotation", "bad canary, INC-1")
    route = _shard(snap, "httproute:default/shop")
    assert route is not None and route.healthy  # its own object is not annotated
    # the drain API cannot end it, and says where it comes from
    with pytest.raises(DeclaredDrainError) as info:
        one.engine.undrain("a", "default/web")
    assert str(info.value).startswith(
        "a/default/web is drained by the annotation fedns.io/drain on service default/web "
        "in cluster a")

    one.api.apply("services", service("web", lb_ips=["192.0.2.10"], annotations={
        **FEDERATE, DRAIN_ANNOTATION: "False"}))  # GitOps toggles it off
    await _published(one.engine, _healthy("default/web"), within=5.0)
    assert one.engine.drains.get("a", "default/web") is None


async def test_annotating_an_httproute_drains_its_host_shard(one: One) -> None:
    await _published(one.engine, _healthy("httproute:default/shop"), within=5.0)
    one.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"],
                                          backends=["web"],
                                          annotations={**FEDERATE, DRAIN_ANNOTATION: ""}))
    snap = await _published(one.engine, _drained("httproute:default/shop"), within=5.0)
    assert _shard(snap, "default/web") is not None
    assert one.engine.drains.sources("a", "httproute:default/shop") == ["annotation"]
    # removing the annotation undrains it as "false" does
    one.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"],
                                          backends=["web"]))
    await _published(one.engine, _healthy("httproute:default/shop"), within=5.0)
