"""``KubeSource``: one member cluster watched through its API server.

Blocking work (kubeconfig loading, list/watch, heartbeats) runs on dedicated
threads that hand small frozen facts to the event loop with
``call_soon_threadsafe``. On the loop, changes are coalesced for
``options.coalesce`` seconds and a ``ClusterReport`` is emitted only when the
shards or the cluster's state changed.

While something fails, the report carries the onset of the failure
(``unreachable_since``): when the first of the failing watches stopped working,
or when the first failed heartbeat of a row was sent. ``cluster_grace`` counts
from there, so one slow heartbeat or one watch error that the next attempt
repairs takes no shard out of DNS, while a lasting failure does after the grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry

from config.model import Cluster, Config
from healthwatch.interfaces import ReportSink
from healthwatch.kube.backoff import Backoff
from healthwatch.kube.client import load_client
from healthwatch.kube.credentials import ClientFactory, Credentials, Refusal
from healthwatch.kube.errors import KubeconfigError, KubeError
from healthwatch.kube.facts import Facts
from healthwatch.kube.metrics import ClusterMetrics, kube_metrics
from healthwatch.kube.options import KubeOptions
from healthwatch.kube.resources import Resource, resources
from healthwatch.kube.state import ClusterState
from healthwatch.kube.translate import make_marker
from healthwatch.kube.watch import EventType, Watcher, describe
from healthwatch.model import ClusterReport, ShardKind
from healthwatch.tasks import cancel

# (synced, reachable, last error, region, zone, unreachable shard kinds, failing since)
Status = tuple[bool, bool, str | None, str | None, str | None, frozenset[ShardKind] | None,
               float | None]

# The shard kinds whose health inputs (addresses, ready endpoints, federation)
# come from each watched resource. A resource that fails makes only these
# kinds count as unreachable: an RBAC gap on Ingresses must not take the
# cluster's Services out of DNS. Nodes give placement only, which stays as
# last seen. Anything else (the heartbeat, unknown names) affects every kind.
FEEDS: dict[str, frozenset[ShardKind]] = {
    "services": frozenset({"service"}),
    "serviceexports": frozenset({"service"}),
    "endpointslices": frozenset({"service", "ingress", "httproute"}),
    "ingresses": frozenset({"ingress"}),
    "gateways": frozenset({"httproute"}),
    "httproutes": frozenset({"httproute"}),
    "nodes": frozenset(),
}


class _LoopSink:
    """Forwards a watcher's findings from its thread onto the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, source: KubeSource) -> None:
        self._loop = loop
        self._source = source

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(fn, *args)

    def listed(self, resource: str, items: list[Facts], resource_version: str) -> None:
        self._post(self._source._on_listed, resource, items)

    def changed(self, resource: str, event: EventType, facts: Facts) -> None:
        self._post(self._source._on_changed, resource, event, facts)

    def contact(self, resource: str) -> None:
        self._post(self._source._on_contact, resource)

    def failed(self, resource: str, error: str, since: float) -> None:
        self._post(self._source._on_failed, resource, error, since)

    def refused(self, refusal: Refusal) -> None:
        self._post(self._source._on_refused, refusal)

    def files_changed(self) -> None:
        self._post(self._source._on_files_changed)


class _Heartbeat:
    """GET /version every ``heartbeat_interval`` so a hung API server is noticed
    quickly. After a failure the next one is sent sooner (``backoff_base``,
    doubling up to the interval), so that one slow answer is repaired well
    within ``cluster_grace``; a failure reports when the first failed request
    of the row was sent. Before each request it checks whether the kubeconfig
    (or a credential file it names) changed, so that a rotated Secret is
    picked up before the old token stops working."""

    def __init__(
        self, api: client.ApiClient, sink: _LoopSink, options: KubeOptions, log: logging.Logger,
        files_changed: Callable[[], bool] | None = None,
    ) -> None:
        self._api = api
        self._sink = sink
        self._files_changed = files_changed
        self._options = options
        self._log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kube-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        version = client.VersionApi(self._api)
        options = self._options
        timeout = (options.connect_timeout, options.heartbeat_timeout)
        interval = options.heartbeat_interval
        retry = Backoff(min(options.backoff_base, interval), interval)
        failing_since: float | None = None  # when the first failed request of a row was sent
        wait = interval
        while not self._stop.wait(wait):
            self._check_files()
            sent = time.time()
            try:
                response = version.get_code(_request_timeout=timeout, _preload_content=False)
                response.read()
                response.release_conn()
            except Exception as e:  # every failure means "not answering"
                if failing_since is None:
                    failing_since = sent
                wait = retry.next()
                if not self._stop.is_set():
                    self._sink.failed("heartbeat", _heartbeat_error(e), failing_since)
            else:
                failing_since, wait = None, interval
                retry.reset()
                self._sink.contact("heartbeat")

    def _check_files(self) -> None:
        if self._files_changed is None:
            return
        try:
            changed = self._files_changed()
        except Exception:  # a stat must never stop the heartbeat
            self._log.exception("credential_files_check_failed")
            return
        if changed:
            self._sink.files_changed()


def _utc_now() -> str:
    """Now, to the second, for status texts (stable between reloads, unlike "N s ago")."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _heartbeat_error(error: BaseException) -> str:
    if isinstance(error, ApiException) and error.status:
        return f"GET /version: {describe(error)}"  # it answers, but refuses
    return f"API not answering: {describe(error)}"


class KubeSource:
    """Implements ``healthwatch.interfaces.Source`` for ``source: kubernetes``."""

    def __init__(
        self,
        cluster: Cluster,
        config: Config,
        options: KubeOptions | None = None,
        *,
        client_factory: ClientFactory = load_client,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.cluster = cluster.name
        self._spec = cluster
        # explicit options (tests) win over the cluster's knobs (its own
        # ``kubernetes`` block over the top-level one)
        self._options = options if options is not None else KubeOptions.from_config(
            config.kube_for(cluster))
        self._client_factory = client_factory
        self._log = logging.getLogger(f"healthwatch.kube[{cluster.name}]")
        self._state = ClusterState(cluster, config, self._log)
        self._config_error: str | None = None
        self._resources: tuple[Resource, ...] = ()
        try:
            marker = make_marker(cluster.federation)
            self._resources = resources(
                marker,
                mode=cluster.federation.mode,
                nodes=cluster.region is None or cluster.zone is None,
                gateway_api=True,
            )
        except KubeError as e:
            self._config_error = str(e)
        self._api: client.ApiClient | None = None
        self._credentials: Credentials | None = None
        self._reload_task: asyncio.Task[None] | None = None
        self._loaded_at: float | None = None  # loop time of the last (re)load attempt
        self._credentials_note: str | None = None  # how the credentials in use were loaded
        # a request was answered 401 or failed its TLS handshake since the
        # last request that succeeded
        self._refused = False
        self._watchers: list[Watcher] = []
        self._heartbeat: _Heartbeat | None = None
        self._synced: set[str] = set()
        self._errors: dict[str, str] = {}  # resource (or "heartbeat") -> current error
        self._client_error: str | None = None
        self._contacted = False
        self._last_contact: float | None = None
        # resource (or "heartbeat") -> onset of its current error (see _failing_since)
        self._onsets: dict[str, float] = {}
        self._emit: ReportSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._status: Status | None = None
        self._report: ClusterReport | None = None
        self._stopped = False
        self._metrics: ClusterMetrics | None = None
        if registry is not None:
            self._metrics = kube_metrics(registry).cluster(cluster.name)
            self._metrics.prepare([r.name for r in self._resources])

    # -- Source ----------------------------------------------------------------

    async def start(self, emit: ReportSink) -> None:
        if self._task is not None:
            return
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._flush()  # first report: not synced yet
        if self._config_error is None:
            self._task = asyncio.create_task(self._connect(), name=f"kube-connect[{self.cluster}]")

    async def stop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        await cancel(task)
        reload, self._reload_task = self._reload_task, None
        await cancel(reload)  # a plugin still running ends on its thread (exec_timeout), unused
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        stoppers: list[Callable[[float], None]] = [w.stop for w in self._watchers]
        if self._heartbeat is not None:
            stoppers.append(self._heartbeat.stop)
        await asyncio.gather(*(asyncio.to_thread(stop, 2.0) for stop in stoppers))
        self._watchers = []
        self._heartbeat = None
        if self._api is not None:
            api, self._api = self._api, None
            await asyncio.to_thread(api.close)
        if self._metrics is not None:
            self._metrics.remove()

    # -- introspection (status pages, tests) --------------------------------------

    @property
    def report(self) -> ClusterReport | None:
        """The last emitted report."""
        return self._report

    @property
    def watchers(self) -> tuple[Watcher, ...]:
        return tuple(self._watchers)

    @property
    def last_contact(self) -> float | None:
        """When the API last answered (a list, an event, a settled watch or a
        heartbeat), live: a report carries it only when something changed
        (``healthwatch.interfaces.ContactSource``)."""
        return self._last_contact

    # -- connecting ----------------------------------------------------------------

    async def _connect(self) -> None:
        backoff = Backoff(self._options.backoff_base, self._options.backoff_cap)
        assert self._loop is not None
        sink = _LoopSink(self._loop, self)
        credentials = Credentials(self._spec.kubeconfig, self._spec.context, self._options,
                                  self._client_factory, sink.refused)
        while True:
            try:
                api = await asyncio.to_thread(credentials.load)
                break
            except KubeconfigError as e:
                delay = backoff.next()
                if self._client_error != str(e):
                    self._log.error("kubeconfig_error error=%r retry_in=%.2fs", str(e), delay)
                self._client_error = str(e)
                self._schedule()
                await asyncio.sleep(delay)
        self._client_error = None
        self._api = api
        self._credentials = credentials
        self._loaded_at = self._loop.time()
        self._credentials_note = f"credentials loaded from {credentials.path} at {_utc_now()}"
        for resource in self._resources:
            watcher = Watcher(
                resource,
                api,
                sink,
                self._options,
                logging.getLogger(f"healthwatch.kube[{self.cluster}].{resource.name}"),
                self._metrics,
            )
            self._watchers.append(watcher)
            watcher.start()
        self._heartbeat = _Heartbeat(api, sink, self._options, self._log, credentials.changed)
        self._heartbeat.start()
        self._log.info("watching resources=%s", ",".join(r.name for r in self._resources))

    # -- credentials that expire or rotate ---------------------------------------------

    def _on_refused(self, refusal: Refusal) -> None:
        """A request was answered 401 (the token expired or was revoked), or
        failed its TLS handshake (the client certificate expired or is no
        longer accepted, the server's CA changed): new credentials may cure
        it, and no file change may announce them (an exec plugin that would
        hand out new ones, a file rewritten unnoticed). Reloaded at once
        unless the last (re)load was less than ``credential_reload_interval``
        ago; the refusals of that interval are dropped (the heartbeat brings
        the next one within its interval). Nothing else changes: the failure
        itself is reported by the request's owner as before."""
        if self._stopped:
            return
        if not self._refused:
            self._refused = True
            self._schedule()  # the status gains the credentials note
        loop = self._loop
        if loop is None or self._loaded_at is None:
            return
        if loop.time() - self._loaded_at >= self._options.credential_reload_interval:
            self._start_reload(refusal)

    def _on_files_changed(self) -> None:
        """The kubeconfig or a credential file it names changed on disk (a
        rotated Secret): reloaded at once, whatever the interval, since new
        credentials are there; each change is loaded once."""
        if not self._stopped:
            self._start_reload("file_changed")

    def _start_reload(self, reason: str) -> None:
        if self._reload_task is not None or self._credentials is None or self._loop is None:
            return  # one at a time; a change seen meanwhile is seen again next heartbeat
        self._loaded_at = self._loop.time()
        self._reload_task = asyncio.create_task(
            self._reload(self._credentials, reason), name=f"kube-credentials[{self.cluster}]")

    async def _reload(self, credentials: Credentials, reason: str) -> None:
        try:
            try:
                done = await asyncio.to_thread(
                    credentials.reload, only_if_changed=reason == "file_changed")
            except KubeconfigError as e:
                self._log.warning("credentials_reload_failed cluster=%s reason=%s error=%r",
                                  self.cluster, reason, str(e))
                self._count_reload(reason)
                self._credentials_note = (
                    f"reloading credentials from {credentials.path} failed at "
                    f"{_utc_now()}: {e.problem}")
                self._schedule()
                return
            except Exception:  # a bug must not end the reloads silently
                self._log.exception("credentials_reload_crashed cluster=%s reason=%s",
                                    self.cluster, reason)
                return
            if not done:
                return
            self._log.info("credentials_reloaded cluster=%s reason=%s", self.cluster, reason)
            self._count_reload(reason)
            for watcher in self._watchers:  # retry now, not after up to backoff_cap
                if watcher.name in self._errors:
                    watcher.wake()
            self._credentials_note = (
                f"credentials reloaded from {credentials.path} at {_utc_now()}")
            self._schedule()
        finally:
            self._reload_task = None

    def _count_reload(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.credentials_reloaded(reason)

    # -- events from the threads (on the loop) ---------------------------------------

    def _touch(self, resource: str) -> None:
        self._contacted = True
        self._last_contact = time.time()
        self._onsets.pop(resource, None)
        if self._metrics is not None:
            self._metrics.contact(self._last_contact)
        if self._errors.pop(resource, None) is not None:
            self._log.info("recovered resource=%s", resource)

    def _on_listed(self, resource: str, items: list[Facts]) -> None:
        if self._stopped:
            return
        self._refused = False
        self._state.replace_all(resource, items)
        self._synced.add(resource)
        self._touch(resource)
        self._schedule()

    def _on_changed(self, resource: str, event: EventType, facts: Facts) -> None:
        if self._stopped:
            return
        if event == "DELETED":
            self._state.delete(resource, (facts.namespace, facts.name))
        else:
            self._state.upsert(facts)
        self._touch(resource)
        self._schedule()

    def _on_contact(self, resource: str) -> None:
        if self._stopped:
            return
        self._refused = False  # a request made now (heartbeat, new watch) succeeded
        self._touch(resource)
        self._schedule()

    def _on_failed(self, resource: str, error: str, since: float) -> None:
        if self._stopped:
            return
        self._errors[resource] = error
        onset = self._onsets.get(resource)
        self._onsets[resource] = since if onset is None else min(onset, since)
        self._schedule()

    # -- reports ----------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._flush_handle is None and self._loop is not None and not self._stopped:
            self._flush_handle = self._loop.call_later(self._options.coalesce, self._flush)

    def _current_status(self) -> Status:
        problem = self._config_error or self._client_error
        reachable = problem is None and self._contacted and not self._errors
        synced = problem is None and self._listed().issuperset(r.name for r in self._resources)
        if problem is None and self._errors:
            # A stable choice, so that several failing watches do not churn reports.
            order = ["heartbeat", *(r.name for r in self._resources)]
            first = min(self._errors, key=lambda k: order.index(k) if k in order else len(order))
            problem = self._errors[first]  # already "list services: HTTP 500 ..."
            if self._refused and self._credentials_note is not None:
                problem = f"{problem} ({self._credentials_note})"
        if problem is None:  # reachable, but an optional API is not granted: say so
            problem = next((w.note for w in self._watchers if w.note is not None), None)
        where = self._state.context.placement
        since = None if reachable else self._failing_since()
        return (synced, reachable, problem, where.region, where.zone, self._failing_kinds(), since)

    def _listed(self) -> set[str]:
        """The resources that count as listed for ``synced``: those listed once,
        and those refused for good (403/404) that feed no Service shard
        (Ingresses, Nodes). A cluster whose ClusterRole lacks Ingresses has
        listed all it can: waiting for more would keep a restart's
        last-known-good zone, stale, forever."""
        listed = set(self._synced)
        for watcher in self._watchers:
            if watcher.denied and "service" not in FEEDS.get(watcher.name, {"service"}):
                listed.add(watcher.name)
        return listed

    def _failing_kinds(self) -> frozenset[ShardKind] | None:
        """The shard kinds that the current errors cut off (None: every kind)."""
        if self._config_error or self._client_error or not self._contacted:
            return None
        kinds: set[ShardKind] = set()
        for resource in self._errors:
            feeds = FEEDS.get(resource)
            if feeds is None:
                return None
            kinds |= feeds
        return frozenset(kinds)

    def _failing_since(self) -> float | None:
        """The onset of what fails now: the earliest onset of the failing
        resources (a watch that was open was alive until it failed; a heartbeat
        not sent yet had not failed). None when the API was never reached, or
        nothing reported an onset: the grace then runs from ``last_contact``."""
        if not self._contacted or self._config_error or self._client_error:
            return None
        onsets = [self._onsets[r] for r in self._errors if r in self._onsets]
        return min(onsets) if onsets else None

    def _flush(self) -> None:
        self._flush_handle = None
        if self._emit is None:
            return
        changed = self._state.refresh()
        status = self._current_status()
        if not changed and status == self._status:
            return
        self._status = status
        synced, reachable, last_error, region, zone, kinds, since = status
        self._report = ClusterReport(
            cluster=self.cluster,
            shards=self._state.shards,
            synced=synced,
            reachable=reachable,
            last_contact=self._last_contact,
            last_error=last_error,
            region=region,
            zone=zone,
            unreachable_kinds=None if reachable else kinds,
            unreachable_since=since,
        )
        self._emit(self._report)
