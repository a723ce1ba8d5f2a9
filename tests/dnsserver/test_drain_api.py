"""Drain options over HTTP on a real App: reason and ``for`` in a JSON body,
400 for bad ones, the status document and table, the client in the logs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from config.loader import load
from dnsserver.app import App
from dnsserver.cli import format_status
from dnsserver.logs import parse_fields
from healthwatch.kube.sim import SimFleet
from tests.dnsserver.test_app import BASE, _until
from tests.fakekube import service

EU = ("  - {name: eu, region: europe-west1, zone: europe-west1-b, networks: [127.0.2.0/24],"
      " services: [{name: nginx, namespace: default, addresses: [192.0.2.20], ready: 1}]}")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[App, str]]:
    cfg = tmp_path / "f.yaml"
    cfg.write_text(BASE.format(us="192.0.2.10", more=EU) + f"state_dir: {tmp_path / 's'}\n")
    running = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await running.start()
    try:
        await _until(lambda: running.ready)
        yield running, f"http://127.0.0.1:{running.http.port}"
    finally:
        await running.stop()


async def _req(method: str, url: str, body: bytes | None = None) -> tuple[int, Any]:
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, \
            s.request(method, url, data=body) as r:
        return r.status, json.loads(await r.text())


def _body(doc: object) -> bytes:
    return json.dumps(doc).encode()


async def test_drain_with_reason_and_expiry_shows_in_status(
        app: tuple[App, str], caplog: pytest.LogCaptureFixture) -> None:
    running, base = app
    with caplog.at_level(logging.INFO, logger="healthwatch.drains"):
        t = time.time()
        code, doc = await _req("POST", base + "/v1/drains/us",
                               _body({"reason": "kernel upgrade", "for": "30m"}))
        assert code == 200, doc
        drain = doc["drain"]
        assert drain["reason"] == "kernel upgrade" and drain["by"] == "127.0.0.1"
        assert t <= drain["since"] <= time.time()
        assert drain["until"] == pytest.approx(drain["since"] + 1800)
        code, doc = await _req("DELETE", base + "/v1/drains/eu/default/nginx")
        assert code == 200  # undrain of something not drained: fine, not logged
        code, doc = await _req("POST", base + "/v1/drains/eu/default/nginx")  # no body
        assert code == 200 and doc["drain"]["reason"] == "" and doc["drain"]["until"] is None
    fields = [parse_fields(r.getMessage()) for r in caplog.records]
    assert [e for e, _ in fields] == ["drain", "drain"]
    assert fields[0][1]["reason"] == "kernel upgrade" and fields[0][1]["by"] == "127.0.0.1"

    status = running.status()
    # the drains section keeps its shape; the details are next to it
    assert status["drains"] == {"clusters": ["us"], "shards": ["eu/default/nginx"]}
    us, eu = status["drain_details"]
    assert (us["target"], us["reason"], us["by"]) == ("us", "kernel upgrade", "127.0.0.1")
    assert 0 <= us["age_seconds"] < 5 and 1795 < us["remaining_seconds"] <= 1800
    assert (eu["target"], eu["remaining_seconds"]) == ("eu/default/nginx", None)

    text = format_status(status, now=us["since"] + 90)
    assert "DRAINS  clusters: us   shards: eu/default/nginx" in text
    drains = text.split("DRAINS", 1)[1].split("PROVIDERS", 1)[0].splitlines()
    row = next(ln for ln in drains if ln.strip().startswith("us "))
    assert "(1m30s ago)" in row and "(in 28m30s)" in row
    assert row.split()[-3:] == ["127.0.0.1", "kernel", "upgrade"]
    erow = next(ln for ln in drains if ln.strip().startswith("eu/default/nginx "))
    assert " never " in erow


async def test_draining_again_replaces_expiry_without_a_new_serial(
        app: tuple[App, str]) -> None:
    running, base = app
    code, first = await _req("POST", base + "/v1/drains/us", _body({"for": 60}))
    assert code == 200
    serial = running.engine.snapshot.serial
    code, again = await _req("POST", base + "/v1/drains/us", _body({"for": "2h"}))
    assert code == 200
    assert again["drain"]["since"] == first["drain"]["since"]
    assert again["drain"]["until"] == pytest.approx(again["drain"]["since"] + 7200, abs=5)
    assert running.engine.snapshot.serial == serial


@pytest.mark.parametrize(("body", "says"), [
    (_body({"reason": "two\nlines"}), "printable"),
    (_body({"reason": "bell\u0007"}), "printable"),
    (_body({"reason": "x" * 201}), "at most 200"),
    (_body({"reason": 42}), "'reason' must be a string"),
    (_body({"for": "0s"}), "positive"),
    (_body({"for": -60}), "non-negative"),
    (_body({"for": "169h"}), "7 days"),
    (_body({"for": "8d"}), "invalid duration"),
    (_body({"for": "soon"}), "invalid duration"),
    (_body({"for": True}), "'for' must be"),
    (_body({"for": ["1h"]}), "'for' must be"),
    (_body({"reason": "x", "until": 5}), "unknown drain option"),
    (_body(["x"]), "not a JSON object"),
    (b"reason=x", "not JSON"),
    (b"\xff\xfe", "not JSON"),
])
async def test_bad_options_are_a_400_and_change_nothing(
        app: tuple[App, str], body: bytes, says: str) -> None:
    running, base = app
    serial = running.engine.snapshot.serial
    code, doc = await _req("POST", base + "/v1/drains/us", body)
    assert code == 400 and says in doc["error"], doc
    assert running.engine.drains.entries() == []
    assert running.engine.snapshot.serial == serial
    assert (await _req("GET", base + "/v1/status"))[0] == 200  # still serving


async def test_undrain_logs_who_and_the_reason_it_ends(
        app: tuple[App, str], caplog: pytest.LogCaptureFixture) -> None:
    _, base = app
    assert (await _req("POST", base + "/v1/drains/us", _body({"reason": "maint"})))[0] == 200
    with caplog.at_level(logging.INFO):
        assert (await _req("DELETE", base + "/v1/drains/us"))[0] == 200
    events = dict(parse_fields(r.getMessage()) for r in caplog.records)
    assert events["undrain"]["reason"] == "maint" and events["undrain"]["by"] == "127.0.0.1"
    assert events["http_undrained"]["remote"] == "127.0.0.1"


def _config_without_eu(tmp_path: Path) -> None:
    cfg = tmp_path / "f.yaml"
    cfg.write_text(BASE.format(us="192.0.2.10", more="") + f"state_dir: {tmp_path / 's'}\n")


async def test_drains_left_by_a_removed_cluster_can_be_undrained(
        app: tuple[App, str], tmp_path: Path) -> None:
    """``eu`` and one of its services drained, then ``eu`` removed from the config:
    ``fedns status`` still lists both drains, and undrain removes them (it used
    to be a 404, leaving only a hand edit of the drains file)."""
    running, base = app
    assert (await _req("POST", base + "/v1/drains/eu"))[0] == 200
    assert (await _req("POST", base + "/v1/drains/eu/default/nginx"))[0] == 200
    _config_without_eu(tmp_path)
    code, doc = await _req("POST", base + "/v1/reload")
    assert code == 200 and doc["ok"], doc
    assert running.status()["drains"] == {"clusters": ["eu"], "shards": ["eu/default/nginx"]}

    code, doc = await _req("DELETE", base + "/v1/drains/eu/default/nginx")
    assert code == 200 and doc["was_drained"] is True, doc
    code, doc = await _req("DELETE", base + "/v1/drains/eu")
    assert code == 200 and doc["was_drained"] is True, doc
    assert running.status()["drains"] == {"clusters": [], "shards": []}
    saved = json.loads((tmp_path / "s" / "drains.json").read_text())
    assert (saved["clusters"], saved["shards"]) == ([], [])

    # draining it (a typo, or a cluster that is gone) is still refused, clearly
    for path in ("/v1/drains/eu", "/v1/drains/eu/default/nginx"):
        code, doc = await _req("POST", base + path)
        assert code == 404 and doc["error"] == "unknown cluster 'eu'", doc
    # and so is undrain of a name neither configured nor drained
    code, doc = await _req("DELETE", base + "/v1/drains/eu")
    assert code == 404 and doc["error"] == "unknown cluster 'eu'", doc
    assert running.status()["drains"] == {"clusters": [], "shards": []}


async def test_undrain_says_whether_anything_was_drained(app: tuple[App, str]) -> None:
    """Undrain is idempotent (200 every time) and says whether it ended a drain,
    and which drains of that cluster still keep the target out."""
    _, base = app
    code, doc = await _req("DELETE", base + "/v1/drains/us")
    assert code == 200 and doc["was_drained"] is False and doc["still_drained"] == [], doc

    assert (await _req("POST", base + "/v1/drains/us"))[0] == 200
    assert (await _req("POST", base + "/v1/drains/us/default/nginx"))[0] == 200
    # the shard is drained by itself *and* by its cluster
    code, doc = await _req("DELETE", base + "/v1/drains/us/default/nginx")
    assert code == 200 and doc["was_drained"] is True and doc["still_drained"] == ["us"], doc
    code, doc = await _req("DELETE", base + "/v1/drains/us/default/nginx")
    assert (doc["was_drained"], doc["still_drained"]) == (False, ["us"]), doc

    assert (await _req("POST", base + "/v1/drains/us/default/nginx"))[0] == 200
    code, doc = await _req("DELETE", base + "/v1/drains/us")
    assert doc["was_drained"] is True and doc["still_drained"] == ["us/default/nginx"], doc
    code, doc = await _req("DELETE", base + "/v1/drains/us")
    assert (doc["was_drained"], doc["still_drained"]) == (False, ["us/default/nginx"]), doc


# -- drains of the config and of annotations (every replica alike) ---------------------

CONFIG_DRAINS = ("drains:\n  - {cluster: us, reason: planned maintenance}\n"
                 "  - {cluster: eu, service: default/nginx}\n")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(BASE.format(us="192.0.2.10", more=EU) + text)
    return path


async def _started(path: Path) -> App:
    running = App(load(str(path)), config_path=str(path), publishers=False)
    await running.start()
    await _until(lambda: running.ready)
    return running


async def test_undrain_of_what_only_the_config_drains_is_a_409_saying_where(
        tmp_path: Path) -> None:
    path = _write(tmp_path, "f.yaml", CONFIG_DRAINS + f"state_dir: {tmp_path / 's'}\n")
    running = await _started(path)
    base = f"http://127.0.0.1:{running.http.port}"
    try:
        serial = running.engine.snapshot.serial
        code, doc = await _req("DELETE", base + "/v1/drains/us")
        assert code == 409, doc
        assert doc["error"] == (f"us is drained by the config (drains: {{cluster: us}} in {path}); "
                                "remove it there and reload")
        code, doc = await _req("DELETE", base + "/v1/drains/eu/default/nginx")
        assert code == 409 and "{cluster: eu, service: default/nginx}" in doc["error"], doc
        assert running.engine.snapshot.serial == serial  # nothing changed

        # an API drain on top: harmless, and then it is the API's to end
        code, doc = await _req("POST", base + "/v1/drains/us", _body({"reason": "now"}))
        assert code == 200 and (doc["drain"]["source"], doc["drain"]["reason"]) == ("api", "now")
        status = running.status()
        assert status["drains"] == {"clusters": ["us"], "shards": ["eu/default/nginx"]}
        rows = [(d["target"], d["source"], d["reason"]) for d in status["drain_details"]]
        assert rows == [("us", "api", "now"), ("us", "config", "planned maintenance"),
                        ("eu/default/nginx", "config", "")]
        code, doc = await _req("DELETE", base + "/v1/drains/us")
        assert code == 200 and doc["was_drained"] is True, doc
        assert doc["still_drained"] == ["us (config)"]
        assert [d["source"] for d in running.status()["drain_details"]] == ["config", "config"]
        assert not any(s["healthy"] for s in running.status()["shards"] if s["cluster"] == "us")

        # the API's drains file never holds the config's
        saved = json.loads((tmp_path / "s" / "drains.json").read_text())
        assert (saved["clusters"], saved["shards"], saved["details"]) == ([], [], [])

        # `fedns status` names each drain's source
        text = format_status(running.status(), now=time.time())
        drains = text.split("DRAINS", 1)[1].split("PROVIDERS", 1)[0].splitlines()
        assert "SOURCE" in drains[1]
        row = next(ln for ln in drains if ln.strip().startswith("us "))
        assert row.split()[1] == "config" and row.endswith("planned maintenance")
    finally:
        await running.stop()


async def test_two_replicas_loading_one_config_drain_alike_and_undrain_alike(
        tmp_path: Path) -> None:
    """The point of config drains: both replicas of the Deployment load the
    same file (the ConfigMap) and drain the same targets; a reload of the file
    without the drain ends it in both. An API drain stays in its process."""
    path = _write(tmp_path, "f.yaml", CONFIG_DRAINS)  # no state_dir: nothing kept per pod
    replicas = [await _started(path) for _ in (1, 2)]
    bases = [f"http://127.0.0.1:{r.http.port}" for r in replicas]
    try:
        for r in replicas:
            assert r.status()["drains"] == {"clusters": ["us"], "shards": ["eu/default/nginx"]}
        assert (await _req("POST", bases[0] + "/v1/drains/eu"))[0] == 200  # one pod only
        assert [r.status()["drains"]["clusters"] for r in replicas] == [["eu", "us"], ["us"]]

        path.write_text(BASE.format(us="192.0.2.10", more=EU))  # the drains removed
        for base in bases:
            code, doc = await _req("POST", base + "/v1/reload")
            assert code == 200 and doc["ok"], doc
        assert [r.status()["drains"]["clusters"] for r in replicas] == [["eu"], []]
        assert replicas[1].status()["drain_details"] == []
    finally:
        for r in replicas:
            await r.stop()


async def test_undrain_of_what_only_an_annotation_drains_is_a_409(tmp_path: Path) -> None:
    fleet = SimFleet(str(tmp_path))
    await fleet.start(["eu"])
    fleet.publish_service("eu", "nginx", lb_ip="192.0.2.20", ready=1)
    fleet.apis["eu"].apply("services", service("nginx", lb_ips=["192.0.2.20"], annotations={
        "fedns.io/federate": "true", "fedns.io/drain": "bad canary"}))
    eu = fleet.cluster_config("eu")
    more = (f"  - {{name: eu, region: europe-west1, zone: europe-west1-b, source: kubernetes,"
            f" kubeconfig: {eu['kubeconfig']}, context: {eu['context']}}}")
    path = tmp_path / "f.yaml"
    path.write_text(BASE.format(us="192.0.2.10", more=more))
    running = App(load(str(path)), config_path=str(path), publishers=False)
    await running.start()
    try:
        await _until(lambda: running.ready
                     and running.status()["drains"]["shards"] == ["eu/default/nginx"])
        base = f"http://127.0.0.1:{running.http.port}"
        [detail] = running.status()["drain_details"]
        assert (detail["source"], detail["reason"]) == ("annotation", "bad canary")
        code, doc = await _req("DELETE", base + "/v1/drains/eu/default/nginx")
        assert code == 409, doc
        assert doc["error"].startswith(
            "eu/default/nginx is drained by the annotation fedns.io/drain on service "
            "default/nginx in cluster eu")
        # undrain of its cluster (not drained) says what still keeps part of it out
        code, doc = await _req("DELETE", base + "/v1/drains/eu")
        assert code == 200 and doc["was_drained"] is False, doc
        assert doc["still_drained"] == ["eu/default/nginx (annotation)"]
    finally:
        await running.stop()
        await fleet.stop()
