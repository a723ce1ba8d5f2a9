"""One list+watch loop for one resource of one cluster, on its own thread.

Lists once, then watches from the list's resourceVersion. A broken stream or
a refused connection resumes the watch from the last resourceVersion seen
(events and bookmarks advance it); only ``410 Gone`` leads to a relist.
Errors (HTTP 5xx, garbage bodies, refused connections) back off exponentially
with jitter, at least as long as a ``Retry-After`` header asks, and are
reported as ``"<list|watch> <resource>: <what happened>"`` with the onset of
the failure (when the resource stopped working: the moment its stream failed,
else when the failing call started), so that ``cluster_grace`` counts from
there; the state learnt so far is kept, since only a successful list replaces
it. Every call carries a timeout.

An optional resource (``Resource.optional``: a CRD a cluster need not install)
whose list is refused for good (404: not served; 403: not granted) is no
failure: it is reported as listed and empty, logged once per kind of refusal
(a 403 as a warning, and kept in ``note`` for the status), and listed again
every ``backoff_cap`` so that CRDs installed later are found. A watch of it
refused that way (the CRDs deleted) goes back to listing. A 403 also counts
once in ``fedns_kube_api_errors_total`` (op ``list``), when the refusal
starts, not at every recheck: RBAC that lacks a rule is an error an operator
must fix. A 404 does not count: CRDs not installed are a normal state (most
clusters), and an error counter that rises on every start of fedns there
would only teach operators to ignore it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from healthwatch.kube.backoff import Backoff
from healthwatch.kube.errors import KubeError, ObjectError, ResponseError
from healthwatch.kube.facts import Facts
from healthwatch.kube.metrics import ClusterMetrics
from healthwatch.kube.options import KubeOptions
from healthwatch.kube.resources import ListCall, Resource

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Phase = Literal["list", "watch"]
_LOG_SNIPPET = 120
_DETAIL_MAX = 200  # characters of a server's error message kept in last_error


class WatchSink(Protocol):
    """Receives what a Watcher learns. Called on the watcher's thread."""

    def listed(self, resource: str, items: list[Facts], resource_version: str) -> None: ...

    def changed(self, resource: str, event: EventType, facts: Facts) -> None: ...

    def contact(self, resource: str) -> None: ...

    def failed(self, resource: str, error: str, since: float) -> None:
        """``resource`` fails with ``error``; it stopped working at ``since``
        (unix time, the same for every failure until it works again)."""


class Gone(KubeError):
    """The resourceVersion is too old (410): relist."""


class WatchStatusError(KubeError):
    """The watch stream reported an ERROR event other than 410."""


def describe(error: BaseException) -> str:
    """A one-line, secret-free description of an API call failure."""
    if isinstance(error, ApiException):
        detail = ""
        try:
            body = json.loads(error.body) if error.body else None
            if isinstance(body, dict) and isinstance(body.get("message"), str):
                detail = f": {_one_line(body['message'])}"
        except (ValueError, TypeError):
            pass
        if error.status == 0:
            return _one_line(f"{error.reason}")
        wait = retry_after(error)
        hint = f" (Retry-After {wait:g}s)" if wait is not None else ""
        return f"HTTP {error.status} {error.reason}{detail}{hint}"
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        return describe(error.reason)
    if isinstance(error, urllib3.exceptions.NewConnectionError):
        conn = getattr(error, "conn", None)
        where = f" to {conn.host}:{conn.port}" if conn is not None else ""
        reason = str(error).rsplit("connection: ", 1)[-1]
        return f"cannot connect{where}: {reason}"
    if isinstance(error, KubeError):
        return _one_line(str(error))
    return _one_line(f"{type(error).__name__}: {error}")


def retry_after(error: BaseException) -> float | None:
    """Seconds asked for by the ``Retry-After`` header of an HTTP error (the
    delay-seconds form; an HTTP date is ignored), else None."""
    headers = getattr(error, "headers", None) if isinstance(error, ApiException) else None
    value = headers.get("Retry-After") if headers is not None else None
    if not isinstance(value, str):
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 3] + "..."


def _json_object(data: bytes, content_type: str | None) -> dict[str, Any]:
    """The decoded body of a list response, or ResponseError saying what it is."""
    try:
        body = json.loads(data)
    except ValueError:
        what = f"{content_type or 'no content type'}, {len(data)} bytes"
        raise ResponseError(problem=f"response is not JSON ({what})") from None
    if not isinstance(body, dict):
        raise ResponseError(problem=f"response is a JSON {type(body).__name__}, not an object")
    return body


@dataclass(frozen=True, slots=True)
class ListPage:
    """One page of a list response, as the watches check it."""

    items: list[Any]
    token: str | None  # metadata.continue: more pages follow
    resource_version: str | None  # None: missing or empty
    remaining: int | None  # metadata.remainingItemCount, when the server gives it


def list_page(data: bytes, content_type: str | None) -> ListPage:
    """The page in a list response's body, or ResponseError saying what is
    wrong with it (the watches and ``fedns check --clusters`` read lists
    alike). An empty list may come as null items."""
    body = _json_object(data, content_type)
    items = body.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise ResponseError(problem=f"items is a JSON {type(items).__name__}, not a list")
    meta = body.get("metadata")
    if not isinstance(meta, dict):
        raise ResponseError(problem="metadata missing or not an object")
    token = meta.get("continue") or None
    if token is not None and not isinstance(token, str):
        raise ResponseError(problem="metadata.continue is not a string")
    rv = meta.get("resourceVersion")
    remaining = meta.get("remainingItemCount")
    if isinstance(remaining, bool) or not isinstance(remaining, int) or remaining < 0:
        remaining = None
    return ListPage(items, token, rv if isinstance(rv, str) and rv else None, remaining)


class _Contact:
    """Tells the sink once that a new watch stream works: at its first good line,
    or after ``settle`` seconds without a bad one (a quiet resource sends
    nothing). A stream that answers 200 and then garbage never counts, so
    status does not flap between "recovered" and "failed"."""

    def __init__(self, sink: WatchSink, resource: str, settle: float,
                 on_good: Callable[[], None]) -> None:
        self._sink = sink
        self._resource = resource
        self._on_good = on_good
        self._lock = threading.Lock()
        self._done = False
        self._good = False
        self._timer = threading.Timer(settle, self.good)
        self._timer.daemon = True
        self._timer.start()

    def good(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            self._good = True
            self._on_good()  # under the lock: never after bad() returned
        self._timer.cancel()
        self._sink.contact(self._resource)

    def bad(self) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    @property
    def made(self) -> bool:
        """Whether the sink was told that this stream works."""
        with self._lock:
            return self._done and self._good


class Watcher:
    """Owns one thread that keeps ``resource`` in sync and reports to ``sink``."""

    def __init__(
        self,
        resource: Resource,
        api: client.ApiClient,
        sink: WatchSink,
        options: KubeOptions,
        log: logging.Logger,
        metrics: ClusterMetrics | None = None,
    ) -> None:
        self._resource = resource
        self._metrics = metrics
        self._api = api
        self._sink = sink
        self._options = options
        self._log = log
        self._stop = threading.Event()
        self._wake = threading.Event()  # cuts a retry wait short (set by stop() too)
        self._lock = threading.Lock()
        self._response: urllib3.BaseHTTPResponse | None = None
        self._thread: threading.Thread | None = None
        self.resource_version: str | None = None
        self.lists = 0  # successful full lists (initial + relists)
        # the last list was refused for good (403 RBAC, 404 API not served);
        # cleared by the next successful list
        self.denied = False
        # an optional resource refused for good with something to fix (a 403):
        # "list <resource>: HTTP 403 ...", for the status; None otherwise
        self.note: str | None = None
        self._absent_status: int | None = None  # the refusal last logged (optional resources)
        self.watches = 0  # watch requests made (the first one and every restart)
        # onset of the current failure (unix time), None while working: set by
        # a stream that broke or a call that failed, cleared by a good list or
        # a watch that counts as working (see _Contact)
        self._down_since: float | None = None
        self._call_at: float | None = None  # start of the call in flight (None: a stream is open)

    @property
    def name(self) -> str:
        return self._resource.name

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"kube-watch-{self._resource.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loop; interrupts a blocked watch read. Blocks up to ``timeout``."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # best effort from another thread
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Retry now if waiting to retry after an error (the credentials were
        just reloaded), unless the server asked for the wait (Retry-After)."""
        self._wake.set()

    def _pause(self, delay: float, *, wakeable: bool = True) -> None:
        if wakeable:
            self._wake.wait(delay)
            self._wake.clear()
        else:
            self._stop.wait(delay)

    # -- the loop ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = Backoff(self._options.backoff_base, self._options.backoff_cap)
        call = self._resource.call(self._api)
        while not self._stop.is_set():
            phase: Phase = "list" if self.resource_version is None else "watch"
            try:
                if self.resource_version is None:
                    self._list(call)
                    backoff.reset()
                    phase = "watch"
                outcome = self._watch(call, backoff)
                if outcome == "gone":
                    self._log.info("watch_expired resource=%s action=relist", self.name)
                    self.resource_version = None
                elif outcome == "broken":
                    self._down(time.time())
                    self._pause(backoff.next())
                else:
                    backoff.reset()
            except Gone:
                self._log.info("list_expired resource=%s action=relist", self.name)
                self.resource_version = None
            except (ApiException, KubeError, urllib3.exceptions.HTTPError, OSError) as e:
                if self._stop.is_set():
                    break
                if phase == "list" and isinstance(e, ApiException) and e.status in (403, 404):
                    self.denied = True
                if self._refused_for_good(e):
                    self._absent(phase, e)
                    continue
                delay = backoff.next()
                asked = retry_after(e)
                if asked is not None:
                    delay = max(delay, min(asked, self._options.retry_after_cap))
                error = f"{phase} {self.name}: {describe(e)}"
                self._log.warning("call_failed op=%s resource=%s error=%r retry_in=%.2fs",
                                  phase, self.name, error, delay)
                if self._metrics is not None:
                    self._metrics.api_error(self.name, phase)
                self._sink.failed(self.name, error, self._down(self._failed_at()))
                self._pause(delay, wakeable=asked is None)
            except Exception as e:  # a bug must not kill the thread silently
                if self._stop.is_set():
                    break
                self._log.exception("watch_crashed op=%s resource=%s", phase, self.name)
                if self._metrics is not None:
                    self._metrics.api_error(self.name, phase)
                self._sink.failed(self.name, f"{phase} {self.name}: {describe(e)}",
                                  self._down(self._failed_at()))
                self._pause(backoff.next())

    def _refused_for_good(self, error: BaseException) -> bool:
        """Whether ``error`` says that this optional resource is not served or
        not granted (CRDs not installed, RBAC without it)."""
        return (self._resource.optional and isinstance(error, ApiException)
                and error.status in (403, 404))

    def _absent(self, phase: Phase, error: ApiException) -> None:
        """An optional resource refused for good. A refused list means none of
        these objects here: the sink hears an empty list (so those known before
        go). A refused watch (the CRDs deleted) lists again. Either way after
        ``backoff_cap``, so a server that keeps refusing is not hammered."""
        if phase == "list":
            self._none_here(error)
        self.resource_version = None
        self._pause(self._options.backoff_cap)

    def _none_here(self, error: ApiException) -> None:
        """Report an optional resource's refused list as an empty one; each kind
        of refusal is logged once, not per retry, and a 403 is kept in ``note``
        and counted once (see the module docstring)."""
        text = f"list {self.name}: {describe(error)}"
        if self._absent_status != error.status:
            self._absent_status = error.status
            self._refusal_started(error.status, text)
        self.note = text if error.status == 403 else None
        self._up()
        self._sink.listed(self.name, [], "")

    def _refusal_started(self, status: int | None, text: str) -> None:
        """Log (and for a 403, count) a refusal of an optional resource's list
        that was not refused this way at the previous try."""
        event, level = (("api_not_served", logging.INFO) if status == 404
                        else ("api_forbidden", logging.WARNING))
        self._log.log(level, "%s resource=%s error=%r action=none_watched recheck_in=%gs",
                      event, self.name, text, self._options.backoff_cap)
        if status == 403 and self._metrics is not None:
            self._metrics.api_error(self.name, "list")

    def _down(self, at: float) -> float:
        """This resource stopped working at ``at``, unless it already had: the onset."""
        if self._down_since is None:
            self._down_since = at
        return self._down_since

    def _up(self) -> None:
        self._down_since = None

    def _failed_at(self) -> float:
        """When the failure just caught began: the start of the failing call, or
        now if it broke a stream that was open (alive until now)."""
        return time.time() if self._call_at is None else self._call_at

    def _list(self, call: ListCall) -> None:
        """One full (paged) list. Raises before reporting anything unless every
        page was good, so a failed list never replaces what is known."""
        self._call_at = time.time()
        items: list[Facts] = []
        seen = 0
        token: str | None = None
        while True:
            try:
                response = call(
                    limit=self._options.list_limit,
                    _continue=token,
                    _request_timeout=self._options.call_timeout,
                    _preload_content=False,
                )
            except ApiException as e:
                if e.status == 410:
                    raise Gone(str(e)) from e
                raise
            try:
                data = response.data
            finally:
                response.release_conn()
            page = list_page(data, response.headers.get("Content-Type"))
            seen += len(page.items)
            for raw in page.items:
                facts = self._digest(raw)
                if facts is not None:
                    items.append(facts)
            token, rv = page.token, page.resource_version
            if not token:
                break
        if rv is None:
            raise ResponseError(problem="no metadata.resourceVersion in the response")
        if seen and not items:
            # Nothing usable at all: a broken server, not a cluster that runs
            # nothing. Keep what we know rather than drop every shard.
            raise ResponseError(problem=f"none of the {seen} items is a well-formed object")
        self.resource_version = rv
        self.denied = False
        self.note = None
        if self._absent_status is not None:
            self._absent_status = None
            self._log.info("api_served resource=%s", self.name)
        if self.lists and self._metrics is not None:
            self._metrics.relisted(self.name)
        self.lists += 1
        self._log.info("listed resource=%s items=%d resource_version=%s", self.name, len(items), rv)
        self._up()
        self._sink.listed(self.name, items, rv)

    def _digest(self, raw: Any) -> Facts | None:
        """The facts of one object, or None (logged and counted) if it is malformed."""
        try:
            return self._resource.digest(raw)
        except ObjectError as e:
            self._log.warning("malformed_object resource=%s error=%r", self.name, str(e))
        except Exception as e:  # a shape the digest did not foresee: skip, never loop on it
            self._log.warning("malformed_object resource=%s error=%r", self.name, describe(e),
                              exc_info=True)
        self._count("malformed")
        return None

    def _watch(self, call: ListCall, backoff: Backoff) -> Literal["gone", "ended", "broken"]:
        self.watches += 1
        if self.watches > 1 and self._metrics is not None:
            self._metrics.watch_restarted(self.name)
        self._call_at = time.time()
        try:
            response = call(
                watch=True,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._options.watch_timeout,
                _request_timeout=self._options.watch_request_timeout,
                _preload_content=False,
            )
        except ApiException as e:
            if e.status == 410:  # some servers refuse an expired watch outright
                return "gone"
            raise
        with self._lock:
            self._response = response
        self._call_at = None  # the stream is open: it is alive until it fails
        clean = False
        good = bad = 0
        contact = _Contact(self._sink, self.name, self._options.watch_settle, self._up)
        try:
            if self._stop.is_set():  # stop() ran while the call was in flight: it
                return "ended"  # could not shut this response, so do not read it
            for line in self._lines(response):
                result = self._handle(line)
                if result == "gone":
                    return "gone"
                if result == "ok":
                    if not good:  # the API works again: the next failure starts afresh
                        backoff.reset()
                    good += 1
                    contact.good()
                else:
                    bad += 1
                    if not good:
                        contact.bad()
            clean = not self._stop.is_set()
            if bad and not good:
                lines = "line" if bad == 1 else "lines"
                raise ResponseError(problem=f"watch stream ended after {bad} malformed {lines}")
            # A stream that ended without one good event and before it settled
            # proves little: retry it with backoff, so a server that closes at
            # once is not hammered. One that stayed open quietly until the
            # server's timeout is a normal end: reopen it at once, or a quiet
            # resource would back off further at every timeout (up to
            # backoff_cap) and see its next change that much later.
            return "ended" if good or contact.made else "broken"
        except (urllib3.exceptions.HTTPError, OSError) as e:
            if isinstance(e, urllib3.exceptions.ReadTimeoutError) and not self._stop.is_set():
                # silent for watch_idle_timeout: presumed hung, reopened from
                # the resourceVersion (no relist); back off only if it never worked
                self._log.info("watch_idle resource=%s silent_for=%gs resume_from=%s",
                               self.name, self._options.watch_request_timeout[1],
                               self.resource_version)
                return "ended" if good or contact.made else "broken"
            if not self._stop.is_set():
                self._log.info(
                    "watch_broken resource=%s error=%r resume_from=%s",
                    self.name,
                    describe(e),
                    self.resource_version,
                )
            return "broken"
        finally:
            contact.bad()  # no late contact from a stream that has ended
            with self._lock:
                self._response = None
            if not clean:  # unread bytes must not reach the next request on this connection
                response.close()
            response.release_conn()

    def _lines(self, response: Any) -> Iterator[bytes]:
        buffer = b""
        for chunk in response.stream(amt=None, decode_content=False):
            if self._stop.is_set():
                return
            buffer += chunk
            while (cut := buffer.find(b"\n")) >= 0:
                line, buffer = buffer[:cut], buffer[cut + 1 :]
                if line.strip():
                    yield line
        if buffer.strip():
            # The stream ended cleanly in the middle of a line: handled like any
            # other line, so that a body of pure garbage counts as malformed.
            self._log.warning(
                "truncated_event resource=%s bytes=%d resume_from=%s",
                self.name,
                len(buffer),
                self.resource_version,
            )
            yield buffer

    def _handle(self, line: bytes) -> Literal["gone", "ok", "malformed"]:
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
            self._log.warning("malformed_event resource=%s line=%r", self.name, line[:_LOG_SNIPPET])
            self._count("malformed")
            return "malformed"
        kind = event.get("type")
        self._count(kind if isinstance(kind, str) else "unknown")
        obj: dict[str, Any] = event["object"]
        if kind == "ERROR":
            if obj.get("code") == 410:
                return "gone"
            code, message = obj.get("code"), obj.get("message")
            raise WatchStatusError(f"ERROR event {code}: {message}")
        meta = obj.get("metadata")
        rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
        if kind == "BOOKMARK":
            if isinstance(rv, str) and rv:
                self.resource_version = rv
            return "ok"
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            self._log.warning("unknown_event resource=%s type=%r", self.name, kind)
            return "malformed"
        facts = self._digest(obj)
        if facts is not None:
            self._sink.changed(self.name, kind, facts)
        if isinstance(rv, str) and rv:
            self.resource_version = rv  # a skipped object is not asked for again
        return "ok" if facts is not None else "malformed"

    def _count(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.event(self.name, kind)
