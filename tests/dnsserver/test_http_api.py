"""The HTTP API on a real socket with a fake Control: routes, auth, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from dnsserver.http_api import ApiError, HttpApi, ReloadResult, Route

TOKEN = "t0ken-under-test"


@dataclass
class FakeControl:
    ready: bool = False
    api_token: str | None = None
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)  # drain/undrain keywords
    reload_result: ReloadResult = field(default_factory=lambda: ReloadResult(True, (), 7))

    def status(self) -> dict[str, Any]:
        return {"serial": 7, "clusters": [{"name": "us"}]}

    async def drain(self, cluster: str, service: str | None, *, reason: str = "",
                    duration: str | float | None = None, client: str = "") -> dict[str, Any]:
        if cluster == "mars":
            raise ApiError("unknown cluster 'mars'", status=404)
        if cluster == "boom":
            raise RuntimeError("bug")
        self.calls.append(("drain", cluster, service))
        self.options.append({"reason": reason, "duration": duration, "client": client})
        return {"cluster": cluster, "reason": reason}

    async def undrain(self, cluster: str, service: str | None, *,
                      client: str = "") -> dict[str, Any]:
        self.calls.append(("undrain", cluster, service))
        self.options.append({"client": client})
        return {"was_drained": True, "still_drained": []}

    async def reload(self) -> ReloadResult:
        self.calls.append(("reload", "", None))
        return self.reload_result


async def _extra(request: web.Request) -> web.Response:
    return web.Response(text="extra\n")


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeControl, str, CollectorRegistry]]:
    control = FakeControl()
    registry = CollectorRegistry()
    Counter("fedns_test_things", "things", registry=registry).inc(3)
    server = HttpApi(control, registry=registry, host="127.0.0.1", port=0,
                     extra_routes=[Route("GET", "/x/open", _extra, mutating=False),
                                   Route("POST", "/x/open", _extra, mutating=False),
                                   Route("POST", "/x/closed", _extra)])
    await server.start()
    assert server.port != 0
    try:
        yield control, f"http://127.0.0.1:{server.port}", registry
    finally:
        await server.stop()


async def _req(method: str, url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as s, \
            s.request(method, url, headers=headers) as r:
        return r.status, await r.text()


async def test_health_readiness_metrics_status(api: tuple[FakeControl, str, Any]) -> None:
    control, base, _ = api
    assert await _req("GET", base + "/healthz") == (200, "ok\n")
    assert (await _req("GET", base + "/readyz"))[0] == 503
    control.ready = True
    assert (await _req("GET", base + "/readyz"))[0] == 200
    code, text = await _req("GET", base + "/metrics")
    assert code == 200 and "fedns_test_things_total 3.0" in text
    code, text = await _req("GET", base + "/v1/status")
    assert code == 200 and '"serial": 7' in text


@pytest.mark.parametrize(("method", "path", "call"), [
    ("POST", "/v1/drains/us", ("drain", "us", None)),
    ("DELETE", "/v1/drains/us", ("undrain", "us", None)),
    ("POST", "/v1/drains/us/default/nginx", ("drain", "us", "default/nginx")),
    ("DELETE", "/v1/drains/us/web/shop?kind=ingress", ("undrain", "us", "ingress:web/shop")),
])
async def test_drain_routes(api: tuple[FakeControl, str, Any], method: str, path: str,
                            call: tuple[str, str, str | None]) -> None:
    control, base, _ = api
    code, _ = await _req(method, base + path)
    assert code == 200
    assert control.calls == [call]


async def test_errors_become_json_not_crashes(api: tuple[FakeControl, str, Any]) -> None:
    _, base, _ = api
    code, text = await _req("POST", base + "/v1/drains/mars")
    assert code == 404 and "mars" in text
    code, text = await _req("POST", base + "/v1/drains/boom")
    assert code == 500 and "RuntimeError" in text
    code, _ = await _req("POST", base + "/v1/drains/us/a/b?kind=pod")
    assert code == 400
    assert (await _req("GET", base + "/healthz"))[0] == 200  # still serving


async def test_reload_reports_problems(api: tuple[FakeControl, str, Any]) -> None:
    control, base, _ = api
    code, text = await _req("POST", base + "/v1/reload")
    assert code == 200 and '"serial": 7' in text
    control.reload_result = ReloadResult(False, ("f.yaml:3:1: bad",))
    code, text = await _req("POST", base + "/v1/reload")
    assert code == 422 and "f.yaml:3:1: bad" in text


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/drains/us"), ("DELETE", "/v1/drains/us/default/nginx"),
    ("POST", "/v1/reload"), ("POST", "/x/closed"),
])
async def test_mutations_need_the_bearer_token(api: tuple[FakeControl, str, Any],
                                               method: str, path: str) -> None:
    control, base, _ = api
    control.api_token = TOKEN
    assert (await _req(method, base + path))[0] == 401
    assert (await _req(method, base + path, token="nope"))[0] == 401
    assert (await _req(method, base + path, token=TOKEN + "x"))[0] == 401
    assert (await _req(method, base + path, token=TOKEN))[0] == 200
    assert len(control.calls) <= 1  # only the authorised call reached the control


async def test_reads_and_open_routes_need_no_token(api: tuple[FakeControl, str, Any]) -> None:
    control, base, _ = api
    control.api_token = TOKEN
    for path in ("/healthz", "/metrics", "/v1/status", "/x/open"):
        assert (await _req("GET", base + path))[0] == 200, path
    assert (await _req("POST", base + "/x/open"))[0] == 200
