"""``FakeKubeAPI``: the HTTP face of a simulated cluster (aiohttp).

Paths: ``/version``; ``/api/v1/{services,nodes}``; ``/apis/{group}/{version}/
{resource}``; namespaced forms ``.../namespaces/{ns}/{resource}``. An API group
can be withdrawn (``unserve``: its paths answer 404, as for CRDs that are not
installed) and served again (``serve``). ``GET`` lists
(with ``limit``/``continue``) or, with ``watch=1``, streams chunked JSON lines
from ``resourceVersion`` (``allowWatchBookmarks``, ``timeoutSeconds``). Label
and field selectors are ignored. Faults: ``pause``/``resume`` (requests hang),
``kill``/``restart`` (same port, state kept), ``cut_next_event``,
``inject_raw``/``inject_event``, ``expire`` (410 Gone), ``send_bookmark``, and
injected HTTP errors or garbage bodies (``fail``, ``garbage``, ``clear_faults``;
see ``faults.py``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from healthwatch.kube.sim.faults import Fault, FaultPlan, On, status_body
from healthwatch.kube.sim.kubeconfig import KubeconfigEntry, write_kubeconfig
from healthwatch.kube.sim.store import RESOURCES, Event, Expired, ObjectStore

log = logging.getLogger("healthwatch.kube.sim")
_IDLE_CHECK = 0.25  # seconds between checks that an idle watch's client is still there

_API_PATHS = {  # (group, version) -> resources served under it
    ("", "v1"): {"services", "nodes"},
    ("discovery.k8s.io", "v1"): {"endpointslices"},
    ("networking.k8s.io", "v1"): {"ingresses"},
    ("multicluster.x-k8s.io", "v1alpha1"): {"serviceexports"},
    ("gateway.networking.k8s.io", "v1"): {"gateways", "httproutes"},
}


_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-fedns-sim",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    method: str
    path: str
    query: dict[str, str]
    at: float
    injected: int | None = None  # status of an injected fault that answered it

    @property
    def resource(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_watch(self) -> bool:
        return self.query.get("watch", "").lower() in ("1", "true")

    @property
    def resource_version(self) -> str | None:
        return self.query.get("resourceVersion")


@dataclass(frozen=True, slots=True)
class _Control:
    action: str  # "raw" | "gone" | "bookmark" | "close"
    data: bytes = b""
    rv: int = 0


@dataclass(eq=False)
class _Watch:
    resource: str
    queue: asyncio.Queue[Any]
    task: asyncio.Task[Any] | None
    request: web.Request
    cut: bool = field(default=False)


class FakeKubeAPI:
    """One simulated member cluster's API server on 127.0.0.1."""

    def __init__(
        self,
        store: ObjectStore | None = None,
        *,
        host: str = "127.0.0.1",
        token: str | None = None,
        bookmark_interval: float | None = None,
        name: str = "sim",
    ) -> None:
        self.store = store or ObjectStore()
        self.name = name
        self.host = host
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.requests: list[RequestRecord] = []
        self._port = 0
        self._runner: web.AppRunner | None = None
        self._running = asyncio.Event()
        self._running.set()
        self._killed = asyncio.Event()  # set by kill(), cleared by start()
        self._watches: set[_Watch] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cut_next: set[str] = set()
        self._snapshots: dict[str, list[dict[str, Any]]] = {}
        self._snapshot_ids = itertools.count(1)
        self.faults = FaultPlan()
        self.unserved: set[str] = set()  # API groups answered 404 (see ``unserve``)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self._port}"

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The server side of TLS (None: plain HTTP, as the demo serves)."""
        return None

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self, port: int | None = None) -> None:
        """Listen on ``port`` (default: the previous port, else an ephemeral one)."""
        if self._runner is not None:
            return
        self._killed.clear()
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.host,
            self._port if port is None else port,
            reuse_address=True,
            ssl_context=self.tls,
        )
        await site.start()
        self._runner = runner
        if self._port == 0:
            self._port = int(runner.addresses[0][1])
        log.info("sim_started cluster=%s url=%s", self.name, self.url)

    async def kill(self) -> None:
        """Crash: drop every connection mid-stream and stop listening."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._killed.set()
        for watch in list(self._watches):
            if watch.request.transport is not None:
                watch.request.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await runner.cleanup()
        log.info("sim_killed cluster=%s", self.name)

    async def restart(self) -> None:
        await self.kill()
        await self.start()

    stop = kill

    def pause(self) -> None:
        """Hang: new requests and open watch streams stall until ``resume``."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def unserve(self, group: str) -> None:
        """Stop serving the API ``group`` (e.g. ``gateway.networking.k8s.io``):
        its lists and new watches answer 404 with a NotFound Status, as an API
        server does for CRDs that are not installed. Stored objects are kept."""
        self.unserved.add(group)

    def serve(self, group: str) -> None:
        """Serve the API ``group`` again (its CRDs were installed)."""
        self.unserved.discard(group)

    # -- objects -----------------------------------------------------------------

    def apply(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.put(resource, obj)

    def delete(self, resource: str, namespace: str, name: str) -> bool:
        return self.store.delete(resource, namespace, name)

    # -- faults ------------------------------------------------------------------

    def drop_watches(self, resource: str | None = None) -> int:
        """Reset the connections of open watches (of ``resource`` or all), as a
        load balancer in front of the API might; clients reconnect."""
        dropped = 0
        for watch in list(self._watches):
            if (resource is None or watch.resource == resource) and watch.request.transport:
                watch.request.transport.abort()
                dropped += 1
        return dropped

    def cut_next_event(self, resource: str) -> None:
        """The next event of ``resource`` is sent half-way, then the connection drops."""
        self._cut_next.add(resource)

    def inject_raw(self, resource: str, data: bytes) -> int:
        """Write ``data`` verbatim into every open watch of ``resource``."""
        return self._control(resource, _Control("raw", data))

    def inject_event(self, resource: str, type_: str, obj: Any) -> int:
        """Send one watch event ``{"type": type_, "object": obj}`` (any shape) to
        every open watch of ``resource``; it is not stored or replayed."""
        line = json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode()
        return self.inject_raw(resource, line + b"\n")

    def fail(
        self,
        resource: str | None,
        status: int = 500,
        *,
        on: On = "any",
        times: int | None = None,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """Answer list and/or watch requests of ``resource`` (None: every resource)
        with HTTP ``status`` and a Status body, ``times`` times or until
        ``clear_faults``. Watches already open are not affected."""
        return self.faults.add(Fault.http_error(
            resource, status, on=on, times=times, retry_after=retry_after, message=message))

    def garbage(
        self,
        resource: str | None,
        body: bytes | Any,
        *,
        on: On = "list",
        times: int | None = None,
        content_type: str = "application/json",
    ) -> Fault:
        """Answer with ``200 OK`` and ``body`` (bytes verbatim, else as JSON)."""
        return self.faults.add(
            Fault.garbage(resource, body, on=on, times=times, content_type=content_type))

    def hang(self, resource: str | None, *, on: On = "watch", times: int | None = None) -> Fault:
        """Answer ``200 OK`` and then stay silent: a stream a middlebox dropped."""
        return self.faults.add(Fault.hang(resource, on=on, times=times))

    def clear_faults(self, resource: str | None = None) -> None:
        self.faults.clear(resource)

    def expire(self, resource: str | None = None) -> None:
        """Compact history; open watches (of ``resource`` or all) end with 410 Gone."""
        self.store.compact()
        for res in [resource] if resource else list(RESOURCES):
            self._control(res, _Control("gone"))

    def send_bookmark(self, resource: str | None = None) -> None:
        for res in [resource] if resource else list(RESOURCES):
            self._control(res, _Control("bookmark", rv=self.store.rv))

    def _control(self, resource: str, control: _Control) -> int:
        watches = [w for w in self._watches if w.resource == resource]
        for watch in watches:
            watch.queue.put_nowait(control)
        return len(watches)

    # -- request log helpers -------------------------------------------------------

    def lists(self, resource: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.resource == resource and not r.is_watch]

    def watches(self, resource: str) -> list[RequestRecord]:
        return [r for r in self.requests if r.resource == resource and r.is_watch]

    def open_watches(self, resource: str | None = None) -> int:
        return sum(1 for w in self._watches if resource is None or w.resource == resource)

    def write_kubeconfig(self, path: str | os.PathLike[str], context: str | None = None) -> str:
        entry = KubeconfigEntry(context or self.name, self.url, self.token)
        return write_kubeconfig(path, [entry])

    def kubeconfig_entry(self, context: str | None = None) -> KubeconfigEntry:
        return KubeconfigEntry(context or self.name, self.url, self.token)

    # -- HTTP --------------------------------------------------------------------

    def _route(self, path: str) -> tuple[str, str | None] | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        served = set() if group in self.unserved else _API_PATHS.get((group, version), set())
        namespace = None
        if len(rest) == 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if len(rest) != 1 or rest[0] not in served:
            return None
        return rest[0], namespace

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            route = self._route(request.path)
            watch = request.query.get("watch", "").lower() in ("1", "true")
            fault = self.faults.take(route[0], watch) if route is not None else None
            self.requests.append(RequestRecord(
                request.method, request.path, dict(request.query), time.time(),
                fault.status if fault is not None else None,
            ))
            await self._running.wait()
            if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
                denied = status_body(401, "Unauthorized", "Unauthorized")
                return web.json_response(denied, status=401)
            if request.path.rstrip("/") == "/version":
                return web.json_response(_VERSION)
            if fault is not None and fault.hang:
                return await self._hang(request, fault.content_type)
            if fault is not None:
                headers = {"Content-Type": fault.content_type, **dict(fault.headers)}
                return web.Response(status=fault.status, body=fault.body, headers=headers)
            if route is None:
                msg = f"the server could not find the requested resource ({request.path})"
                return web.json_response(status_body(404, "NotFound", msg), status=404)
            resource, namespace = route
            if watch:
                return await self._watch(request, resource, namespace)
            return self._list(request, resource, namespace)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _hang(self, request: web.Request, content_type: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        while request.transport is not None and not request.transport.is_closing():
            try:  # until killed (which also cancels this task) or the client leaves
                async with asyncio.timeout(_IDLE_CHECK):
                    await self._killed.wait()
            except TimeoutError:
                continue
            break
        return response

    def _list(self, request: web.Request, resource: str, namespace: str | None) -> web.Response:
        info = RESOURCES[resource]
        token = request.query.get("continue", "")
        limit = int(request.query.get("limit", "0") or 0)
        if token:
            snap_id, _, offset_text = token.partition(":")
            items = self._snapshots.get(snap_id)
            if items is None:
                msg = "the provided continue parameter is too old"
                return web.json_response(status_body(410, "Expired", msg), status=410)
            offset = int(offset_text)
        else:
            items = self.store.items(resource, namespace)
            snap_id = f"{next(self._snapshot_ids)}-{self.store.rv}"
            offset = 0
        page = items[offset : offset + limit] if limit > 0 else items[offset:]
        rv = snap_id.split("-")[1] if token else str(self.store.rv)
        meta: dict[str, Any] = {"resourceVersion": rv}
        if limit > 0 and offset + limit < len(items):
            self._snapshots[snap_id] = items
            while len(self._snapshots) > 16:
                del self._snapshots[next(iter(self._snapshots))]
            meta["continue"] = f"{snap_id}:{offset + limit}"
        else:
            self._snapshots.pop(snap_id, None)
        body = {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": meta,
            "items": page,
        }
        return web.Response(
            body=json.dumps(body, separators=(",", ":")).encode(), content_type="application/json"
        )

    async def _watch(
        self, request: web.Request, resource: str, namespace: str | None
    ) -> web.StreamResponse:
        info = RESOURCES[resource]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        queue = self.store.subscribe(resource)
        watch = _Watch(resource, queue, asyncio.current_task(), request)
        self._watches.add(watch)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.query.get("timeoutSeconds", "1800") or 1800)
        bookmarks = request.query.get("allowWatchBookmarks", "").lower() in ("1", "true")
        last_write = loop.time()
        try:
            rv_text = request.query.get("resourceVersion", "")
            if rv_text in ("", "0"):  # "any": synthetic ADDED for what exists now
                last = self.store.rv
                for obj in self.store.items(resource, namespace):
                    line = json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n"
                    await response.write(line)
            else:
                last = int(rv_text)
                try:
                    backlog = self.store.since(resource, last)
                except Expired:
                    await self._send_gone(response, last)
                    return response
                for event in backlog:
                    wanted = namespace is None or event.namespace == namespace
                    if wanted and not await self._send(watch, response, event.line):
                        return response
                    last = event.rv
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval or remaining, _IDLE_CHECK)
                try:
                    async with asyncio.timeout(wait):
                        item = await queue.get()
                except TimeoutError:
                    transport = request.transport
                    if transport is None or transport.is_closing():
                        return response  # the client went away
                    now = loop.time()
                    if (
                        bookmarks
                        and self.bookmark_interval
                        and self._running.is_set()
                        and now - last_write >= self.bookmark_interval
                    ):
                        await response.write(self._bookmark(info.kind, info.api_version, last))
                        last_write = now
                    continue
                await self._running.wait()
                if isinstance(item, Event):
                    if item.rv <= last:
                        continue
                    last = item.rv
                    if namespace is not None and item.namespace != namespace:
                        continue
                    if not await self._send(watch, response, item.line):
                        return response
                elif item.action == "raw":
                    await response.write(item.data)
                elif item.action == "gone":
                    await self._send_gone(response, last)
                    return response
                elif item.action == "bookmark" and bookmarks:
                    last = max(last, item.rv)
                    await response.write(self._bookmark(info.kind, info.api_version, last))
            await response.write_eof()
        except (ConnectionResetError, RuntimeError) as e:
            log.debug("sim_watch_closed resource=%s error=%r", resource, e)
        finally:
            self.store.unsubscribe(resource, queue)
            self._watches.discard(watch)
        return response

    async def _send(self, watch: _Watch, response: web.StreamResponse, line: bytes) -> bool:
        if watch.resource in self._cut_next:
            self._cut_next.discard(watch.resource)
            await response.write(line[: len(line) // 2])
            await asyncio.sleep(0.01)  # let the half event reach the client
            if watch.request.transport is not None:
                watch.request.transport.abort()
            return False
        await response.write(line)
        return True

    @staticmethod
    def _bookmark(kind: str, api_version: str, rv: int) -> bytes:
        obj = {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": str(rv)}}
        return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"

    @staticmethod
    async def _send_gone(response: web.StreamResponse, rv: int) -> None:
        status = status_body(410, "Expired", f"too old resource version: {rv}")
        await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
        await response.write_eof()
