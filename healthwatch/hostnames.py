"""Load-balancer hostnames resolved in the background (SPEC §2).

A shard whose load balancer gives a hostname (AWS ELB style) cannot merge
with IP shards in an A/AAAA answer until the hostname is resolved. Two parts:

- ``HostnameResolver`` owns one task per distinct hostname that someone
  tracks. Each task resolves A and AAAA with dnspython's asyncio resolver and
  re-resolves when the records' TTL runs out (clamped to
  ``[min_ttl, max_ttl]``). A definitive empty answer (NXDOMAIN, NODATA)
  clears the addresses at once; a failure (timeout, SERVFAIL) keeps the last
  good addresses for ``keep_stale`` seconds past their TTL while retrying with
  backoff, then clears them.
- ``ResolvingSource`` wraps any ``Source``: every report it forwards has the
  resolved hostnames of each shard replaced by their addresses (added to
  ``addresses``); unresolved hostnames stay in ``hostnames``, so the planner
  answers a CNAME when a name has nothing else. When a resolution changes,
  the last report is re-emitted, rewritten.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from healthwatch.errors import HealthwatchError
from healthwatch.interfaces import ContactSource, ReportSink, Source
from healthwatch.model import ClusterReport, ShardSpec
from healthwatch.tasks import cancel_all

Listener = Callable[[], None]


@dataclass(frozen=True, slots=True)
class ResolverOptions:
    nameservers: tuple[str, ...] | None = None  # None: the system's /etc/resolv.conf
    port: int = 53
    timeout: float = 2.0  # one query to one nameserver
    lifetime: float = 4.0  # one lookup (one record type), all retries included
    min_ttl: float = 5.0  # re-resolve no sooner than this ...
    max_ttl: float = 300.0  # ... and no later than this
    keep_stale: float = 60.0  # keep addresses this long past their TTL while lookups fail
    backoff_base: float = 1.0  # first retry delay after a failed lookup
    backoff_cap: float = 30.0
    settle: float = 0.5  # hold a report this long for new hostnames' first lookup

    def clamp(self, ttl: float) -> float:
        return min(self.max_ttl, max(self.min_ttl, ttl))


@dataclass(frozen=True, slots=True)
class Resolution:
    """What is known about one hostname."""

    hostname: str
    addresses: tuple[str, ...] = ()  # empty: unresolved (not yet, NXDOMAIN, or expired)
    expires: float = 0.0  # loop time after which ``addresses`` must not be used
    error: str | None = None  # the last lookup's problem, if it failed
    done: bool = False  # at least one lookup finished (successfully or not)


class _Backoff:
    def __init__(self, base: float, cap: float) -> None:
        self._base, self._cap, self._failures = base, cap, 0

    def next(self) -> float:
        ceiling = min(self._cap, self._base * 2.0 ** min(self._failures, 32))
        self._failures += 1
        return ceiling * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._failures = 0


class LookupFailed(HealthwatchError):
    """A lookup gave no definitive answer (timeout, SERVFAIL, no nameserver)."""


def _norm(hostname: str) -> str:
    return hostname.lower().rstrip(".")


class HostnameResolver:
    """Resolves every tracked hostname in the background; owner calls start()/stop()."""

    def __init__(self, options: ResolverOptions | None = None, *, name: str = "") -> None:
        self.options = options or ResolverOptions()
        suffix = f"[{name}]" if name else ""
        self._log = logging.getLogger(f"healthwatch.hostnames{suffix}")
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._setup_error: str | None = None
        self._results: dict[str, Resolution] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wanted: dict[Hashable, frozenset[str]] = {}
        self._listeners: dict[Hashable, Listener] = {}
        self._running = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._resolver = self._make_resolver()
        for host in self._all_wanted():
            self._spawn(host)

    async def stop(self) -> None:
        self._running = False
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_all(tasks)

    def _make_resolver(self) -> dns.asyncresolver.Resolver | None:
        o = self.options
        try:
            if o.nameservers is None:
                r = dns.asyncresolver.Resolver()
            else:
                r = dns.asyncresolver.Resolver(configure=False)
                r.nameservers = list(o.nameservers)
        except (dns.exception.DNSException, OSError, ValueError) as e:
            self._setup_error = f"no usable resolver configuration: {e}"
            self._log.error("resolver_unavailable error=%r", self._setup_error)
            return None
        r.port = o.port
        r.timeout = o.timeout
        r.lifetime = o.lifetime
        r.cache = None  # we schedule re-resolution ourselves
        return r

    # -- tracking ----------------------------------------------------------------

    def track(self, owner: Hashable, hostnames: Iterable[str], listener: Listener) -> None:
        """``owner`` wants ``hostnames`` resolved; ``listener()`` runs on the loop
        whenever any hostname's resolution changes. Replaces the owner's last set."""
        wanted = frozenset(_norm(h) for h in hostnames if h.strip(". "))
        before = self._all_wanted()
        self._wanted[owner] = wanted
        self._listeners[owner] = listener
        self._reconcile(before)

    def tracked(self, owner: Hashable) -> frozenset[str]:
        """The hostnames ``owner`` wants resolved (normalised)."""
        return self._wanted.get(owner, frozenset())

    def untrack(self, owner: Hashable) -> None:
        before = self._all_wanted()
        self._wanted.pop(owner, None)
        self._listeners.pop(owner, None)
        self._reconcile(before)

    def _all_wanted(self) -> set[str]:
        out: set[str] = set()
        for hosts in self._wanted.values():
            out |= hosts
        return out

    def _reconcile(self, before: set[str]) -> None:
        now_wanted = self._all_wanted()
        for host in before - now_wanted:
            task = self._tasks.pop(host, None)
            if task is not None:
                task.cancel()
            self._results.pop(host, None)
        for host in now_wanted - before:
            self._results.setdefault(host, Resolution(host))
            if self._running:
                self._spawn(host)

    def _spawn(self, host: str) -> None:
        if host not in self._tasks:
            self._tasks[host] = asyncio.create_task(
                self._loop(host), name=f"healthwatch.hostnames[{host}]")

    # -- results -----------------------------------------------------------------

    def lookup(self, hostname: str) -> Resolution:
        """The current resolution (addresses past their expiry are not returned)."""
        host = _norm(hostname)
        res = self._results.get(host)
        if res is None:
            return Resolution(host)
        if res.addresses and asyncio.get_running_loop().time() >= res.expires:
            return replace(res, addresses=())
        return res

    def results(self) -> tuple[Resolution, ...]:
        """Every tracked hostname's resolution, for status pages."""
        return tuple(self.lookup(h) for h in sorted(self._results))

    def _set(self, host: str, res: Resolution) -> None:
        if host not in self._tasks:  # untracked or stopped meanwhile
            return
        old = self._results.get(host)
        self._results[host] = res
        if old is None or old.addresses != res.addresses or old.done != res.done:
            if old is None or old.addresses != res.addresses:
                self._log.info("resolved hostname=%s addresses=%s", host,
                               ",".join(res.addresses) or "-")
            for owner, listener in list(self._listeners.items()):
                if host in self._wanted.get(owner, ()):
                    try:
                        listener()
                    except Exception:
                        self._log.exception("listener_failed hostname=%s", host)

    # -- the per-hostname loop -----------------------------------------------------

    async def _loop(self, host: str) -> None:
        loop = asyncio.get_running_loop()
        backoff = _Backoff(self.options.backoff_base, self.options.backoff_cap)
        # (untracked: its task left ``_tasks``; a lost cancellation ends it here)
        while self._tasks.get(host) is asyncio.current_task():
            prev = self._results.get(host, Resolution(host))
            try:
                addresses, ttl = await self._resolve(host)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # LookupFailed, or a bug: keep going either way
                error = str(e) or type(e).__name__
                now = loop.time()
                keep = prev.addresses if now < prev.expires else ()
                if prev.error != error:
                    self._log.warning("lookup_failed hostname=%s error=%r kept=%d",
                                      host, error, len(keep))
                self._set(host, replace(prev, addresses=keep, error=error, done=True))
                delay = backoff.next()
                if keep:
                    delay = min(delay, max(0.0, prev.expires - now))
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            refresh = self.options.clamp(ttl)
            expires = loop.time() + refresh + self.options.keep_stale if addresses else 0.0
            self._set(host, Resolution(host, addresses, expires, None, True))
            await asyncio.sleep(refresh)

    async def _resolve(self, host: str) -> tuple[tuple[str, ...], float]:
        """(addresses, ttl); empty addresses for NXDOMAIN/NODATA (with negative TTL)."""
        if self._resolver is None:
            raise LookupFailed(self._setup_error or "resolver not started")
        answers = await asyncio.gather(self._query(host, "A"), self._query(host, "AAAA"),
                                       return_exceptions=True)
        addrs: list[str] = []
        ttls: list[float] = []
        failures: list[str] = []
        for got in answers:
            if isinstance(got, LookupFailed):
                failures.append(str(got))
            elif isinstance(got, BaseException):
                raise got
            else:
                addrs.extend(got[0])
                ttls.append(got[1])
        if failures and not addrs:  # a partial answer is better than none
            raise LookupFailed("; ".join(dict.fromkeys(failures)))
        return tuple(dict.fromkeys(addrs)), min(ttls) if ttls else self.options.min_ttl

    async def _query(self, host: str, rdtype: str) -> tuple[list[str], float]:
        assert self._resolver is not None
        try:
            answer = await self._resolver.resolve(host + ".", rdtype, raise_on_no_answer=False,
                                                  search=False)
        except dns.resolver.NXDOMAIN:
            return [], self.options.min_ttl
        except dns.resolver.LifetimeTimeout:
            raise LookupFailed(f"{rdtype} lookup timed out") from None
        except dns.resolver.NoNameservers as e:
            raise LookupFailed(f"{rdtype} lookup failed: no nameserver answered ({e})") from None
        except dns.exception.DNSException as e:
            raise LookupFailed(f"{rdtype} lookup failed: {e}") from None
        ttl = float(answer.chaining_result.minimum_ttl)
        if answer.rrset is None:
            return [], ttl
        out = []
        for rd in answer.rrset:
            text = rd.to_text()
            with contextlib.suppress(ValueError):
                out.append(str(ipaddress.ip_address(text)))
        return out, ttl


class ResolvingSource:
    """A ``Source`` that forwards ``inner``'s reports with LB hostnames resolved.

    Uses ``resolver`` when given (shared; its owner starts and stops it), else
    owns one built from ``options``.
    """

    def __init__(self, inner: Source, resolver: HostnameResolver | None = None,
                 options: ResolverOptions | None = None) -> None:
        self.inner = inner
        self.cluster = inner.cluster
        self._owns = resolver is None
        self.resolver = resolver or HostnameResolver(options, name=inner.cluster)
        self._emit: ReportSink | None = None
        self._last: ClusterReport | None = None
        self._sent: ClusterReport | None = None
        self._held: asyncio.TimerHandle | None = None
        self._stopped = False

    @property
    def last_contact(self) -> float | None:
        """The wrapped source's live contact time (``ContactSource``), if it has one."""
        return self.inner.last_contact if isinstance(self.inner, ContactSource) else None

    async def start(self, emit: ReportSink) -> None:
        self._emit = emit
        self._stopped = False
        if self._owns:
            await self.resolver.start()
        await self.inner.start(self._on_report)

    async def stop(self) -> None:
        self._stopped = True
        if self._held is not None:
            self._held.cancel()
            self._held = None
        try:
            await self.inner.stop()
        finally:
            self.resolver.untrack(self)
            if self._owns:
                await self.resolver.stop()

    # -- reports -----------------------------------------------------------------

    def _on_report(self, report: ClusterReport) -> None:
        if self._stopped:
            return
        self._last = report
        hosts = {h for s in report.shards for h in s.hostnames}
        self.resolver.track(self, hosts, self._on_resolved)
        if self._pending(report) and self.resolver.options.settle > 0:
            if self._held is None:  # give new hostnames a moment to resolve first
                self._held = asyncio.get_running_loop().call_later(
                    self.resolver.options.settle, self._release)
            return
        if self._held is not None:
            self._held.cancel()
            self._held = None
        self._forward()

    def status(self) -> list[dict[str, Any]]:
        """This cluster's LB hostnames as ``/v1/status`` shows them: the
        addresses in use (none: not resolved yet, NXDOMAIN, or expired), the
        seconds until they expire unless a lookup renews them, the last
        lookup's error, and whether any lookup has finished. Loop thread."""
        now = asyncio.get_running_loop().time()
        out: list[dict[str, Any]] = []
        for host in sorted(self.resolver.tracked(self)):
            res = self.resolver.lookup(host)
            out.append({"hostname": host, "addresses": list(res.addresses),
                        "expires_in": round(res.expires - now, 1) if res.addresses else None,
                        "error": res.error, "looked_up": res.done})
        return out

    def _pending(self, report: ClusterReport) -> bool:
        return any(not self.resolver.lookup(h).done for s in report.shards for h in s.hostnames)

    def _release(self) -> None:
        self._held = None
        self._forward()

    def _on_resolved(self) -> None:
        if self._stopped or self._last is None:
            return
        if self._held is not None:
            if self._pending(self._last):
                return
            self._held.cancel()
            self._held = None
        self._forward()

    def _forward(self) -> None:
        if self._last is None or self._emit is None or self._stopped:
            return
        out = self.rewrite(self._last)
        if out == self._sent:
            return
        self._sent = out
        self._emit(out)

    def rewrite(self, report: ClusterReport) -> ClusterReport:
        """``report`` with each shard's resolved hostnames replaced by addresses."""
        shards: list[ShardSpec] = []
        changed = False
        for spec in report.shards:
            new = rewrite_shard(spec, self.resolver)
            changed |= new is not spec
            shards.append(new)
        return replace(report, shards=tuple(shards)) if changed else report


def rewrite_shard(spec: ShardSpec, resolver: HostnameResolver) -> ShardSpec:
    if not spec.hostnames:
        return spec
    addresses = dict.fromkeys(spec.addresses)
    unresolved: list[str] = []
    for host in spec.hostnames:
        got = resolver.lookup(host).addresses
        if got:
            addresses.update(dict.fromkeys(got))
        else:
            unresolved.append(host)
    if len(unresolved) == len(spec.hostnames):
        return spec
    return replace(spec, addresses=tuple(addresses), hostnames=tuple(unresolved))


__all__ = [
    "HostnameResolver",
    "LookupFailed",
    "Resolution",
    "ResolverOptions",
    "ResolvingSource",
    "rewrite_shard",
]
