"""Hostname load balancers resolved in the background, against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

import pytest
from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

from config.model import Cluster
from healthwatch.drains import DrainSet
from healthwatch.engine import Engine
from healthwatch.hostnames import HostnameResolver, ResolverOptions, ResolvingSource
from healthwatch.interfaces import ReportSink
from healthwatch.kube import KubeSource
from healthwatch.model import ClusterReport, ShardSpec
from healthwatch.planner import plan
from healthwatch.snapshot import UNKNOWN
from tests.fakekube import FakeKubeAPI, endpoint_slice, write_kubeconfig
from tests.fakekube import service as kube_service
from tests.healthwatch.helpers import gname, make_config, reports, rname, svc
from tests.healthwatch.kube.harness import FAST

ELB = "elb-1.example.net"


@dataclass
class Zone:
    """What the tiny authoritative server answers; tests change it while it runs."""

    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    ttl: int = 1
    servfail: bool = False
    queries: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, data: bytes) -> bytes:
        q = DNSRecord.parse(data)
        name = str(q.q.qname).rstrip(".").lower()
        qtype = QTYPE[q.q.qtype]
        self.queries.append((name, qtype))
        reply = q.reply()  # AA=1
        if self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
        elif name not in self.a and name not in self.aaaa:
            reply.header.rcode = RCODE.NXDOMAIN
        elif qtype == "A":
            for ip in self.a.get(name, []):
                reply.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(ip), ttl=self.ttl))
        elif qtype == "AAAA":
            for ip in self.aaaa.get(name, []):
                reply.add_answer(RR(q.q.qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=self.ttl))
        return bytes(reply.pack())


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(self.zone.answer(data), addr)


@pytest.fixture
async def dns_server() -> AsyncIterator[tuple[Zone, int]]:
    zone = Zone(a={ELB: ["192.0.2.50"]})
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Responder(zone), local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    yield zone, port
    transport.close()


def options(port: int, **kw: float) -> ResolverOptions:
    base: dict[str, float] = dict(min_ttl=0.05, max_ttl=10.0, timeout=0.3, lifetime=0.6,
                                  keep_stale=0.0, backoff_base=0.05, backoff_cap=0.2,
                                  settle=0.5)
    base.update(kw)
    return ResolverOptions(nameservers=("127.0.0.1",), port=port, **base)  # type: ignore[arg-type]


class FakeSource:
    """A Source whose reports the test pushes by hand."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.emit: ReportSink | None = None
        self.stopped = False

    async def start(self, emit: ReportSink) -> None:
        self.emit = emit

    async def stop(self) -> None:
        self.stopped = True

    def push(self, *shards: ShardSpec) -> None:
        assert self.emit is not None
        self.emit(ClusterReport(self.cluster, shards))


class Collector:
    def __init__(self) -> None:
        self.reports: list[ClusterReport] = []
        self.changed = asyncio.Event()

    def __call__(self, report: ClusterReport) -> None:
        self.reports.append(report)
        self.changed.set()

    async def wait_for(self, pred: Callable[[ShardSpec], bool], within: float = 5.0) -> ShardSpec:
        async def loop() -> ShardSpec:
            while True:
                if self.reports and pred(self.reports[-1].shards[0]):
                    return self.reports[-1].shards[0]
                self.changed.clear()
                await self.changed.wait()
        return await asyncio.wait_for(loop(), within)


async def wrapped(port: int, **kw: float) -> tuple[FakeSource, ResolvingSource, Collector]:
    inner = FakeSource("use")
    src = ResolvingSource(inner, options=options(port, **kw))
    got = Collector()
    await src.start(got)
    return inner, src, got


async def test_resolved_hostname_becomes_addresses_and_follows_the_ttl(
        dns_server: tuple[Zone, int]) -> None:
    zone, port = dns_server
    inner, src, got = await wrapped(port)
    try:
        inner.push(svc("use", "192.0.2.3", hostnames=(ELB,)))
        first = await got.wait_for(lambda s: True)
        # held for the first lookup: the first report already carries the addresses
        assert first.addresses == ("192.0.2.3", "192.0.2.50") and first.hostnames == ()
        assert {(ELB, "A"), (ELB, "AAAA")} <= set(zone.queries)
        loop = asyncio.get_running_loop()
        changed_at = loop.time()
        zone.a[ELB] = ["192.0.2.51", "192.0.2.52"]
        zone.aaaa[ELB] = ["2001:db8::51"]
        now = await got.wait_for(lambda s: "192.0.2.51" in s.addresses, within=3.0)
        assert loop.time() - changed_at >= 0.5  # not before the 1 s TTL ran out
        assert now.addresses == ("192.0.2.3", "192.0.2.51", "192.0.2.52", "2001:db8::51")
        assert now.hostnames == ()
        # re-resolved at the TTL, not in a tight loop
        assert len(zone.queries) <= 2 * 6
    finally:
        await src.stop()
    assert inner.stopped


async def test_unresolvable_hostname_stays_and_the_planner_answers_a_cname(
        dns_server: tuple[Zone, int]) -> None:
    zone, port = dns_server
    inner, src, got = await wrapped(port)
    try:
        inner.push(svc("use", hostnames=("gone.example.net",)))
        spec = await got.wait_for(lambda s: True)
        assert ("gone.example.net", "A") in zone.queries  # NXDOMAIN from the server
        assert spec.addresses == () and spec.hostnames == ("gone.example.net",)
        assert src.status() == [{"hostname": "gone.example.net", "addresses": [],
                                 "expires_in": None, "error": None, "looked_up": True}]
        snap = plan(make_config(), reports(spec), {}, DrainSet(), 1, 2000.0)
        assert [(r.rtype, r.value) for r in snap.geo_answer(gname(), UNKNOWN) or ()] == [
            ("CNAME", "gone.example.net.")]
    finally:
        await src.stop()


async def test_servfail_keeps_the_last_good_addresses_until_they_expire(
        dns_server: tuple[Zone, int]) -> None:
    zone, port = dns_server
    inner, src, got = await wrapped(port, keep_stale=0.6)
    try:
        inner.push(svc("use", hostnames=(ELB,)))
        await got.wait_for(lambda s: s.addresses == ("192.0.2.50",))
        loop = asyncio.get_running_loop()
        zone.servfail = True
        failing_from = loop.time()
        for _ in range(250):  # the next lookup (at the 1 s TTL) fails; bounded wait
            if src.status()[0]["error"]:
                break
            await asyncio.sleep(0.02)
        (failing,) = src.status()
        assert failing["addresses"] == ["192.0.2.50"] and failing["expires_in"] > 0
        spec = await got.wait_for(lambda s: not s.addresses, within=5.0)
        # kept through the 1 s TTL plus 0.6 s of staleness while lookups failed
        assert loop.time() - failing_from >= 1.0
        assert src.status()[0]["addresses"] == [] and src.status()[0]["error"]
        assert spec.hostnames == (ELB,)
        before = len(got.reports)
        zone.servfail = False  # the server recovers: the retry picks it up
        await got.wait_for(lambda s: s.addresses == ("192.0.2.50",), within=3.0)
        assert len(got.reports) == before + 1
    finally:
        await src.stop()


async def test_nameserver_that_never_answers_leaves_hostnames_after_the_hold() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    dead_port = transport.get_extra_info("sockname")[1]
    inner, src, got = await wrapped(dead_port, settle=0.2)
    try:
        inner.push(svc("use", "192.0.2.3", hostnames=(ELB,)))
        spec = await got.wait_for(lambda s: True, within=2.0)
        assert spec.addresses == ("192.0.2.3",) and spec.hostnames == (ELB,)
        err = src.resolver.lookup(ELB)
        assert err.addresses == ()
    finally:
        await src.stop()
        transport.close()


async def test_mixed_ip_and_hostname_shards_merge_into_one_a_answer(
        dns_server: tuple[Zone, int]) -> None:
    zone, port = dns_server
    zone.ttl = 30  # no re-resolution during the test
    resolver = HostnameResolver(options(port))  # one shared resolver, owned here
    await resolver.start()
    eu_inner, use_inner = FakeSource("eu"), FakeSource("use")
    eu, use = ResolvingSource(eu_inner, resolver), ResolvingSource(use_inner, resolver)
    eu_got, use_got = Collector(), Collector()
    await eu.start(eu_got)
    await use.start(use_got)
    try:
        eu_inner.push(svc("eu", "192.0.2.2"))
        use_inner.push(svc("use", hostnames=(ELB.upper() + ".",)))
        eu_spec = await eu_got.wait_for(lambda s: True)
        use_spec = await use_got.wait_for(lambda s: bool(s.addresses))
        assert use_spec.addresses == ("192.0.2.50",) and use_spec.hostnames == ()
        snap = plan(make_config(), reports(eu_spec, use_spec), {}, DrainSet(), 1, 2000.0)
        answer = snap.geo_answer(gname(), UNKNOWN) or ()
        assert sorted((r.rtype, r.value) for r in answer) == [
            ("A", "192.0.2.2"), ("A", "192.0.2.50")]
        region = [r for r in snap.records if r.name == rname("us-east1")]
        assert [(r.rtype, r.value) for r in region] == [("A", "192.0.2.50")]
        # a shared resolver asks once per hostname, whoever tracks it
        await use.stop()
        assert resolver.results() == ()
    finally:
        await eu.stop()
        await use.stop()
        await resolver.stop()
    assert zone.queries.count((ELB, "A")) == 1


async def test_kube_hostname_lb_merges_with_an_ip_cluster_through_the_engine(
        dns_server: tuple[Zone, int], tmp_path: object) -> None:
    """Fake member clusters -> KubeSource -> ResolvingSource -> Engine -> Snapshot."""
    zone, port = dns_server
    apis = {name: FakeKubeAPI(name=name) for name in ("a", "b")}
    for api in apis.values():
        await api.start()
    path = write_kubeconfig(os.path.join(str(tmp_path), "kubeconfig"),
                            [api.kubeconfig_entry(f"fed-{n}") for n, api in apis.items()])
    clusters = (
        Cluster("a", "us-east1", "us-east1-b", source="kubernetes", kubeconfig=path,
                context="fed-a"),
        Cluster("b", "europe-west1", "europe-west1-b", source="kubernetes", kubeconfig=path,
                context="fed-b"))
    config = make_config(clusters=clusters)
    resolver = HostnameResolver(options(port))
    await resolver.start()
    engine = Engine(config, source_factory=lambda c, cfg: ResolvingSource(
        KubeSource(c, cfg, FAST), resolver))
    apis["a"].apply("services", kube_service("web", lb_hostnames=[ELB]))
    apis["a"].apply("endpointslices", endpoint_slice("web", ready=1))
    apis["b"].apply("services", kube_service("web", lb_ips=["192.0.2.2"]))
    apis["b"].apply("endpointslices", endpoint_slice("web", ready=1))
    changed = asyncio.Event()
    engine.subscribe(lambda _s: changed.set())

    async def published(want: set[tuple[str, str]]) -> None:
        while {(r.rtype, r.value)
               for r in engine.snapshot.geo_answer(gname("web"), UNKNOWN) or ()} != want:
            changed.clear()
            await changed.wait()

    await engine.start()
    try:
        await asyncio.wait_for(published({("A", "192.0.2.2"), ("A", "192.0.2.50")}), 5.0)
        assert [(r.rtype, r.value) for r in engine.snapshot.records
                if r.name == rname("us-east1", "web")] == [("A", "192.0.2.50")]
        sources = engine.status()["sources"]
        (elb,) = sources["a"]["hostnames"]
        assert (elb["hostname"], elb["addresses"], elb["error"], elb["looked_up"]) == (
            ELB, ["192.0.2.50"], None, True)
        assert 0 < elb["expires_in"] <= 1.0 + 0.1  # the 1 s TTL (keep_stale 0)
        assert sources["b"]["hostnames"] == []
        zone.a[ELB] = ["192.0.2.51"]  # the ELB moves: the answer follows after the TTL
        await asyncio.wait_for(published({("A", "192.0.2.2"), ("A", "192.0.2.51")}), 5.0)
        zone.a.pop(ELB)  # NXDOMAIN now, and cluster b loses its service:
        apis["b"].delete("services", "default", "web")  # only the hostname is left
        await asyncio.wait_for(published({("CNAME", ELB + ".")}), 5.0)
    finally:
        await engine.stop()
        await resolver.stop()
        for api in apis.values():
            await api.kill()
