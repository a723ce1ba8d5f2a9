"""Last known good: ``fedns serve`` restarted while every member cluster is
unreachable answers from the persisted Snapshot, marked stale; a corrupt state
file is reported and ignored, never a crash.

Member clusters are simulated Kubernetes API servers (healthwatch.kube.sim)
run on a private event loop in a thread of the test process. For the restart
one API is gone (connection refused) and the other accepts connections and
never answers (a dead API server behind a live load balancer).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from healthwatch.kube.sim.fleet import SimFleet
from healthwatch.kube.sim.kubeconfig import KubeconfigEntry, write_kubeconfig
from tests.e2e.configs import GLOBAL, static_config
from tests.e2e.procs import Fedns, LoopThread, dig, eventually, http, status, write

US_IP, EU_IP = "192.0.2.10", "192.0.2.20"
LISTENING = re.compile(r"\blistening address=127\.0\.0\.1 port=(\d+) proto=udp")
GRACE = 1.5  # cluster_grace: sources are declared unreachable after this

KUBE_CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
state_dir: {state}
health: {{cluster_grace: {grace}s}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
clusters:
  - {{name: us, region: us-east1, zone: us-east1-b, source: kubernetes,
      kubeconfig: {kubeconfig}, context: sim-us, networks: [127.0.1.0/24]}}
  - {{name: eu, region: europe-west1, zone: europe-west1-b, source: kubernetes,
      kubeconfig: {kubeconfig}, context: sim-eu, networks: [127.0.2.0/24]}}
records:
  - {{name: www, type: A, value: 192.0.2.80}}
"""




@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


async def start_fleet(workdir: Path) -> SimFleet:
    fleet = SimFleet(str(workdir))
    await fleet.start(["us", "eu"])
    for cluster, region, zone, ip in (("us", "us-east1", "us-east1-b", US_IP),
                                      ("eu", "europe-west1", "europe-west1-b", EU_IP)):
        fleet.add_node(cluster, f"{cluster}-node", region=region, zone=zone)
        fleet.publish_service(cluster, "nginx", lb_ip=ip, ready=2)
    return fleet


def metric(api: str, name: str) -> float | None:
    code, text = http(api + "/metrics")
    assert code == 200
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_restart_with_every_cluster_unreachable_serves_persisted_state(
        tmp_path: Path, loop_thread: LoopThread) -> None:
    state = tmp_path / "state"
    fleet = loop_thread.run(start_fleet(tmp_path))
    cfg = write(tmp_path / "fedns.yaml", KUBE_CONFIG.format(
        state=state, grace=GRACE, kubeconfig=fleet.kubeconfig))

    # 1. a normal run: both clusters synced, answers published and persisted
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        eventually(lambda: sorted(dig(srv.dns_port, GLOBAL)), lambda v: v == [US_IP, EU_IP], 20)
        eventually(lambda: (state / "snapshot.json").exists(), bool, 5)
        assert status(srv.api)["stale"] is False
    finally:
        assert srv.stop() == 0, srv.output
    persisted = json.loads((state / "snapshot.json").read_text())

    # 2. every API dead: us refuses connections, eu accepts and never answers
    us_server = next(e for e in _kube_servers(fleet.kubeconfig) if e.context == "sim-us").server
    loop_thread.run(fleet.stop())
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    try:
        write_kubeconfig(fleet.kubeconfig, [
            KubeconfigEntry("sim-us", us_server),
            KubeconfigEntry("sim-eu", f"http://127.0.0.1:{blackhole.getsockname()[1]}")])
        srv = Fedns("serve", "-c", str(cfg))
        try:
            # the DNS listener opens before the sources start: from that moment
            # (logged) the persisted answers are served
            out = srv.wait_for(lambda o: LISTENING.search(o) is not None, 20, "dns listening")
            listening = time.monotonic()
            port = int(LISTENING.search(out).group(1))  # type: ignore[union-attr]
            _, took = eventually(lambda: sorted(dig(port, GLOBAL)),
                                 lambda v: v == [US_IP, EU_IP], 5, interval=0.02)
            assert time.monotonic() - listening < 1.0, took
            srv.wait_started()
            doc = status(srv.api)
            assert doc["stale"] is True
            assert doc["snapshot"]["serial"] == persisted["serial"]
            assert metric(srv.api, "fedns_snapshot_stale") == 1.0
            assert dig(srv.dns_port, "www.example.com.") == ["192.0.2.80"]

            # past cluster_grace both sources are declared unreachable: the
            # persisted answers must still be served, never an empty zone
            eventually(lambda: status(srv.api)["engine"]["sources"],
                       lambda s: all(v["declared_unreachable"] for v in s.values()),
                       GRACE + 10)
            time.sleep(0.3)
            assert sorted(dig(srv.dns_port, GLOBAL)) == [US_IP, EU_IP]
            assert sorted(dig(srv.dns_port, GLOBAL, source="127.0.1.7")) in ([US_IP],
                                                                             [US_IP, EU_IP])
        finally:
            assert srv.stop() == 0, srv.output
        assert "Traceback" not in srv.output, srv.output
    finally:
        blackhole.close()


def _kube_servers(path: str) -> list[KubeconfigEntry]:
    import yaml

    doc = yaml.safe_load(Path(path).read_text())
    return [KubeconfigEntry(c["name"], c["cluster"]["server"]) for c in doc["clusters"]]


CORRUPTIONS = {
    "garbage-bytes": b"\x00\xff\xfe not json at all \x89PNG",
    "truncated-json": b'{"serial": 1764000000, "zone": "example.com.", "records": [["exa',
    "wrong-shape": b'{"serial": "seven", "records": 42}',
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_state_file_is_reported_and_ignored(tmp_path: Path, kind: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "snapshot.json").write_bytes(CORRUPTIONS[kind])
    (state / "drains.json").write_bytes(CORRUPTIONS[kind])
    cfg = write(tmp_path / "fedns.yaml", static_config(extra=f"state_dir: {state}"))
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        assert sorted(dig(srv.dns_port, GLOBAL)) == ["192.0.2.10", "192.0.2.20", "192.0.2.30"]
        doc = status(srv.api)
        assert doc["stale"] is False
        problems = doc["engine"]["state_problems"]
        assert any("snapshot.json" in p for p in problems), problems
        assert "state_problem" in srv.output
        if kind != "wrong-shape":  # a JSON object without drain keys is no drain
            assert any("drains.json" in p for p in problems), problems
        # the next publish replaces the corrupt file with a good one
        eventually(lambda: _loads(state / "snapshot.json"), lambda d: d is not None, 5)
    finally:
        assert srv.stop() == 0, srv.output
    assert "Traceback" not in srv.output, srv.output


def _loads(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None
