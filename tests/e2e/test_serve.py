"""``fedns serve`` as a real process: dig answers, HTTP API, drains, token, reload."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.configs import GLOBAL, static_config
from tests.e2e.procs import Fedns, dig, eventually, http, run_fedns, serving, status, write

US_CLIENT, EU_CLIENT, ASIA_CLIENT = "127.0.1.10", "127.0.2.10", "127.0.3.10"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Fedns, Path]]:
    cfg = write(tmp_path / "fedns.yaml",
                static_config(extra=f"state_dir: {tmp_path / 'state'}"))
    with serving(cfg) as srv:
        yield srv, cfg


def test_answers_depend_on_the_client_location(served: tuple[Fedns, Path]) -> None:
    srv, _ = served
    port = srv.dns_port
    assert dig(port, GLOBAL, source=US_CLIENT) == ["192.0.2.10"]
    assert dig(port, GLOBAL, source=EU_CLIENT) == ["192.0.2.20"]
    assert dig(port, GLOBAL, source=ASIA_CLIENT) == ["192.0.2.30"]
    assert sorted(dig(port, GLOBAL)) == ["192.0.2.10", "192.0.2.20", "192.0.2.30"]
    # AZ without shards -> CNAME to the region name, chased into the answer
    assert dig(port, "nginx.default.myfed.svc.us-east1-c.us-east1.example.com.") == [
        "nginx.default.myfed.svc.us-east1.example.com.", "192.0.2.10"]
    # static CNAME into a region name
    assert dig(port, "eu.nginx.example.com.") == [
        "nginx.default.myfed.svc.europe-west1.example.com.", "192.0.2.20"]
    assert dig(port, "www.example.com.", extra=["+tcp"]) == ["192.0.2.80"]


def test_http_endpoints(served: tuple[Fedns, Path]) -> None:
    srv, _ = served
    assert http(srv.api + "/healthz") == (200, "ok\n")
    assert http(srv.api + "/readyz")[0] == 200
    code, metrics = http(srv.api + "/metrics")
    assert code == 200
    assert any(line.startswith("fedns_") for line in metrics.splitlines())
    doc = status(srv.api)
    assert doc["ready"] is True and doc["stale"] is False
    assert doc["zone"] == "example.com."
    assert {c["name"] for c in doc["clusters"]} == {"us", "eu", "asia"}
    shards = {s["cluster"]: s for s in doc["shards"]}
    assert shards["us"]["healthy"] is True and shards["us"]["reason"]
    assert shards["eu"]["addresses"] == ["192.0.2.20"]
    assert doc["snapshot"]["serial"] > 0 and doc["snapshot"]["age_seconds"] >= 0
    assert doc["drains"] == {"clusters": [], "shards": []}
    assert http(srv.api + "/v1/nothing")[0] == 404
    assert http(srv.api + "/v1/drains/mars", "POST")[0] == 404
    # the table renders everything the JSON has
    res = run_fedns("status", "--api", srv.api)
    assert res.returncode == 0, res.stderr
    for word in ("CLUSTERS", "SHARDS", "DRAINS", "PROVIDERS", "default/nginx", "asia-east1-a"):
        assert word in res.stdout


def test_drain_moves_clients_shows_in_status_and_survives_restart(tmp_path: Path) -> None:
    cfg = write(tmp_path / "fedns.yaml",
                static_config(extra=f"state_dir: {tmp_path / 'state'}"))
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        assert dig(srv.dns_port, GLOBAL, source=US_CLIENT) == ["192.0.2.10"]
        res = run_fedns("drain", "us", "--api", srv.api)
        assert res.returncode == 0, res.stderr
        # nearest other region by distance: Europe, not Asia
        eventually(lambda: dig(srv.dns_port, GLOBAL, source=US_CLIENT),
                   lambda a: a == ["192.0.2.20"], timeout=3)
        doc = status(srv.api)
        assert doc["drains"]["clusters"] == ["us"]
        us = next(s for s in doc["shards"] if s["cluster"] == "us")
        assert us["healthy"] is False and "drain" in us["reason"]
        assert next(c for c in doc["clusters"] if c["name"] == "us")["drained"] is True
        # a shard drain too
        assert run_fedns("drain", "eu", "default/nginx", "--api", srv.api).returncode == 0
        eventually(lambda: dig(srv.dns_port, GLOBAL, source=US_CLIENT),
                   lambda a: a == ["192.0.2.30"], timeout=3)
        assert status(srv.api)["drains"]["shards"] == ["eu/default/nginx"]
    finally:
        assert srv.stop() == 0, srv.output

    again = Fedns("serve", "-c", str(cfg))
    try:
        again.wait_started()
        again.wait_ready()
        doc = status(again.api)
        assert doc["drains"] == {"clusters": ["us"], "shards": ["eu/default/nginx"]}
        eventually(lambda: dig(again.dns_port, GLOBAL, source=US_CLIENT),
                   lambda a: a == ["192.0.2.30"], timeout=3)
        assert run_fedns("undrain", "us", "--api", again.api).returncode == 0
        assert run_fedns("undrain", "eu", "default/nginx", "--api", again.api).returncode == 0
        eventually(lambda: dig(again.dns_port, GLOBAL, source=US_CLIENT),
                   lambda a: a == ["192.0.2.10"], timeout=3)
        assert status(again.api)["drains"] == {"clusters": [], "shards": []}
    finally:
        assert again.stop() == 0, again.output


def test_mutating_endpoints_need_the_token_and_it_is_never_logged(tmp_path: Path) -> None:
    token = "s3cret-t0ken-value"
    cfg = write(tmp_path / "fedns.yaml",
                static_config(extra="api_token: ${FEDNS_TEST_TOKEN}"))
    srv = Fedns("serve", "-c", str(cfg), env={"FEDNS_TEST_TOKEN": token})
    try:
        srv.wait_started()
        srv.wait_ready()
        assert http(srv.api + "/v1/drains/us", "POST")[0] == 401
        assert http(srv.api + "/v1/drains/us", "POST", token="wrong")[0] == 401
        assert http(srv.api + "/v1/reload", "POST")[0] == 401
        assert http(srv.api + "/v1/status")[0] == 200  # reads stay open
        res = run_fedns("drain", "us", "--api", srv.api)
        assert res.returncode != 0 and "401" in res.stderr
        res = run_fedns("drain", "us", "--api", srv.api, "--token", token)
        assert res.returncode == 0, res.stderr
        res = run_fedns("undrain", "us", "--api", srv.api, env={"FEDNS_API_TOKEN": token})
        assert res.returncode == 0, res.stderr
    finally:
        srv.stop()
    assert token not in srv.output
    assert "http_unauthorized" in srv.output


def test_reload_rejects_a_bad_config_and_applies_a_good_one(
        served: tuple[Fedns, Path]) -> None:
    srv, cfg = served
    good = cfg.read_text()
    write(cfg, good.replace("ttl: 5", "ttl: 5\nbogus_key: 1").replace(
        "region: europe-west1\n", "region: europe-west9\n"))
    res = run_fedns("reload", "--api", srv.api)
    assert res.returncode != 0
    assert "bogus_key" in res.stderr and "europe-west9" in res.stderr
    srv.wait_for(lambda o: "reload_rejected" in o and "bogus_key" in o, 5, "rejection log")
    assert dig(srv.dns_port, GLOBAL, source=US_CLIENT) == ["192.0.2.10"]  # old config serves
    assert status(srv.api)["config"]["last_reload"]["ok"] is False

    write(cfg, good.replace("addresses: [192.0.2.10]", "addresses: [192.0.2.99]"))
    srv.signal(signal.SIGHUP)
    eventually(lambda: dig(srv.dns_port, GLOBAL, source=US_CLIENT),
               lambda a: a == ["192.0.2.99"], timeout=5)
    assert status(srv.api)["config"]["last_reload"]["ok"] is True
    body = json.loads(http(srv.api + "/v1/reload", "POST")[1])
    assert body["ok"] is True and body["problems"] == []


def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "fedns.yaml", static_config())
    srv = Fedns("--log-format", "json", "serve", "-c", str(cfg))
    try:
        out = srv.wait_for(lambda o: '"event":"started"' in o, 20, "started event")
    finally:
        srv.stop()
    lines = [ln for ln in srv.output.splitlines() if ln.strip()]
    assert lines
    events = [json.loads(ln) for ln in lines]  # every line parses
    started = next(e for e in events if e["event"] == "started")
    assert started["zone"] == "example.com." and started["level"] == "info"
    assert out


def test_serve_reports_a_port_in_use(served: tuple[Fedns, Path], tmp_path: Path) -> None:
    srv, _ = served
    cfg = write(tmp_path / "clash.yaml", static_config().replace(
        '"127.0.0.1:0"]', f'"127.0.0.1:{srv.dns_port}"]'))
    res = run_fedns("serve", "-c", str(cfg), timeout=30)
    assert res.returncode != 0
    assert str(srv.dns_port) in res.stderr and "Traceback" not in res.stderr
