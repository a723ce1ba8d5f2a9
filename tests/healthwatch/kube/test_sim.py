"""The simulated API server at the wire level, with a plain aiohttp client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.fakekube import FakeKubeAPI, service


@pytest.fixture
async def api() -> AsyncIterator[FakeKubeAPI]:
    server = FakeKubeAPI(bookmark_interval=0.05)
    await server.start()
    yield server
    await server.kill()


async def _lines(resp: aiohttp.ClientResponse, n: int) -> list[dict[str, object]]:
    out = []
    while len(out) < n:
        line = await resp.content.readline()
        if not line:
            break
        out.append(json.loads(line))
    return out


async def test_list_pages_are_a_consistent_snapshot(api: FakeKubeAPI) -> None:
    for i in range(5):
        api.apply("services", service(f"s{i}"))
    async with aiohttp.ClientSession() as http:
        first = await (await http.get(f"{api.url}/api/v1/services?limit=2")).json()
        api.apply("services", service("late"))
        names = [i["metadata"]["name"] for i in first["items"]]
        token = first["metadata"]["continue"]
        while token:
            url = f"{api.url}/api/v1/services?limit=2&continue={token}"
            page = await (await http.get(url)).json()
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue")
            assert page["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert names == [f"s{i}" for i in range(5)]


async def test_watch_replays_from_resource_version_then_streams_and_bookmarks(
    api: FakeKubeAPI,
) -> None:
    api.apply("services", service("a"))
    rv = api.store.rv
    api.apply("services", service("b"))
    api.delete("services", "default", "a")
    async with aiohttp.ClientSession() as http:
        url = f"{api.url}/api/v1/services?watch=1&resourceVersion={rv}&allowWatchBookmarks=true"
        async with http.get(url) as resp:
            assert resp.status == 200
            events = await _lines(resp, 2)
            assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [  # type: ignore[index]
                ("ADDED", "b"), ("DELETED", "a")]
            api.apply("services", service("c"))
            more = await _lines(resp, 2)
    assert more[0]["type"] == "ADDED"
    assert more[1]["type"] == "BOOKMARK"
    assert more[1]["object"]["metadata"]["resourceVersion"] == str(api.store.rv)  # type: ignore[index]


async def test_watch_from_compacted_version_gets_410_event(api: FakeKubeAPI) -> None:
    api.apply("services", service("a"))
    api.expire()
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{api.url}/api/v1/services?watch=1&resourceVersion=1")
        events = await _lines(resp, 2)
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410  # type: ignore[index]


async def test_unknown_path_is_404_status_and_restart_keeps_port_and_state(
    api: FakeKubeAPI,
) -> None:
    api.apply("services", service("a"))
    port = api.port
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{api.url}/api/v1/pods")
        assert resp.status == 404 and (await resp.json())["kind"] == "Status"
    await api.kill()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http:
            await http.get(f"{api.url}/version")
    await api.start()
    assert api.port == port
    async with aiohttp.ClientSession() as http:
        body = await (await http.get(f"{api.url}/api/v1/namespaces/default/services")).json()
    assert [i["metadata"]["name"] for i in body["items"]] == ["a"]
    assert [r.path for r in api.requests].count("/api/v1/pods") == 1


async def test_injected_faults_on_the_wire(api: FakeKubeAPI) -> None:
    api.apply("services", service("web"))
    base = f"{api.url}/api/v1/services"
    api.fail("services", 503, on="list", times=2, retry_after=3, message="try later")
    api.garbage("endpointslices", b"<html>", content_type="text/html")
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            resp = await http.get(base)
            body = await resp.json()
            assert resp.status == 503 and resp.headers["Retry-After"] == "3"
            assert (body["kind"], body["code"], body["message"]) == ("Status", 503, "try later")
        resp = await http.get(base)  # times=2 used up
        assert resp.status == 200 and (await resp.json())["items"][0]["metadata"]["name"] == "web"

        resp = await http.get(f"{api.url}/apis/discovery.k8s.io/v1/endpointslices")
        assert (resp.status, await resp.read()) == (200, b"<html>")
        api.clear_faults("endpointslices")
        resp = await http.get(f"{api.url}/apis/discovery.k8s.io/v1/endpointslices")
        assert (await resp.json())["kind"] == "EndpointSliceList"

        api.fail(None, 500, on="watch")  # every resource, watches only
        resp = await http.get(f"{base}?watch=1&resourceVersion=1")
        assert resp.status == 500
        assert (await http.get(base)).status == 200
        api.clear_faults()
        async with http.get(f"{base}?watch=1&resourceVersion=1&timeoutSeconds=5") as watch:
            assert watch.status == 200
            assert api.inject_event("services", "MODIFIED", {"metadata": 7}) == 1
            lines = await _lines(watch, 2)
            assert lines[-1] == {"type": "MODIFIED", "object": {"metadata": 7}}
            assert api.drop_watches("services") == 1
    assert [r.injected for r in api.lists("services")] == [503, 503, None, None]
    assert [r.injected for r in api.watches("services")] == [500, None]
