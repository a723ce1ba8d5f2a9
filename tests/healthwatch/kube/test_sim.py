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
