"""Preflight of the member clusters (``fedns check --clusters``): will fedns work there?

Before a rollout an operator wants to know, per ``source: kubernetes``
cluster, what the watches would meet: whether the kubeconfig context loads
(exec plugins included), the API answers (and its version), the credentials
are accepted, RBAC lets fedns list every resource it watches, the Nodes give
the region/zone the config leaves out, and how many federated objects fedns
would find. The answer is a list of ``Step``s per cluster, each ok, warn or
fail, with a one-line detail; ``preflight_format`` renders them.

It goes through what the watches use, so the check and the real thing cannot
disagree: ``load_client`` for the context, ``resources()`` for what is listed
(the same arguments as ``KubeSource``), the resources' own digests for the
objects, and ``ClusterState`` for which of them become shards, so the
federation rules (annotation, label selector, ServiceExport, LoadBalancer
only, hosts inside the zone, routes accepted by a Gateway) live in one place.
"Federated" in the output counts the shards fedns would publish.

Bounds: one ``list`` call (of ``list_limit`` objects) per resource proves the
RBAC; the resources that decide which shards exist are paged with
``continue`` to count them, at most ``max_pages`` pages each, after which
counts are "at least". Every call carries its cluster's connect and read
timeouts (its ``kubernetes`` block over the top-level one, as its watches
would), each capped by ``timeout`` when given (exec plugins too).
Clusters are checked in parallel, at most ``parallel`` at a time, each on a
thread (the kubernetes client blocks). A preflight never watches.

Error texts come from ``watch.describe`` (no headers, no tokens), like the
watches' status; a kubeconfig error is the loader's one-line reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from config.model import Cluster, Config, Kubernetes
from healthwatch.kube.client import kubeconfig_path, load_client
from healthwatch.kube.errors import KubeconfigError, KubeError, ResponseError
from healthwatch.kube.facts import REGION_LABELS, ZONE_LABELS, Facts, NodeFacts
from healthwatch.kube.options import KubeOptions
from healthwatch.kube.resources import ListCall, Resource, resources
from healthwatch.kube.state import ClusterState
from healthwatch.kube.translate import make_marker, placement
from healthwatch.kube.watch import describe, list_page

log = logging.getLogger("healthwatch.kube.preflight")

Verdict = Literal["ok", "warn", "fail"]
_RANK: dict[Verdict, int] = {"ok": 0, "warn": 1, "fail": 2}

MAX_PAGES = 10  # pages read per counted resource before counts become "at least"
PARALLEL = 8  # clusters checked at once

# The shards counted on a resource's line, and the resources whose objects
# decide whether such a shard exists: a ServiceExport makes a Service
# federated (serviceexport mode), a Gateway gives an HTTPRoute its addresses.
# These are paged to count; the others (EndpointSlices, Nodes) are read one
# page only, since they change how healthy a shard is, not whether it exists.
_COUNTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "services": ("service", ("services", "serviceexports")),
    "ingresses": ("ingress", ("ingresses",)),
    "httproutes": ("httproute", ("httproutes", "gateways")),
}
_PAGED = frozenset(r for _, deciders in _COUNTED.values() for r in deciders)


class PreflightError(KubeError):
    """The preflight was asked for something it cannot do (an unknown
    cluster, a bad timeout); nothing was checked."""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing checked of one cluster. ``listed``/``federated`` are set on a
    list that worked: objects seen, shards fedns would publish from them
    (None: not a counted resource, or unknown); ``at_least``: the list was
    not read to its end, so both are lower bounds."""

    name: str  # "kubeconfig", "connect", "auth", "list <resource>", "nodes"
    verdict: Verdict
    detail: str  # one line, secret-free
    listed: int | None = None
    federated: int | None = None
    at_least: bool = False


@dataclass(frozen=True, slots=True)
class ClusterCheck:
    cluster: str
    context: str | None  # None: the kubeconfig's current context
    kubeconfig: str  # the file used
    steps: tuple[Step, ...]
    version: str | None = None  # the API server's gitVersion, when it said

    @property
    def verdict(self) -> Verdict:
        return worst(s.verdict for s in self.steps)


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The most severe verdict (``ok`` for none)."""
    return max(verdicts, key=_RANK.__getitem__, default="ok")


# -- the API -------------------------------------------------------------------------


async def preflight(config: Config, *, clusters: Sequence[str] | None = None,
                    call_timeout: float | None = None, max_pages: int = MAX_PAGES,
                    parallel: int = PARALLEL) -> list[ClusterCheck]:
    """Check ``clusters`` (default: every ``source: kubernetes`` cluster of
    ``config``, in its order), at most ``parallel`` at once; no wait of any
    call lasts longer than ``call_timeout`` when given. Raises PreflightError
    for bad arguments; a cluster that fails in any way, even a bug here, is a
    ``fail`` step of its own check."""
    targets = select(config, clusters)
    _check_timeout(call_timeout)  # also when there is no cluster to check
    options = {c.name: preflight_options(config.kube_for(c), call_timeout) for c in targets}
    if parallel < 1 or max_pages < 1:
        raise PreflightError("parallel and max_pages must be at least 1")
    gate = asyncio.Semaphore(parallel)

    async def one(cluster: Cluster) -> ClusterCheck:
        async with gate:
            return await asyncio.to_thread(check_cluster, cluster, config,
                                           options[cluster.name], max_pages)

    return list(await asyncio.gather(*(one(c) for c in targets)))


def select(config: Config, names: Sequence[str] | None) -> tuple[Cluster, ...]:
    """The ``source: kubernetes`` clusters called ``names`` (in that order,
    once each), or all of them; PreflightError names what is wrong."""
    kube = [c for c in config.clusters if c.source == "kubernetes"]
    if names is None:
        return tuple(kube)
    by_name = {c.name: c for c in config.clusters}
    out: list[Cluster] = []
    for name in dict.fromkeys(names):
        cluster = by_name.get(name)
        if cluster is None:
            known = ", ".join(c.name for c in kube) or "none"
            raise PreflightError(f"unknown cluster {name!r} (kubernetes clusters: {known})")
        if cluster.source != "kubernetes":
            raise PreflightError(f"cluster {name!r} is source: {cluster.source}: it has no "
                                 "Kubernetes API to check")
        out.append(cluster)
    return tuple(out)


def preflight_options(knobs: Kubernetes, timeout: float | None) -> KubeOptions:
    """The watches' options from a cluster's knobs (``Config.kube_for``), with
    every wait (connect, read, exec plugin) capped by ``timeout`` when given;
    PreflightError for a timeout that is not a positive number."""
    options = KubeOptions.from_config(knobs)
    _check_timeout(timeout)
    if timeout is None:
        return options
    return replace(options, connect_timeout=min(options.connect_timeout, timeout),
                   request_timeout=min(options.request_timeout, timeout),
                   exec_timeout=min(options.exec_timeout, timeout))


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (timeout > 0 and math.isfinite(timeout)):
        raise PreflightError(f"timeout must be a positive number of seconds, got {timeout!r}")


def check_cluster(cluster: Cluster, config: Config, options: KubeOptions,
                  max_pages: int = MAX_PAGES) -> ClusterCheck:
    """Check one cluster. Blocking (file reads, exec plugins, HTTP): run it
    off the event loop. Never raises: a bug is reported as a failed step."""
    run = _Run(cluster, config, options, max_pages)
    try:
        run.run()
    except Exception as e:  # a bug must fail this cluster's check, not the command
        log.exception("preflight_crashed cluster=%s", cluster.name)
        run.add("preflight", "fail", f"crashed: {describe(e)}")
    return ClusterCheck(cluster=cluster.name, context=cluster.context,
                        kubeconfig=kubeconfig_path(cluster.kubeconfig),
                        steps=tuple(run.steps), version=run.version)


# -- one cluster -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Listing:
    """What a list that worked gave."""

    facts: tuple[Facts, ...]
    seen: int  # objects in the pages read, malformed ones included
    total: int | None  # objects there are, when known
    complete: bool  # read to its end
    malformed: int = 0
    pages: int = 1


_NONE_HERE = _Listing((), 0, 0, True, pages=0)  # an optional resource not served or granted


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A resource's list: what it gave (None: it failed), and the step that
    says so when it is not the usual count (a failure, a refusal)."""

    listing: _Listing | None
    step: Step | None = None


class _Run:
    """The steps of one cluster's check, in order; stops at the first step
    that makes the rest meaningless (no client, no answer, refused credentials)."""

    def __init__(self, cluster: Cluster, config: Config, options: KubeOptions,
                 max_pages: int) -> None:
        self.cluster = cluster
        self.config = config
        self.options = options
        self.max_pages = max_pages
        self.steps: list[Step] = []
        self.version: str | None = None

    def add(self, name: str, verdict: Verdict, detail: str, **counts: Any) -> None:
        self.steps.append(Step(name, verdict, " ".join(detail.split()), **counts))

    def run(self) -> None:
        watched = self._resources()
        if watched is None:
            return
        api = self._load()
        if api is None:
            return
        try:
            if self._reach(api):
                self._list_all(api, watched)
        finally:
            api.rest_client.pool_manager.clear()
            api.close()

    def _resources(self) -> tuple[Resource, ...] | None:
        """What the watches would list (as ``KubeSource`` asks for it)."""
        cluster = self.cluster
        try:
            return resources(make_marker(cluster.federation), mode=cluster.federation.mode,
                             nodes=cluster.region is None or cluster.zone is None,
                             gateway_api=True)
        except KubeError as e:
            self.add("config", "fail", str(e))
            return None

    def _load(self) -> client.ApiClient | None:
        cluster = self.cluster
        try:
            api = load_client(cluster.kubeconfig, cluster.context, self.options)
        except KubeconfigError as e:
            self.add("kubeconfig", "fail", str(e))
            return None
        which = f"context {cluster.context}" if cluster.context else "the current context"
        self.add("kubeconfig", "ok", f"{which} of {kubeconfig_path(cluster.kubeconfig)}")
        return api

    def _reach(self, api: client.ApiClient) -> bool:
        """GET /version: does the API answer, and accept the credentials?
        False when nothing else can be learnt."""
        host = _safe_url(str(api.configuration.host))
        try:
            response = client.VersionApi(api).get_code(
                _request_timeout=self.options.call_timeout, _preload_content=False)
            try:
                data = response.data
            finally:
                response.release_conn()
        except ApiException as e:
            if not e.status:  # TLS and other failures before an answer
                self.add("connect", "fail", _failure(e, self.options))
                return False
            if e.status == 401:
                self.add("connect", "ok", f"{host} answers")
                self.add("auth", "fail", describe(e))
                return False
            self.add("connect", "warn", f"{host} answers, but GET /version: {describe(e)}")
            return True
        except (urllib3.exceptions.HTTPError, OSError) as e:
            self.add("connect", "fail", _failure(e, self.options))
            return False
        self.version = _git_version(data)
        self.add("connect", "ok", f"{host}: Kubernetes {self.version or 'version unknown'}")
        self.add("auth", "ok", "credentials accepted" if _has_credentials(api) else
                 "no credentials in the context: requests are anonymous")
        return True

    def _list_all(self, api: client.ApiClient, watched: Sequence[Resource]) -> None:
        """One step per resource, then the placement from the Nodes."""
        outcomes = {r.name: self._list(api, r) for r in watched}
        listings = {n: o.listing for n, o in outcomes.items() if o.listing is not None}
        shards = _shards(self.cluster, self.config, listings)
        for name, outcome in outcomes.items():
            if outcome.step is not None:
                self.steps.append(outcome.step)
            elif outcome.listing is not None:
                self.steps.append(_list_step(name, outcome.listing, listings, set(outcomes),
                                             shards))
        nodes = listings.get("nodes")
        if nodes is not None:
            self.steps.append(_placement_step(self.cluster, self.config, nodes))

    def _list(self, api: client.ApiClient, resource: Resource) -> _Outcome:
        name = f"list {resource.name}"
        pages = self.max_pages if resource.name in _PAGED else 1
        try:
            return _Outcome(_read(resource, resource.call(api), self.options, pages))
        except ApiException as e:
            return _refused(name, resource, e, self.options)
        except (ResponseError, urllib3.exceptions.HTTPError, OSError) as e:
            return _Outcome(None, Step(name, "fail", _failure(e, self.options)))


def _read(resource: Resource, call: ListCall, options: KubeOptions, pages: int) -> _Listing:
    """Up to ``pages`` pages of ``resource``, digested; malformed objects are
    counted and skipped, as the watches skip them."""
    facts: list[Facts] = []
    seen = malformed = 0
    token: str | None = None
    remaining: int | None = None
    for page in range(1, pages + 1):
        response = call(limit=options.list_limit, _continue=token,
                        _request_timeout=options.call_timeout, _preload_content=False)
        try:
            data = response.data
        finally:
            response.release_conn()
        items, token, remaining = _page(data, response.headers.get("Content-Type"))
        seen += len(items)
        for raw in items:
            digested = _digest(resource, raw)
            if digested is None:
                malformed += 1
            else:
                facts.append(digested)
        if token is None:
            return _Listing(tuple(facts), seen, seen, True, malformed, page)
    total = seen + remaining if remaining is not None else None
    return _Listing(tuple(facts), seen, total, False, malformed, pages)


def _digest(resource: Resource, raw: Any) -> Facts | None:
    try:
        return resource.digest(raw)
    except Exception:  # ObjectError, or a shape the digest did not foresee: skipped
        return None


def _page(data: bytes, content_type: str | None) -> tuple[list[Any], str | None, int | None]:
    """(items, continue token, remainingItemCount) of a list response; a body
    the watches would refuse raises ResponseError saying what it is (every
    page must carry a resourceVersion, as the API server's do)."""
    page = list_page(data, content_type)
    if page.resource_version is None:
        raise ResponseError(problem="no metadata.resourceVersion in the response")
    return page.items, page.token, page.remaining


def _refused(name: str, resource: Resource, error: ApiException,
             options: KubeOptions) -> _Outcome:
    """A list answered with an HTTP error. An optional resource (Gateway API)
    not served is normal and not granted a warning; either way the watches
    take it as "none here", so it counts as an empty list."""
    group = resource.group or "core"
    need = f"fedns needs get, list and watch on {resource.name} (API group {group})"
    if error.status == 404 and resource.optional:
        return _Outcome(_NONE_HERE, Step(name, "ok", "not installed (404)"))
    if error.status == 404:
        return _Outcome(None, Step(name, "fail", f"not installed (404): {_message(error)}; "
                                                 f"fedns needs the {resource.name} API "
                                                 f"(group {group}) served here"))
    if error.status == 403 and resource.optional:
        return _Outcome(_NONE_HERE, Step(name, "warn", f"forbidden (403): {_message(error)}; "
                                                       f"none are federated here until {need}"))
    if error.status == 403:
        return _Outcome(None, Step(name, "fail", f"forbidden (403): {_message(error)}; {need}"))
    return _Outcome(None, Step(name, "fail", _failure(error, options)))


def _message(error: ApiException) -> str:
    """The server's message of an HTTP error, from ``describe`` (secret-free)."""
    text = describe(error)
    head = f"HTTP {error.status} {error.reason}"
    return text[len(head):].removeprefix(": ") if text.startswith(head) else text


def _failure(error: BaseException, options: KubeOptions) -> str:
    """A call that got no answer: a timeout says which limit ran out."""
    cause = error
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        cause = error.reason
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        return describe(cause)  # refused, unreachable, no such host: not a timeout
    if isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        return f"timed out after {options.connect_timeout:g}s"
    if isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        return f"no answer within {options.request_timeout:g}s"
    return describe(error)


def _git_version(data: bytes) -> str | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    version = body.get("gitVersion") if isinstance(body, dict) else None
    return version if isinstance(version, str) and version else None


def _has_credentials(api: client.ApiClient) -> bool:
    """Whether the loaded context sends a token or a client certificate."""
    conf = api.configuration
    return bool(conf.api_key.get("authorization") or conf.cert_file)


def _safe_url(url: str) -> str:
    """``url`` without user information (never printed)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# -- counting and placement ----------------------------------------------------------


def _shards(cluster: Cluster, config: Config,
            listings: dict[str, _Listing]) -> Counter[str]:
    """Shards per kind that fedns would publish from what was listed: the
    objects go through ``ClusterState``, as the watches' do."""
    state = ClusterState(cluster, config, logging.getLogger(f"{log.name}[{cluster.name}]"))
    for name, listing in listings.items():
        state.replace_all(name, listing.facts)
    state.refresh()
    return Counter(shard.kind for shard in state.shards)


def _list_step(name: str, listing: _Listing, listings: dict[str, _Listing],
               watched: set[str], shards: Counter[str]) -> Step:
    """``list services: ok (12 objects, 3 federated)`` and the like."""
    listed = listing.total if listing.total is not None else listing.seen
    at_least = listing.total is None
    parts = [f"{'at least ' if at_least else ''}{_objects(listed)}"]
    federated: int | None = None
    counted = _COUNTED.get(name)
    if counted is not None:
        kind, deciders = counted
        failed = [d for d in deciders if d in watched and d not in listings]
        if failed:
            parts.append(f"federated unknown (list {', '.join(failed)} failed)")
        else:
            federated = shards[kind]
            at_least = at_least or any(not listings[d].complete for d in deciders
                                       if d in listings)
            parts.append(f"{'at least ' if at_least else ''}{federated} federated")
    verdict: Verdict = "ok"
    if listing.malformed:
        # the watches skip malformed objects, and refuse a list of nothing else
        verdict = "fail" if listing.malformed == listing.seen else "warn"
        parts.append(f"{listing.malformed} malformed (skipped)")
    detail = ", ".join(parts)
    if not listing.complete and counted is not None:
        detail += f" (counting stopped after {listing.pages} pages)"
    return Step(f"list {name}", verdict, detail, listed=listed, federated=federated,
                at_least=at_least)


def _objects(n: int, what: str = "object") -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


def _placement_step(cluster: Cluster, config: Config, nodes: _Listing) -> Step:
    """Where the Nodes put the cluster, for what the config leaves out
    (``translate.placement``, as the watches place it)."""
    given = placement(cluster, config, ())
    where = placement(cluster, config, (f for f in nodes.facts if isinstance(f, NodeFacts)))
    count = _objects(nodes.seen, "node") if nodes.complete else (
        f"the first {_objects(nodes.seen, 'node')}")
    labels = {"region": REGION_LABELS[0], "zone": ZONE_LABELS[0]}
    missing = [k for k in labels if getattr(where, k) is None]
    if missing:
        return Step("nodes", "warn",
                    f"no Node carries {' or '.join(labels[k] for k in missing)} ({count}); "
                    f"give the cluster's {' and '.join(missing)} in the config, or its "
                    f"shards are in no {' and no '.join(missing)}")
    region, zone = where.region, where.zone
    assert region is not None and zone is not None  # none missing
    learnt = [k for k in labels if getattr(given, k) is None]
    problems = _unconfigured(config, region, zone, learnt)
    if problems:
        return Step("nodes", "warn", "; ".join(problems))
    value = {"region": region, "zone": zone}
    found = (f"{'/'.join(learnt)} label{'s' if len(learnt) > 1 else ''} found: "
             f"{'/'.join(value[k] for k in learnt)} ({count})")
    rest = [f"{k} {value[k]} from the config" for k in labels if k not in learnt]
    return Step("nodes", "ok", "; ".join([found, *rest]))


def _unconfigured(config: Config, region: str, zone: str, learnt: Sequence[str]) -> list[str]:
    """What the Node labels say that the config does not know: a region not
    configured, a zone its region does not list (then no AZ name answers
    with this cluster's shards)."""
    problems: list[str] = []
    known = config.region(region)
    if "region" in learnt and known is None:
        names = ", ".join(r.name for r in config.regions) or "none"
        problems.append(f"region {region} (from Node labels) is not a region of the config "
                        f"(regions: {names})")
    if "zone" in learnt and known is not None and known.zones and zone not in known.zones:
        problems.append(f"zone {zone} (from Node labels) is not one of region {region}'s "
                        f"zones in the config ({', '.join(known.zones)})")
    return problems
