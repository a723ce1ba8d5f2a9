"""The Grafana dashboard can never drift from the metrics fedns exports.

A real Prometheus (Debian's ``prometheus``) scrapes a live ``fedns serve``
on loopback every second. fedns runs three static member clusters whose load
balancers are HTTP servers in this process, one Kubernetes member cluster
(a simulated API server, healthwatch.kube.sim, on a private event loop in a
thread of this process), a CoreDNS-etcd provider on a real etcd (when ``etcd``
is installed) and one provider pointed at a closed port (so provider errors
exist). The test sends DNS traffic (answers, NXDOMAIN, REFUSED, a truncated
reply, a malformed packet), expires the Kubernetes cluster's services watch
(410 Gone) while its next list fails once with a 500 (so a watch restart, a
relist and an API error are counted), fails one static cluster's backend
until its clients fail over and restores it, waits for the scrapes, then
evaluates the PromQL of every target of every panel through Prometheus's
HTTP API and asserts that each returns data with a finite value.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from healthwatch.kube.sim.fleet import SimFleet
from tests.e2e.procs import LoopThread
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "config" / "grafana" / "fedns.json"
ALERTS = ROOT / "config" / "prometheus" / "alerts.yaml"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ETCD = shutil.which("etcd")
ZONE = "example.com."
FEDERATION = "dash"
GLOBAL = f"nginx.default.{FEDERATION}.svc.{ZONE}"
DEADLINE = 60.0  # seconds for the whole live run
# Grafana variables as the test evaluates them: rate windows span the whole run
VARIABLES = {"__rate_interval": "1m", "__interval": "1s", "__range": "1m", "instance": ".*"}


# -- the dashboard ---------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def panel_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) for every PromQL target of every panel."""
    out = []
    for p in all_panels(load_dashboard()["panels"]):
        for t in p.get("targets", []):
            out.append((p["title"], t["refId"], t["expr"]))
    return out


def substitute(expr: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in VARIABLES, f"unknown variable ${name} in {expr}"
        return VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def test_dashboard_structure() -> None:
    dash = load_dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36
    declared = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= declared
    ids = [p["id"] for p in all_panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    titles: set[str] = set()
    for p in all_panels(dash["panels"]):
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["title"] not in titles, f"duplicate title {p['title']}"
        titles.add(p["title"])
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"], f"{p['title']}: no targets"
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert "fedns_" in t["expr"], f"{p['title']}: not a fedns query"
            for var in re.findall(r"\$\{?(\w+)", t["expr"]):
                assert var.startswith("__") or var in declared, f"{p['title']}: ${var}"
    # what issue 4 asks the dashboard to show
    exprs = " ".join(e for _, _, e in panel_targets())
    for needle in ("fedns_dns_requests_total", "by (rcode)", "histogram_quantile(0.5",
                   "histogram_quantile(0.99", "fedns_dns_request_duration_seconds_bucket",
                   "by (service, region) (fedns_shard_healthy", "fedns_failovers_total",
                   "fedns_probe_duration_seconds_bucket", "fedns_provider_up",
                   "fedns_snapshot_serial", "fedns_snapshot_timestamp_seconds",
                   "fedns_source_up", "fedns_kube_last_contact_timestamp_seconds",
                   "fedns_kube_events_total", "fedns_kube_api_errors_total",
                   "fedns_kube_watch_restarts_total", "fedns_kube_relists_total"):
        assert needle in exprs, needle


def test_substitute_rejects_unknown_variables() -> None:
    assert substitute('rate(x{instance=~"$instance"}[$__rate_interval])') == \
        'rate(x{instance=~".*"}[1m])'
    with pytest.raises(AssertionError, match="unknown variable"):
        substitute("rate(x[$typo])")


# -- live parts -------------------------------------------------------------------


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(what: str, check: Callable[[], bool], deadline: float,
             procs: Sequence[subprocess.Popen[bytes]] = ()) -> None:
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: process {p.args!r} exited with {p.returncode}")
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


class Backend:
    """A member cluster's load balancer: ``/healthz`` is 503 while failed."""

    def __init__(self, ip: str) -> None:
        self.failed = False
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status = 503 if backend.failed else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((ip, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Secondary:
    """A secondary in ``server.also_notify``: acknowledges every NOTIFY."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.notified = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:  # closed
                return
            with contextlib.suppress(dns.exception.DNSException):
                self.sock.sendto(dns.message.make_response(dns.message.from_wire(data))
                                 .to_wire(), addr)
                self.notified += 1

    def close(self) -> None:
        self.sock.close()


@dataclass
class Live:
    tmp: Path
    prom: str  # Prometheus base URL
    api: str  # fedns HTTP API base URL
    dns_port: int
    backends: dict[str, Backend]
    sim: LoopThread
    fleet: SimFleet
    secondary: Secondary
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: dict[str, Path] = field(default_factory=dict)
    failed_at: float = 0.0  # Unix time inside the window in which us-east had failed

    def log_tail(self, name: str, n: int = 40) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])


def spawn(live: Live, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    log = live.tmp / f"{name}.log"
    live.logs[name] = log
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    live.procs.append(proc)
    return proc


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in reversed(procs):
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


CLUSTERS = (("us-east", "us-east1", "us-east1-b", 1),
            ("us-west", "us-west1", "us-west1-a", 2),
            ("eu", "europe-west1", "europe-west1-b", 3))
# the Kubernetes member cluster: its API server is simulated, nginx has no probe
KUBE, KUBE_REGION, KUBE_ZONE, KUBE_LB = "asia", "asia-east1", "asia-east1-a", "127.0.4.1"


def fedns_config(live: Live, http_port: int, etcd_url: str | None) -> dict[str, Any]:
    providers: list[dict[str, Any]] = [
        # nothing listens there: this provider fails, so errors and up=0 exist
        {"type": "coredns-etcd", "name": "etcd-down",
         "endpoints": [f"http://127.0.0.1:{free_port()}"], "timeout": "300ms",
         "debounce": "100ms"},
    ]
    if etcd_url is not None:
        providers.insert(0, {"type": "coredns-etcd", "name": "etcd", "endpoints": [etcd_url],
                             "timeout": "2s", "debounce": "100ms"})
    return {
        "zone": ZONE,
        "federation": FEDERATION,
        "ttl": 5,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"]},
        "listen": {"dns": [f"127.0.0.1:{live.dns_port}"], "http": f"127.0.0.1:{http_port}"},
        "server": {"also_notify": [f"127.0.0.1:{live.secondary.port}"]},
        "state_dir": str(live.tmp / "state"),
        "regions": {
            "us-east1": {"location": [33.2, -80.0], "zones": ["us-east1-b"]},
            "us-west1": {"location": [45.6, -121.2], "zones": ["us-west1-a"]},
            "europe-west1": {"location": [50.4, 3.8], "zones": ["europe-west1-b"]},
            KUBE_REGION: {"location": [24.1, 120.7], "zones": [KUBE_ZONE]},
        },
        "health": {"interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 2},
        "clusters": [
            {"name": name, "region": region, "zone": az, "source": "static",
             "networks": [f"127.0.{n}.0/24"],
             "services": [{"name": "nginx", "namespace": "default",
                           "addresses": [f"127.0.{n}.1"], "ready": 2,
                           "probe": {"http": f"http://127.0.{n}.1:"
                                             f"{live.backends[name].port}/healthz"}}]}
            for name, region, az, n in CLUSTERS
        ] + [{"name": KUBE, "region": KUBE_REGION, "zone": KUBE_ZONE,
              **live.fleet.cluster_config(KUBE)}],
        "records": [
            {"name": "www", "type": "CNAME", "value": GLOBAL},
            # larger than 512 bytes: a plain UDP query gets TC=1
            {"name": "big", "type": "TXT",
             "value": " ".join(f'"{"x" * 200}{i}"' for i in range(4))},
        ],
        "providers": providers,
    }


def start_etcd(live: Live) -> str:
    assert ETCD is not None
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    spawn(live, "etcd", [
        ETCD, "--name", "dash", "--data-dir", str(live.tmp / "etcd"),
        "--listen-client-urls", url, "--advertise-client-urls", url,
        "--listen-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
        "--initial-cluster", f"dash=http://127.0.0.1:{peer}",
        "--log-level", "error"])
    return url


def start_prometheus(live: Live, target: str) -> None:
    port = free_port()
    cfg = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms",
                   "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "fedns", "static_configs": [{"targets": [target]}]}],
        "rule_files": [str(ALERTS)],
    }
    path = live.tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    spawn(live, "prometheus", [
        PROMETHEUS, f"--config.file={path}", f"--storage.tsdb.path={live.tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        "--storage.tsdb.retention.time=1h"])
    live.prom = f"http://127.0.0.1:{port}"


def prom_query(live: Live, expr: str, at: float | None = None) -> list[dict[str, Any]]:
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    url = f"{live.prom}/api/v1/query?" + urllib.parse.urlencode(params)
    status, body = http_get(url, timeout=5)
    doc = json.loads(body)
    assert status == 200 and doc.get("status") == "success", f"{expr}: {doc}"
    result = doc["data"]["result"]
    assert isinstance(result, list)
    return result


def dns_query(port: int, name: str, rdtype: str = "A", *, source: str = "127.0.0.1",
              tcp: bool = False, edns: bool = True) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, source=source, timeout=2)
    return dns.query.udp(q, "127.0.0.1", port=port, source=source, timeout=2)


class Traffic:
    """A bounded background query loop so every rate window has samples."""

    def __init__(self, port: int, deadline: float) -> None:
        self.port = port
        self.deadline = deadline
        self.sent = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set() and time.monotonic() < self.deadline and i < 5000:
            n = CLUSTERS[i % 3][3]
            try:
                dns_query(self.port, GLOBAL, source=f"127.0.{n}.10")
                dns_query(self.port, f"nope.{ZONE}")
                self.sent += 2
            except (dns.exception.DNSException, OSError):
                self.errors += 1
            i += 1
            self._stop.wait(0.05)


def shards(live: Live) -> dict[str, bool]:
    _, body = http_get(f"{live.api}/v1/status")
    doc = json.loads(body)
    return {s["cluster"]: bool(s["healthy"]) for s in doc.get("shards", [])}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    if not os.path.exists(PROMETHEUS):
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed (apt-get install prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    deadline = time.monotonic() + DEADLINE
    tmp = tmp_path_factory.mktemp("dashboard")
    backends = {name: Backend(f"127.0.{n}.1") for name, _, _, n in CLUSTERS}
    sim = LoopThread()
    live = Live(tmp=tmp, prom="", api="", dns_port=free_port(), backends=backends, sim=sim,
                fleet=SimFleet(str(tmp)), secondary=Secondary())
    try:
        sim.run(live.fleet.start([KUBE]))
        sim.call(live.fleet.publish_service, KUBE, "nginx", lb_ip=KUBE_LB, ready=2)
        etcd_url = start_etcd(live) if ETCD else None
        http_port = free_port()
        live.api = f"http://127.0.0.1:{http_port}"
        cfg = tmp / "fedns.yaml"
        cfg.write_text(yaml.safe_dump(fedns_config(live, http_port, etcd_url), sort_keys=False))
        if etcd_url is not None:
            wait_for("etcd", lambda: http_get(f"{etcd_url}/health")[0] == 200, deadline,
                     live.procs)
        spawn(live, "fedns", [sys.executable, "-m", "dnsserver.cli", "serve", "-c", str(cfg),
                              "--log-format", "json"])
        start_prometheus(live, f"127.0.0.1:{http_port}")
        wait_for("fedns /readyz", lambda: http_get(f"{live.api}/readyz")[0] == 200, deadline,
                 live.procs)
        wait_for("every shard healthy",
                 lambda: len(s := shards(live)) == 4 and all(s.values()), deadline, live.procs)
        wait_for("prometheus ready", lambda: http_get(f"{live.prom}/-/ready")[0] == 200,
                 deadline, live.procs)
        # the first scrape comes a few seconds after ready (target discovery):
        # the failure that drive() makes must be seen by scrapes
        wait_for("a first scrape of fedns", lambda: bool(prom_query(live, 'up{job="fedns"} == 1')),
                 deadline, live.procs)
        drive(live, deadline)
        yield live
    except BaseException:
        for name in live.logs:
            print(f"--- {name} log ---\n{live.log_tail(name)}", file=sys.stderr)
        raise
    finally:
        stop_all(live.procs)
        for b in backends.values():
            b.close()
        live.secondary.close()
        with contextlib.suppress(Exception):
            sim.run(live.fleet.stop())
        sim.close()


def drive(live: Live, deadline: float) -> None:
    """Traffic, a truncation, a malformed packet, a Kubernetes watch expiry with a
    failed relist, a failover and its recovery."""
    traffic = Traffic(live.dns_port, deadline)
    traffic.start()
    try:
        port = live.dns_port
        r = dns_query(port, GLOBAL, source="127.0.1.10")
        assert r.rcode() == dns.rcode.NOERROR and r.answer
        assert dns_query(port, "example.org.").rcode() == dns.rcode.REFUSED
        big = dns_query(port, f"big.{ZONE}", "TXT", edns=False)
        assert big.flags & dns.flags.TC
        assert dns_query(port, f"big.{ZONE}", "TXT", tcp=True).answer
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"\x12\x34\x01", ("127.0.0.1", port))  # short header: dropped
        # the Kubernetes cluster: its services watch ends with 410 Gone and the
        # relist fails once (an API error), then succeeds (a relist) and the
        # watch starts again (a restart); meanwhile nginx's objects change
        kube = live.fleet.apis[KUBE]
        live.sim.call(kube.fail, "services", 500, on="list", times=1,
                      message="etcdserver: request timed out")
        live.sim.call(kube.expire, "services")
        live.sim.call(live.fleet.publish_service, KUBE, "nginx", lb_ip=KUBE_LB, ready=2)
        # us-east fails: its clients move to the nearest other region (us-west)
        live.backends["us-east"].failed = True
        wait_for("us-east unhealthy", lambda: not shards(live).get("us-east", True), deadline)
        moved = dns_query(port, GLOBAL, source="127.0.1.10")
        assert [rr.address for rrset in moved.answer for rr in rrset] == ["127.0.2.1"]
        time.sleep(2.5)  # a few scrapes see the failed state
        live.failed_at = time.time() - 0.5
        live.backends["us-east"].failed = False
        wait_for("us-east healthy again", lambda: shards(live).get("us-east", False), deadline)
        # scrapes after the recovery, and a provider that has synced
        needed = ['fedns_health_transitions_total{direction="up"}', "fedns_failovers_total",
                  "fedns_dns_truncated_total", "fedns_dns_dropped_total",
                  "count_over_time(fedns_snapshot_serial[1m]) >= 8",
                  'fedns_kube_api_errors_total{op="list"} > 0',
                  "fedns_kube_relists_total > 0", "fedns_kube_watch_restarts_total > 0",
                  'fedns_kube_events_total{type="MODIFIED"} > 0',
                  'fedns_dns_notify_total{result="acknowledged"} > 1']
        wait_for("scrapes after the failover",
                 lambda: all(prom_query(live, q) for q in needed), deadline, live.procs)
        time.sleep(2.0)
    finally:
        traffic.stop()
    assert traffic.sent > 0 and traffic.errors < traffic.sent


TARGETS = panel_targets()


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("title", "ref", "expr"), TARGETS,
                         ids=[f"{t}:{r}" for t, r, _ in TARGETS])
def test_panel_query_returns_data(live: Live, title: str, ref: str, expr: str) -> None:
    query = substitute(expr)
    result = prom_query(live, query)
    assert result, f"panel {title!r} target {ref}: no data for {query}"
    values = [float(r["value"][1]) for r in result]
    assert any(math.isfinite(v) for v in values), \
        f"panel {title!r} target {ref}: only NaN/Inf for {query}: {values}"


def test_annotation_queries_are_valid(live: Live) -> None:
    for ann in load_dashboard()["annotations"]["list"]:
        if "expr" in ann:
            prom_query(live, substitute(ann["expr"]))  # parses and evaluates


def test_every_exported_family_is_on_the_dashboard(live: Live) -> None:
    """A new fedns_ metric without a panel is reported (a dashboard gap)."""
    _, body = http_get(f"{live.api}/metrics")
    families = {f.name for f in text_string_to_metric_families(body.decode())
                if f.name.startswith("fedns_") and not f.name.endswith("_created")}
    exprs = " ".join(e for _, _, e in TARGETS)
    on_dashboard = {f for f in families
                    if re.search(rf"\b{f}(_total|_bucket|_sum|_count)?\b", exprs)}
    missing = sorted(families - on_dashboard - NOT_ON_DASHBOARD)
    assert not missing, f"metrics without a panel: {missing}"


# Families deliberately left off the dashboard (debugging detail).
NOT_ON_DASHBOARD = {"fedns_dns_answer_table_builds", "fedns_geoip_lookups",
                    "fedns_geo_cache_entries"}


# -- the alerting rules (config/prometheus/alerts.yaml; promtool: test_alerts.py) ----


def alert_rules() -> dict[str, str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}


def test_prometheus_loads_and_evaluates_the_alert_rules(live: Live) -> None:
    """The live Prometheus loaded the file and evaluates every rule without error."""
    def groups() -> list[dict[str, Any]]:
        _, body = http_get(f"{live.prom}/api/v1/rules")
        return list(json.loads(body)["data"]["groups"])

    wait_for("every rule evaluated",
             lambda: all(r.get("lastEvaluation", "").startswith("20")
                         for g in groups() for r in g["rules"]), time.monotonic() + 10)
    rules = {r["name"]: r for g in groups() for r in g["rules"]}
    assert set(rules) == set(alert_rules())
    bad = {n: r.get("lastError") for n, r in rules.items() if r["health"] != "ok"}
    assert not bad, bad


def test_alert_expressions_use_exported_metrics(live: Live) -> None:
    """Every fedns_ family an alert reads is one fedns exports (a rename breaks this)."""
    _, body = http_get(f"{live.api}/metrics")
    families = {f.name for f in text_string_to_metric_families(body.decode())}
    for alert, expr in alert_rules().items():
        for name in re.findall(r"\bfedns_\w+", expr):
            base = re.sub(r"_(total|bucket|sum|count)$", "", name)
            assert base in families or name in families, f"{alert}: {name} is not exported"
        prom_query(live, expr)  # parses and evaluates


def test_shard_down_condition_held_while_the_shard_failed(live: Live) -> None:
    """FednsShardDown's condition named us-east while its backend was failed, and
    nothing after the recovery; FednsServiceDown's never held (other clusters
    served nginx); FednsSourceDown's never held."""
    rules = alert_rules()
    assert live.failed_at > 0
    during = prom_query(live, rules["FednsShardDown"], at=live.failed_at)
    assert {(r["metric"]["service"], r["metric"]["cluster"]) for r in during} == {
        ("default/nginx", "us-east")}, during
    assert prom_query(live, rules["FednsShardDown"]) == []
    assert prom_query(live, rules["FednsServiceDown"], at=live.failed_at) == []
    assert prom_query(live, rules["FednsSourceDown"], at=live.failed_at) == []
