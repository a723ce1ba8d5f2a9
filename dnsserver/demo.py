"""``fedns demo``: a whole federation on loopback, no Kubernetes needed.

Three member clusters in three real regions. Each is a simulated Kubernetes
API server (``healthwatch.kube.sim``: list+watch of Nodes, Services,
EndpointSlices, Gateways and HTTPRoutes, reached through a generated
kubeconfig) whose federated
Service ``default/nginx`` has a load balancer on 127.0.N.1: an HTTP server
serving ``/`` and ``/healthz`` that the engine probes (``fedns.io/probe``
annotation).

Each cluster also shows the Gateway API path (docs/kubernetes.md §4a): a
Gateway ``default/web`` (listener ``http``, port 80, hostname
``shop.example.com``; its status address is the cluster's backend IP) that
accepted the federated HTTPRoute ``default/shop`` (the same hostname,
backend Service ``nginx``). So ``shop.example.com`` is a geo-aware name like
the Service's global name, and the walkthrough digs it before and after a
failure. The route is probed through the same backend HTTP server (its
``fedns.io/probe`` names the backend's port), so failing a backend fails
both shards of that cluster.

``--static`` declares the same shards as ``source: static``; static
clusters have no HTTPRoutes, so there the host is the cluster's static
ingress ``default/shop``. Clients in 127.0.N.0/24 sit in cluster N's zone,
so ``dig -b 127.0.N.10`` asks as one of them. Failing a backend
(``POST /demo/clusters/<name>/fail``) makes its probe fail; its clients move
to the nearest other region by great-circle distance, and come back after
``/restore``. The config is an ordinary YAML file (written to a temporary
directory and validated by the normal loader), so SIGHUP reload works too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from config.loader import load
from dnsserver.app import App
from dnsserver.http_api import ApiError, Route
from healthwatch.kube.facts import PROBE_ANNOTATION
from healthwatch.kube.sim import SimFleet, gateway, httproute, listener
from healthwatch.kube.sim.objects import FEDERATE

log = logging.getLogger("dnsserver.demo")

ZONE = "example.com."
FEDERATION = "demo"
SERVICE = "nginx"
NAMESPACE = "default"
GLOBAL_NAME = f"{SERVICE}.{NAMESPACE}.{FEDERATION}.svc.{ZONE}"
# The Gateway API path: Gateway default/web accepts the federated HTTPRoute
# default/shop, whose hostname (inside the zone) becomes a geo-aware name.
GATEWAY = "web"
ROUTE = "shop"
ROUTE_HOST = f"shop.{ZONE}"  # absolute; Kubernetes spells it without the final dot


@dataclass(frozen=True, slots=True)
class DemoCluster:
    name: str
    region: str
    zone: str
    octet: int  # backend 127.0.<octet>.1, clients 127.0.<octet>.0/24

    @property
    def backend_ip(self) -> str:
        return f"127.0.{self.octet}.1"

    @property
    def client_ip(self) -> str:
        return f"127.0.{self.octet}.10"

    @property
    def network(self) -> str:
        return f"127.0.{self.octet}.0/24"


# Real coordinates, so distance fallback is visible: us-west1 (Oregon) is
# nearer to us-east1 (South Carolina) than to europe-west1 (Belgium).
REGIONS: dict[str, dict[str, Any]] = {
    "us-east1": {"location": [33.2, -80.0], "zones": ["us-east1-b", "us-east1-c"]},
    "us-west1": {"location": [45.6, -121.2], "zones": ["us-west1-a"]},
    "europe-west1": {"location": [50.4, 3.8], "zones": ["europe-west1-b"]},
}

CLUSTERS: tuple[DemoCluster, ...] = (
    DemoCluster("us-east", "us-east1", "us-east1-b", 1),
    DemoCluster("us-west", "us-west1", "us-west1-a", 2),
    DemoCluster("eu", "europe-west1", "europe-west1-b", 3),
)


def _healthz(c: DemoCluster, backend_port: int) -> str:
    return f"http://{c.backend_ip}:{backend_port}/healthz"


def _static_cluster(c: DemoCluster, backend_port: int) -> dict[str, Any]:
    """A ``source: static`` cluster with the kube mode's shards: the Service
    and, since static clusters have no HTTPRoutes, an ingress for its host."""
    return {
        "name": c.name,
        "region": c.region,
        "zone": c.zone,
        "source": "static",
        "networks": [c.network],
        "services": [{
            "name": SERVICE,
            "namespace": NAMESPACE,
            "addresses": [c.backend_ip],
            "ready": 2,
            "probe": {"http": _healthz(c, backend_port)},
        }],
        "ingresses": [{
            "name": ROUTE,
            "namespace": NAMESPACE,
            "hosts": [ROUTE_HOST],
            "addresses": [c.backend_ip],
            "ready": 2,
            "probe": {"http": _healthz(c, backend_port), "host": ROUTE_HOST.rstrip(".")},
        }],
    }


def _kube_cluster(c: DemoCluster, source: dict[str, Any]) -> dict[str, Any]:
    return {"name": c.name, "region": c.region, "zone": c.zone, **source,
            "networks": [c.network]}


def demo_config(*, dns_port: int, http_port: int, backend_ports: dict[str, int],
                state_dir: str, kube: dict[str, dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    """The demo's config as a plain mapping (dumped to YAML and loaded normally).

    ``kube`` maps a cluster to its ``source: kubernetes`` keys (simulated
    API servers); without it every cluster is ``source: static``.
    """
    return {
        "zone": ZONE,
        "federation": FEDERATION,
        "ttl": 5,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"]},
        "listen": {"dns": [f"127.0.0.1:{dns_port}"], "http": f"127.0.0.1:{http_port}"},
        "state_dir": state_dir,
        "regions": REGIONS,
        "health": {"interval": "500ms", "timeout": "300ms", "rise": 2, "fall": 2},
        "clusters": [
            _kube_cluster(c, kube[c.name]) if kube is not None
            else _static_cluster(c, backend_ports[c.name])
            for c in CLUSTERS
        ],
        "records": [
            {"name": "www", "type": "CNAME", "value": GLOBAL_NAME},
            {"name": "eu.nginx", "type": "CNAME",
             "value": f"{SERVICE}.{NAMESPACE}.{FEDERATION}.svc.europe-west1.{ZONE}"},
            {"name": "@", "type": "TXT", "value": '"fedns demo zone"'},
        ],
    }


class Backend:
    """One simulated cluster's load balancer.

    ``/`` says which cluster answered; ``/healthz`` is 503 while ``failed``.
    """

    def __init__(self, cluster: DemoCluster, port: int) -> None:
        self.cluster = cluster
        self.failed = False
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        if self._runner is not None:
            for addr in self._runner.addresses:
                return int(addr[1])
        return self._port

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._hello)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cluster.backend_ip, self._port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hello(self, request: web.Request) -> web.Response:
        c = self.cluster
        return web.Response(text=f"hello from cluster {c.name} ({c.region}/{c.zone})\n")

    async def _healthz(self, request: web.Request) -> web.Response:
        if self.failed:
            return web.Response(text="failed (demo)\n", status=503)
        return web.Response(text="ok\n")


class Demo:
    """Backends + an ``App`` with ``/demo/clusters/...`` routes; ``run`` serves until Ctrl-C."""

    def __init__(self, *, dns_port: int = 5353, http_port: int = 8053,
                 backend_port: int = 8080, workdir: str | None = None,
                 kubernetes: bool = True) -> None:
        self.dns_port = dns_port
        self.http_port = http_port
        self.kubernetes = kubernetes
        self.fleet: SimFleet | None = None
        self.backends = {c.name: Backend(c, backend_port) for c in CLUSTERS}
        self._own_tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._own_tmp = tempfile.TemporaryDirectory(prefix="fedns-demo-")
            workdir = self._own_tmp.name
        self.workdir = workdir
        self.app: App | None = None

    async def start(self) -> App:
        for b in self.backends.values():
            await b.start()
        kube = await self._start_fleet() if self.kubernetes else None
        path = os.path.join(self.workdir, "demo.yaml")
        doc = demo_config(dns_port=self.dns_port, http_port=self.http_port,
                          backend_ports={n: b.port for n, b in self.backends.items()},
                          state_dir=os.path.join(self.workdir, "state"), kube=kube)
        text = "# generated by `fedns demo`\n" + yaml.safe_dump(doc, sort_keys=False)
        await asyncio.to_thread(_write, path, text)
        config = await asyncio.to_thread(load, path)
        self.app = App(config, config_path=path, extra_routes=self.routes())
        await self.app.start()
        if self.app.dns.addresses:  # the real ports when 0 was asked for
            self.dns_port = self.app.dns.addresses[0][1]
        self.http_port = self.app.http.port
        return self.app

    async def _start_fleet(self) -> dict[str, dict[str, Any]]:
        """One simulated API server per cluster, each running default/nginx
        and the HTTPRoute default/shop on the Gateway default/web."""
        self.fleet = SimFleet(self.workdir)
        await self.fleet.start([c.name for c in CLUSTERS])
        for c in CLUSTERS:
            self.fleet.add_node(c.name, f"{c.name}-node-1", region=c.region, zone=c.zone)
            port = self.backends[c.name].port
            self.fleet.publish_service(c.name, SERVICE, NAMESPACE, lb_ip=c.backend_ip, ready=2,
                                       port=port, probe=f"http://:{port}/healthz")
            _publish_route(self.fleet, c, port)
        return {c.name: self.fleet.cluster_config(c.name) for c in CLUSTERS}

    async def stop(self) -> None:
        if self.app is not None:
            await self.app.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        for b in self.backends.values():
            await b.stop()
        if self._own_tmp is not None:
            with contextlib.suppress(OSError):
                self._own_tmp.cleanup()

    async def run(self, *, banner: bool = True) -> None:
        try:
            app = await self.start()
            if banner:
                print(self.banner(), flush=True)
            await app.serve_until_stopped()
        finally:
            await self.stop()

    # -- demo-only HTTP routes -------------------------------------------------

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/demo/clusters", self._list, mutating=False),
            Route("POST", "/demo/clusters/{name}/fail", self._fail),
            Route("POST", "/demo/clusters/{name}/restore", self._restore),
        ]

    def _backend(self, request: web.Request) -> Backend:
        name = request.match_info["name"]
        b = self.backends.get(name)
        if b is None:
            raise ApiError(f"unknown demo cluster {name!r}; try one of "
                           f"{', '.join(self.backends)}", status=404)
        return b

    async def _list(self, request: web.Request) -> web.Response:
        return _json({n: {"backend": f"http://{b.cluster.backend_ip}:{b.port}/",
                          "failed": b.failed}
                      for n, b in self.backends.items()})

    async def _fail(self, request: web.Request) -> web.Response:
        b = self._backend(request)
        b.failed = True
        log.info("demo_cluster_failed cluster=%s", b.cluster.name)
        return _json({"cluster": b.cluster.name, "failed": True})

    async def _restore(self, request: web.Request) -> web.Response:
        b = self._backend(request)
        b.failed = False
        log.info("demo_cluster_restored cluster=%s", b.cluster.name)
        return _json({"cluster": b.cluster.name, "failed": False})

    # -- what to try -------------------------------------------------------------

    def commands(self) -> list[tuple[str, str]]:
        """The walkthrough as (command, what to expect); tests run these."""
        dig = f"dig @127.0.0.1 -p {self.dns_port} +short"
        api = f"http://127.0.0.1:{self.http_port}"
        east, west, eu = CLUSTERS
        svc = f"{SERVICE}.{NAMESPACE}.{FEDERATION}.svc"
        return [
            (f"{dig} {GLOBAL_NAME} -b {west.client_ip}", f"a us-west1 client -> {west.backend_ip}"),
            (f"{dig} {ROUTE_HOST} -b {west.client_ip}",
             f"{self._route_kind()} {NAMESPACE}/{ROUTE}'s host, too -> {west.backend_ip}"),
            (f"{dig} {GLOBAL_NAME}", "unknown client (127.0.0.1) -> every healthy cluster"),
            (f"{dig} {svc}.us-east1-c.us-east1.{ZONE}", "empty AZ -> CNAME to the region name"),
            (f"{dig} www.{ZONE} -b {eu.client_ip}", "static CNAME, then the geo answer"),
            ("", "fail a cluster: its clients move to the NEAREST other region "
                 "(us-east1, not europe-west1)"),
            (f"curl -X POST {api}/demo/clusters/us-west/fail", "its /healthz now says 503"),
            (f"{dig} {GLOBAL_NAME} -b {west.client_ip}", f"after ~1.5 s -> {east.backend_ip}"),
            (f"{dig} {ROUTE_HOST} -b {west.client_ip}",
             f"its {self._route_kind()} too, after ~1.5 s -> {east.backend_ip}"),
            (f"curl -X POST {api}/demo/clusters/us-west/restore",
             f"and back to {west.backend_ip}"),
            ("", "or drain it like an operator"),
            (f"fedns drain us-west --api {api}", "persisted in the state dir"),
            (f"fedns undrain us-west --api {api}", ""),
            (f"fedns status --api {api}", "clusters, shards, health and why"),
            (f"curl {api}/metrics", "Prometheus metrics"),
        ]

    def _route_kind(self) -> str:
        """What serves ``ROUTE_HOST``: an HTTPRoute, or a static ingress with ``--static``."""
        return "HTTPRoute" if self.kubernetes else "ingress"

    def banner(self) -> str:
        api = f"http://127.0.0.1:{self.http_port}"
        kind = ("simulated Kubernetes API servers, kubeconfig "
                f"{self.fleet.kubeconfig}" if self.fleet is not None else "static sources")
        lines = [
            f"fedns demo: zone {ZONE} federation {FEDERATION} ({kind})",
            f"  DNS 127.0.0.1:{self.dns_port} (UDP+TCP)   HTTP {api}   files {self.workdir}",
            "",
            f"member clusters (in each: Service {NAMESPACE}/{SERVICE}, "
            + (f"HTTPRoute {NAMESPACE}/{ROUTE} on Gateway {NAMESPACE}/{GATEWAY}"
               if self.kubernetes else f"ingress {NAMESPACE}/{ROUTE}")
            + f" for {ROUTE_HOST.rstrip('.')}):",
        ]
        for b in self.backends.values():
            c = b.cluster
            lines.append(f"  {c.name:8} {c.region + '/' + c.zone:28} backend "
                         f"http://{c.backend_ip}:{b.port}/   clients {c.network}")
        lines += ["", "try (-b sets the client's source address, i.e. where it is):"]
        cmds = self.commands()
        width = max(len(c) for c, _ in cmds)
        for cmd, note in cmds:
            if not cmd:
                lines.append(f"{note}:")
            else:
                lines.append(f"  {cmd.ljust(width)}  # {note}" if note else f"  {cmd}")
        lines += ["", "Ctrl-C stops the demo."]
        return "\n".join(lines)


def _publish_route(fleet: SimFleet, c: DemoCluster, backend_port: int) -> None:
    """Gateway default/web and the federated HTTPRoute default/shop in ``c``."""
    api = fleet.apis[c.name]
    api.apply("gateways", _gateway(c))
    api.apply("httproutes", _route(backend_port))


def _gateway(c: DemoCluster) -> dict[str, Any]:
    """One HTTP listener on port 80 for the route's host (a route's hostnames
    must match its listener's); the address is the backend's IP, as a Gateway
    controller publishes its load balancer's."""
    return gateway(GATEWAY, NAMESPACE, addresses=[c.backend_ip],
                   listeners=[listener("http", port=80, hostname=ROUTE_HOST.rstrip("."))])


def _route(backend_port: int) -> dict[str, Any]:
    """The federated HTTPRoute, accepted by the Gateway (its status says so),
    forwarding to Service nginx with the default weight. Its probe names the
    backend's real port (the demo's backends do not listen on 80), so the
    route's shard fails with the backend."""
    return httproute(
        ROUTE, NAMESPACE, hostnames=[ROUTE_HOST.rstrip(".")], parents=[GATEWAY],
        backends=[SERVICE], backend_port=backend_port,
        annotations={**FEDERATE, PROBE_ANNOTATION: f"http://:{backend_port}/healthz"})


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda o: json.dumps(o) + "\n")


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


async def run_demo(*, dns_port: int = 5353, http_port: int = 8053, backend_port: int = 8080,
                   banner: bool = True, kubernetes: bool = True) -> None:
    await Demo(dns_port=dns_port, http_port=http_port, backend_port=backend_port,
               kubernetes=kubernetes).run(banner=banner)
