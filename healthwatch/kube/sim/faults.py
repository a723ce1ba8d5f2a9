"""Injected API failures of a simulated cluster: HTTP errors and garbage bodies.

A ``Fault`` answers matching requests (a resource, or every resource; list,
watch or both) instead of the real handler, ``times`` times or until cleared:

    faults.add(Fault.http_error("services", 500, on="list", times=3))
    faults.add(Fault.http_error(None, 503, retry_after=1))       # every resource
    faults.add(Fault.garbage("endpointslices", b"<html>oops"))   # 200, not JSON
    faults.add(Fault.hang("services"))                          # 200, then silence
    faults.clear()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

On = Literal["list", "watch", "any"]

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """A Kubernetes ``Status`` object, as the API server sends with errors."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass(frozen=True, slots=True)
class FaultResponse:
    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False  # send the headers, then nothing until the client leaves


@dataclass(slots=True)
class Fault:
    """What to answer instead, and to which requests. Mutable: counts down."""

    resource: str | None  # None: every resource
    on: On
    response: FaultResponse
    remaining: int | None = None  # None: until cleared
    served: int = field(default=0)

    def __post_init__(self) -> None:
        if self.on not in ("list", "watch", "any"):
            raise ValueError(f"fault on must be list, watch or any, got {self.on!r}")
        if self.remaining is not None and self.remaining < 1:
            raise ValueError(f"fault times must be >= 1, got {self.remaining}")

    @classmethod
    def http_error(
        cls,
        resource: str | None,
        status: int = 500,
        *,
        on: On = "any",
        times: int | None = None,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> Fault:
        """``status`` with a Kubernetes Status body (and ``Retry-After`` when given)."""
        if not 400 <= status <= 599:
            raise ValueError(f"an HTTP error status is 4xx or 5xx, got {status}")
        reason = _REASONS.get(status, "InternalError")
        text = message or f"injected fault: {reason}"
        body = json.dumps(status_body(status, reason, text)).encode()
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        return cls(resource, on, FaultResponse(status, body, "application/json", headers), times)

    @classmethod
    def garbage(
        cls,
        resource: str | None,
        body: bytes | Any,
        *,
        on: On = "list",
        times: int | None = None,
        content_type: str = "application/json",
    ) -> Fault:
        """A ``200 OK`` whose body is ``body``: raw bytes, or any value sent as JSON
        (so wrong-shape JSON such as ``{"items": 7}`` is easy to write)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return cls(resource, on, FaultResponse(200, raw, content_type), times)

    @classmethod
    def hang(cls, resource: str | None, *, on: On = "watch", times: int | None = None) -> Fault:
        """A ``200 OK`` that never sends a byte of its body: a connection that a
        middlebox dropped without a reset, as seen from the client."""
        return cls(resource, on, FaultResponse(200, b"", "application/json", hang=True), times)

    def matches(self, resource: str, watch: bool) -> bool:
        if self.resource is not None and self.resource != resource:
            return False
        return self.on == "any" or self.on == ("watch" if watch else "list")


class FaultPlan:
    """The active faults of one simulated API server, first match wins."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def clear(self, resource: str | None = None) -> None:
        """Remove the faults of ``resource`` (as given when added), or all."""
        if resource is None:
            self._faults.clear()
        else:
            self._faults = [f for f in self._faults if f.resource != resource]

    @property
    def active(self) -> tuple[Fault, ...]:
        return tuple(self._faults)

    def take(self, resource: str, watch: bool) -> FaultResponse | None:
        """The response for this request, if a fault claims it (counting it down)."""
        for fault in self._faults:
            if fault.matches(resource, watch):
                fault.served += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                return fault.response
        return None
