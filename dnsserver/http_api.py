"""The operator HTTP API (aiohttp): health, readiness, metrics, status, explain,
drains, reload.

It knows nothing of the engine or the DNS server: it talks to a ``Control``
(implemented by ``dnsserver.app.App``). Mutating endpoints require
``Authorization: Bearer <api_token>`` whenever the config sets ``api_token``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from healthwatch.model import SHARD_KINDS

log = logging.getLogger("dnsserver.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request the control refuses; becomes a JSON error with ``status``."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool
    problems: tuple[str, ...] = ()
    serial: int | None = None


class Control(Protocol):
    """What the HTTP API needs from the running application."""

    @property
    def ready(self) -> bool: ...

    @property
    def api_token(self) -> str | None: ...

    def status(self) -> dict[str, Any]: ...

    def explain(self, name: str, qtype: str, client: str,
                subnet: str | None) -> dict[str, Any]:
        """Why ``client`` (or ECS ``subnet``) gets its answer for ``name``
        ``qtype``; raises ApiError (400) for bad input."""
        ...

    async def drain(self, cluster: str, service: str | None, *, reason: str = "",
                    duration: str | float | None = None, client: str = "") -> dict[str, Any]:
        """Drain (again: replace its expiry, and its reason if given); ``duration``
        as the client sent it (``"30m"`` or seconds). Returns the drain as JSON
        (reason, since, until, by, source: ``"api"``); raises ApiError (400) for
        a bad reason or duration, (404) for an unknown cluster. A target the
        config or an annotation drains gets an API drain too (harmless)."""
        ...

    async def undrain(self, cluster: str, service: str | None, *,
                      client: str = "") -> dict[str, Any]:
        """End the API's drain of the target (idempotent). Returns whether the
        target was drained (``was_drained``) and the other drains that still
        keep it, or part of it, out (``still_drained``: ``us``, or ``us
        (config)``, ``eu/ns/name (annotation)`` for drains the API cannot
        end). Raises ApiError (409) when only the config or an annotation
        drains the target, saying where to end it."""
        ...

    async def reload(self) -> ReloadResult: ...


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    mutating: bool = True


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data, indent=2, sort_keys=True, default=str) + "\n",
        status=status,
        content_type="application/json",
    )


class HttpApi:
    """Owns the aiohttp runner; ``start`` binds ``host:port`` (port 0: any free port)."""

    def __init__(
        self,
        control: Control,
        *,
        registry: CollectorRegistry,
        host: str,
        port: int,
        extra_routes: Iterable[Route] = (),
    ) -> None:
        self._control = control
        self._registry = registry
        self._host = host
        self._port = port
        self._extra = tuple(extra_routes)
        self._open = {(r.method, r.path) for r in self._extra if not r.mutating}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        if self._runner is not None:
            for addr in self._runner.addresses:
                return int(addr[1])
        return self._port

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/explain", self._explain)
        for method in ("POST", "DELETE"):
            app.router.add_route(method, "/v1/drains/{cluster}", self._drain)
            app.router.add_route(method, "/v1/drains/{cluster}/{namespace}/{name}", self._drain)
        app.router.add_post("/v1/reload", self._reload)
        for r in self._extra:
            app.router.add_route(r.method, r.path, r.handler)
        return app

    async def start(self) -> None:
        app = self.build_app()
        self._runner = web.AppRunner(app, access_log=log.getChild("access"))
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await self._site.start()
        log.info("http_listening address=%s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    # -- middlewares -----------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return _json({"error": str(exc)}, status=exc.status)
        except web.HTTPException:
            raise
        except Exception as exc:  # the API must never take the server down
            log.exception("http_handler_failed path=%s", request.path)
            return _json({"error": f"internal error: {type(exc).__name__}"}, status=500)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return await handler(request)
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        if (request.method, canonical) in self._open:
            return await handler(request)
        token = self._control.api_token
        if token:
            given = request.headers.get("Authorization", "")
            scheme, _, cred = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                cred.strip().encode(), token.encode()
            ):
                log.warning("http_unauthorized method=%s path=%s remote=%s",
                            request.method, request.path, request.remote)
                return _json({"error": "unauthorized: need Authorization: Bearer <token>"},
                             status=401)
        return await handler(request)

    # -- handlers --------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._control.ready:
            return web.Response(text="ready\n")
        return web.Response(text="not ready: sources not synced yet\n", status=503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def _status(self, request: web.Request) -> web.Response:
        return _json(self._control.status())

    async def _explain(self, request: web.Request) -> web.Response:
        query = request.query
        name = query.get("name")
        if not name:
            raise ApiError("name is required: /v1/explain?name=NAME[&type=A][&client=IP]"
                           "[&subnet=CIDR]")
        doc = self._control.explain(name, query.get("type") or "A",
                                    query.get("client") or "127.0.0.1", query.get("subnet"))
        return _json(doc)

    async def _drain(self, request: web.Request) -> web.Response:
        """``POST``/``DELETE /v1/drains/{cluster}[/{namespace}/{name}][?kind=KIND]``
        (KIND: ``service``, the default, ``ingress`` or ``httproute``).

        A POST may carry a JSON object ``{"reason": TEXT, "for": DURATION}``
        (both optional; no body at all is a drain without either). A DELETE is
        idempotent: its answer says whether the target was drained
        (``was_drained``) and which other drains still keep it, or part of it, out
        (``still_drained``: its own config or annotation drains, its cluster's
        drain, or the cluster's shard drains; the source in parentheses unless
        it is the API's). A DELETE of a target that only the config or an
        annotation drains is a 409 saying where that drain comes from: every
        replica reads those alike, and only their origin ends them.
        """
        cluster = request.match_info["cluster"]
        ns = request.match_info.get("namespace")
        name = request.match_info.get("name")
        service = f"{ns}/{name}" if ns and name else None
        kind = request.query.get("kind", "service")
        if kind not in SHARD_KINDS:
            raise ApiError(f"kind must be one of {', '.join(SHARD_KINDS)}, got {kind!r}")
        if service is not None and kind != "service":
            service = f"{kind}:{service}"
        client = request.remote or ""
        body: dict[str, Any] = {"ok": True, "cluster": cluster, "service": service}
        if request.method == "POST":
            reason, duration = _drain_options(await request.read())
            body["drain"] = await self._control.drain(
                cluster, service, reason=reason, duration=duration, client=client)
            action = "drained"
        else:
            body.update(await self._control.undrain(cluster, service, client=client))
            action = "undrained"
        log.info("http_%s cluster=%s service=%s remote=%s", action, cluster, service or "*",
                 client or "-")
        return _json({**body, "action": action})

    async def _reload(self, request: web.Request) -> web.Response:
        result = await self._control.reload()
        body = {"ok": result.ok, "problems": list(result.problems), "serial": result.serial}
        return _json(body, status=200 if result.ok else 422)


DRAIN_OPTIONS = ("reason", "for")


def _drain_options(raw: bytes) -> tuple[str, str | float | None]:
    """(reason, duration) from a drain request's body: empty, or a JSON object
    with only ``reason`` (a string) and ``for`` (a duration string or seconds)."""
    if not raw.strip():
        return "", None
    usage = 'expected a JSON object like {"reason": "kernel upgrade", "for": "2h"}'
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ApiError(f"drain body is not JSON ({exc}); {usage}") from exc
    if not isinstance(doc, dict):
        raise ApiError(f"drain body is not a JSON object; {usage}")
    unknown = sorted(set(doc) - set(DRAIN_OPTIONS))
    if unknown:
        raise ApiError(f"unknown drain option(s) {', '.join(map(repr, unknown))}; {usage}")
    reason = doc.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(f"'reason' must be a string; {usage}")
    duration = doc.get("for")
    if duration is not None and (isinstance(duration, bool)
                                 or not isinstance(duration, str | int | float)):
        raise ApiError(f"'for' must be a duration like \"30m\" or a number of seconds; {usage}")
    return reason, duration
