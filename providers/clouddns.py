"""Cloud DNS backend (google-cloud-dns, run in worker threads off the event loop).

Ownership is a TXT registry (``ownership``).  A change holds at most 1,000
additions, 1,000 deletions and 100,000 bytes of record data, packed per name;
an update is the exact observed record set deleted plus the new one added.
409 (already exists) and 412 (stale delete) mean the zone moved under us: the
syncer re-lists and re-plans instead of retrying blindly.  429 and 5xx are
retried with jittered backoff; a malformed answer is a TransientError.
Record sets are listed from the raw API response (the library cannot parse a
``routingPolicy``), and changes are sent as the API's own JSON through the
library's HTTP connection: one way of sending, for plain and routed sets.
With ``routing: geo`` geo-aware names are published with a geo routing
policy (``providers.geo``); a routed set of exactly the shape fedns writes is
fedns' when it has fedns' marker; any other routed set (other policies,
health checks, fencing) is foreign and never touched.  A switch between
plain and geo is one change (its deletion and addition), which Cloud DNS
applies atomically.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import google.api_core.exceptions as gexc
import google.auth.exceptions
import requests.exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import dns

from config.model import Provider
from providers import ownership, txtzone
from providers.backend import ApplyResult, Current, RecordError
from providers.batching import backoff_delay, pack
from providers.errors import ConflictError, PermanentError, TransientError
from providers.geo import exact, geo_regions, parse_routed, rrdatas, to_api
from providers.plan import Change, Plan
from providers.rrset import RRKey, RRSet, absolute, make_rrset
from providers.txtzone import Observed

MAX_ADDITIONS = 1000
MAX_DELETIONS = 1000
MAX_RRDATA_BYTES = 100_000  # "resource record data size per change"
PAGE_SIZE = 500
CHANGE_WAIT = 60.0  # seconds to wait for a change to become "done"

Rrset = dict[str, Any]


def rrdata_bytes(sets: list[Rrset]) -> int:
    """Record data of ``sets`` (routing policy items included) as the
    per-change size limit counts it."""
    return sum(len(v.encode()) for rs in sets for v in rrdatas(rs))


class CloudDnsBackend:
    kind = "clouddns"

    def __init__(self, provider: Provider, *, credentials: Any = None,
                 rng: random.Random | None = None) -> None:
        self.name = provider.name
        self.owner = provider.owner_id
        self.project = str(provider.get("project") or "")
        self.managed_zone = str(provider.get("managed_zone") or "")
        if not self.project or not self.managed_zone:
            raise PermanentError(provider.name, "project and managed_zone are required")
        self.endpoint_url = provider.get("endpoint_url")
        self.timeout = float(str(provider.get("timeout", 10.0)))
        self.marker_ttl = int(str(provider.get("marker_ttl", 300)))
        self.attempts = int(str(provider.get("attempts", 5)))
        self.backoff = float(str(provider.get("backoff", 0.5)))
        # Google Cloud region -> fedns region: the set_id of a geo item read back
        self.locations = {loc: region for region, loc in geo_regions(provider)}
        self._credentials = credentials
        self._rng = rng or random.Random()
        self._client: dns.Client | None = None
        self._zone: str | None = None
        self.on_retry: Callable[[str], None] = lambda kind: None
        self._log = logging.getLogger(f"providers.clouddns[{self.name}]")

    @property
    def base(self) -> str:
        return f"/projects/{self.project}/managedZones/{self.managed_zone}"

    def _conn(self) -> Any:
        if self._client is None:
            opts = ClientOptions(api_endpoint=str(self.endpoint_url)) \
                if self.endpoint_url else None
            # credentials None: Application Default Credentials; an emulator
            # endpoint without them is spoken to anonymously
            try:
                self._client = dns.Client(project=self.project, credentials=self._credentials,
                                          client_options=opts)
            except google.auth.exceptions.DefaultCredentialsError:
                if not self.endpoint_url:
                    raise
                self._client = dns.Client(project=self.project, client_options=opts,
                                          credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        return self._client._connection

    async def close(self) -> None:
        self._client = None

    # -- calls ---------------------------------------------------------------

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        return self._conn().api_request(method=method, path=path, timeout=self.timeout, **kw)

    async def _call(self, op: str, method: str, path: str, **kw: Any) -> Any:
        """One API call in a thread; 429/5xx and network errors retried here.

        A change whose fate is unknown (timeout, 5xx) is not resent: the
        syncer re-reads and re-plans instead.
        """
        write = method == "POST"
        for attempt in range(self.attempts):
            try:
                async with asyncio.timeout(self.timeout * 2 + 1):
                    return await asyncio.to_thread(self._request, method, path, **kw)
            except (gexc.Conflict, gexc.PreconditionFailed) as e:
                raise ConflictError(self.name, f"{op}: {e.code} {e.message}") from e
            except (gexc.NotFound, gexc.Forbidden, gexc.Unauthorized) as e:
                raise PermanentError(self.name, f"{op}: {e.code} {e.message}") from e
            except google.auth.exceptions.DefaultCredentialsError as e:
                raise PermanentError(self.name, f"{op}: {e}") from e
            except (gexc.TooManyRequests, gexc.ServerError) as e:
                detail = f"{e.code} {e.message}"
                kind = "throttled" if e.code == 429 else "transient"
                if write and e.code != 429:
                    raise TransientError(self.name, op, detail) from e
            except (requests.exceptions.RequestException, TimeoutError, OSError) as e:
                if write:
                    raise TransientError(self.name, op, repr(e)) from e
                detail, kind = repr(e), "transient"
            except gexc.BadRequest as e:
                if write:
                    raise  # a rejected change: the caller isolates the bad name(s)
                raise PermanentError(self.name, f"{op}: {e.code} {e.message}") from e
            except gexc.GoogleAPICallError as e:  # any other status: retrying will not help
                raise PermanentError(self.name, f"{op}: {e.code} {e.message}") from e
            self.on_retry(kind)
            if attempt + 1 < self.attempts:
                delay = backoff_delay(attempt, self.backoff, 20.0, self._rng)
                self._log.info("retry op=%s attempt=%d delay=%.2f detail=%s",
                               op, attempt + 1, delay, detail)
                await asyncio.sleep(delay)
        raise TransientError(self.name, op, detail)

    async def zone(self) -> str:
        if self._zone is None:
            res = await self._call("get_zone", "GET", self.base)
            name = res.get("dnsName") if isinstance(res, dict) else None
            if not isinstance(name, str) or not name:
                raise TransientError(self.name, "get_zone", f"malformed answer: {res!r:.200}")
            self._zone = absolute(name)
        return self._zone

    def _page(self, page: Any) -> tuple[list[Rrset], str | None]:
        """The record sets and next page token of one listing page, checked:
        a malformed answer is a TransientError, never a KeyError or TypeError."""
        def bad(why: str) -> TransientError:
            return TransientError(self.name, "list", f"malformed answer: {why}")

        if not isinstance(page, dict):
            raise bad(f"page is {type(page).__name__}")
        rrsets = page.get("rrsets", [])
        token = page.get("nextPageToken")
        if not isinstance(rrsets, list) or not (token is None or isinstance(token, str)):
            raise bad("rrsets or nextPageToken of the wrong type")
        for rs in rrsets:
            if not isinstance(rs, dict) or not isinstance(rs.get("name"), str) \
                    or not isinstance(rs.get("type"), str):
                raise bad(f"record set without name/type: {rs!r:.200}")
            if "rrdatas" in rs and not (isinstance(rs["rrdatas"], list)
                                        and all(isinstance(v, str) for v in rs["rrdatas"])):
                raise bad(f"rrdatas not a list of strings: {rs!r:.200}")
            try:
                int(rs.get("ttl", 0))
            except (TypeError, ValueError):
                raise bad(f"ttl not a number: {rs!r:.200}") from None
        return rrsets, token

    # -- read ----------------------------------------------------------------

    async def read(self) -> Current:
        zone = await self.zone()
        listed: dict[RRKey, Rrset] = {}  # ours-shaped sets, as listed
        routed: dict[RRKey, RRSet] = {}
        foreign: set[RRKey] = set()
        token: str | None = None
        while True:
            params: dict[str, Any] = {"maxResults": PAGE_SIZE}
            if token:
                params["pageToken"] = token
            page = await self._call("list", "GET", self.base + "/rrsets", query_params=params)
            rrsets, token = self._page(page)
            for rs in rrsets:
                key = (absolute(str(rs["name"])), str(rs["type"]))
                found = parse_routed(key, rs, self.locations) \
                    if "routingPolicy" in rs else None
                if found is not None:
                    routed[key] = found
                    listed[key] = rs
                elif "rrdatas" not in rs or set(rs) - {"name", "type", "ttl", "rrdatas", "kind"}:
                    foreign.add(key)  # other routing policies, signatures: never ours
                else:
                    listed[key] = rs
            if not token:
                break
        sets = [routed[k] if k in routed else
                make_rrset(k[0], k[1], int(rs.get("ttl", 0)), [str(v) for v in rs["rrdatas"]])
                for k, rs in listed.items() if k not in foreign]
        return txtzone.current(zone, listed, foreign, sets, self.owner)

    def check(self, desired: Mapping[RRKey, RRSet], current: Current) -> dict[RRKey, str]:
        return txtzone.refusals(desired, current, "managed zone")

    # -- apply ---------------------------------------------------------------

    def _change(self, ch: Change, obs: Observed) -> tuple[list[Rrset], list[Rrset]]:
        adds: list[Rrset] = []
        dels: list[Rrset] = []
        key = ch.key
        if ch.action in ("delete", "update") and key in obs.raw:
            dels.append(exact(obs.raw[key]))
        if ch.action == "delete":
            mk = obs.markers.get(key)
            if mk is not None:
                dels.append(exact(obs.raw[mk.key]) if mk.key in obs.raw else to_api(mk))
        if ch.after is not None:
            adds.append(to_api(ch.after))
            if ch.action == "create" and key not in obs.markers:
                adds.append(to_api(ownership.marker(key, self.owner, self.marker_ttl)))
        return adds, dels

    async def apply(self, plan: Plan, current: Current) -> ApplyResult:
        obs = Observed.of(current)
        groups = []
        for chs in txtzone.by_name(plan):
            adds: list[Rrset] = []
            dels: list[Rrset] = []
            for ch in chs:
                a, d = self._change(ch, obs)
                adds += a
                dels += d
            if adds or dels:
                groups.append((chs, adds, dels))
        batches = pack(groups, lambda g: (len(g[1]), len(g[2]), rrdata_bytes(g[1] + g[2])),
                       (MAX_ADDITIONS, MAX_DELETIONS, MAX_RRDATA_BYTES))
        applied = requests = 0
        errors: list[RecordError] = []
        for batch in batches:
            n, r, errs = await self._send(batch)
            applied, requests = applied + n, requests + r
            errors.extend(errs)
        return ApplyResult(applied, tuple(errors), requests)

    async def _send(self, batch: list[tuple[list[Change], list[Rrset], list[Rrset]]]
                    ) -> tuple[int, int, list[RecordError]]:
        body = {"additions": [a for _, adds, _ in batch for a in adds],
                "deletions": [d for _, _, dels in batch for d in dels]}
        try:
            res = await self._call("change", "POST", self.base + "/changes", data=body)
            await self._wait_done(res)
            return sum(len(chs) for chs, _, _ in batch), 1, []
        except gexc.BadRequest as e:
            reason = f"{e.code} {e.message}"
        if len(batch) > 1:  # find the bad name(s); the rest proceeds
            applied, requests, errors = 0, 1, []
            for group in batch:
                n, r, errs = await self._send([group])
                applied, requests = applied + n, requests + r
                errors.extend(errs)
            return applied, requests, errors
        return 0, 1, [RecordError(c.key[0], c.key[1], c.action, reason) for c in batch[0][0]]

    async def _wait_done(self, change: Mapping[str, Any]) -> None:
        deadline = time.monotonic() + CHANGE_WAIT
        delay = 0.1
        while change.get("status", "done") != "done":
            if time.monotonic() > deadline:
                raise TransientError(self.name, "change", f"change {change.get('id')} pending")
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
            change = await self._call("change_get", "GET",
                                      f"{self.base}/changes/{change.get('id')}")
