"""Route53 backend (boto3, run in worker threads off the event loop).

Ownership is a TXT registry (``ownership``).  Changes are packed per name —
the name's record sets and their markers travel in one batch — into batches
of at most 1,000 values and 32,000 value characters (UPSERT counted twice).
Requests are spaced to at most ``requests_per_second`` (default 5).
A name/type is fedns' when it holds one plain set, or only latency sets with
SetIdentifiers of fedns' shape (``providers.latency``), and has fedns' marker;
any other shape (alias, weighted, health check, a foreign latency member) is
foreign as a whole.  A routed set's members are deleted and created in the
same batch as the rest of its name, so a switch between plain and latency is
atomic (Route53 applies a ChangeBatch all or nothing).
Throttling and PriorRequestNotComplete are retried with jittered backoff;
deletes repeat the observed record set exactly; a rejected batch is retried
name by name so one bad record does not block the rest.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.parsers

from config.model import Provider
from providers import ownership, txtzone
from providers.backend import ApplyResult, Current, RecordError
from providers.batching import RateLimiter, backoff_delay, pack
from providers.errors import PermanentError, TransientError
from providers.latency import is_set_identifier
from providers.plan import Change, Plan
from providers.rrset import Route, RRKey, RRSet, absolute, make_routed, make_rrset, normalized
from providers.txtzone import Observed

MAX_VALUES = 1000
MAX_CHARS = 32000
PAGE_SIZE = "300"
SUPPORTED = frozenset({"A", "AAAA", "CAA", "CNAME", "DS", "HTTPS", "MX", "NAPTR", "NS", "PTR",
                       "SPF", "SRV", "SSHFP", "SVCB", "TLSA", "TXT"})
RETRY_CODES = frozenset({"Throttling", "ThrottlingException", "PriorRequestNotComplete",
                         "RequestLimitExceeded", "ServiceUnavailable", "InternalError"})
PERMANENT_CODES = frozenset({"NoSuchHostedZone", "AccessDenied", "AccessDeniedException",
                             "InvalidClientTokenId", "SignatureDoesNotMatch",
                             "UnrecognizedClientException"})
_ESCAPE = re.compile(r"\\(\d{3})")

R53Change = dict[str, Any]
R53Set = dict[str, Any]
_PLAIN_KEYS = frozenset({"Name", "Type", "TTL", "ResourceRecords"})
_LATENCY_KEYS = _PLAIN_KEYS | {"SetIdentifier", "Region"}


def decode_name(name: str) -> str:
    """Route53 names escape ``*`` and other octets as ``\\ddd`` (octal)."""
    return absolute(_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), name))


def change_cost(changes: list[R53Change]) -> tuple[int, int]:
    """(values, characters) of changes as Route53 counts them: UPSERT twice."""
    values = chars = 0
    for ch in changes:
        k = 2 if ch["Action"] == "UPSERT" else 1
        recs = ch["ResourceRecordSet"].get("ResourceRecords", [])
        values += k * len(recs)
        chars += k * sum(len(r["Value"]) for r in recs)
    return values, chars


def _raw(rr: RRSet) -> list[R53Set]:
    """The Route53 record sets of ``rr``: one plain set, or one per route."""
    if not rr.routes:
        return [{"Name": rr.name, "Type": rr.rtype, "TTL": rr.ttl,
                 "ResourceRecords": [{"Value": v} for v in rr.values]}]
    return [{"Name": rr.name, "Type": rr.rtype, "SetIdentifier": r.set_id, "Region": r.region,
             "TTL": r.ttl, "ResourceRecords": [{"Value": v} for v in r.values]}
            for r in rr.routes]


def _values(rs: R53Set) -> list[str]:
    return [str(r["Value"]) for r in rs.get("ResourceRecords", [])]


def _norm_set(rs: R53Set) -> tuple[object, ...]:
    """A listed or wanted set in comparable form (values normalised and sorted)."""
    rtype = str(rs["Type"])
    return (decode_name(str(rs["Name"])), rtype, rs.get("SetIdentifier"), rs.get("Region"),
            int(rs.get("TTL", 0)), normalized(rtype, _values(rs)))


def parse_sets(key: RRKey, sets: list[R53Set]) -> RRSet | None:
    """The record set fedns would have written as ``sets`` (all listed at
    ``key``), or None when they have a shape fedns never writes."""
    if len(sets) == 1 and set(sets[0]) <= _PLAIN_KEYS:
        return make_rrset(key[0], key[1], int(sets[0].get("TTL", 0)), _values(sets[0]))
    if not all(set(rs) == _LATENCY_KEYS and is_set_identifier(str(rs["SetIdentifier"]))
               for rs in sets):
        return None
    routes = [Route(str(rs["SetIdentifier"]), str(rs["Region"]), int(rs["TTL"]),
                    normalized(key[1], _values(rs))) for rs in sets]
    if len({r.region for r in routes}) != len(routes):
        return None  # Route53 allows one latency set per region: not ours
    return make_routed(key[0], key[1], routes)


class Route53Backend:
    kind = "route53"

    def __init__(self, provider: Provider, *, rng: random.Random | None = None) -> None:
        self.name = provider.name
        self.owner = provider.owner_id
        zone_id = str(provider.get("hosted_zone_id") or "")
        if not zone_id:
            raise PermanentError(provider.name, "hosted_zone_id is required")
        self.zone_id = zone_id.rsplit("/", 1)[-1]
        self.endpoint_url = provider.get("endpoint_url")
        self.region = provider.get("region")
        self.timeout = float(str(provider.get("timeout", 10.0)))
        self.marker_ttl = int(str(provider.get("marker_ttl", 300)))
        self.attempts = int(str(provider.get("attempts", 5)))
        self.backoff = float(str(provider.get("backoff", 0.5)))
        self._limiter = RateLimiter(float(str(provider.get("requests_per_second", 5.0))))
        self._rng = rng or random.Random()
        self._client: Any = None
        self._zone: str | None = None
        self.on_retry: Callable[[str], None] = lambda kind: None
        self._log = logging.getLogger(f"providers.route53[{self.name}]")

    @property
    def client(self) -> Any:
        """The boto3 client (credentials from boto3's default chain)."""
        if self._client is None:
            cfg = botocore.config.Config(
                connect_timeout=self.timeout, read_timeout=self.timeout,
                retries={"total_max_attempts": 1},  # fedns retries, and counts, itself
            )
            self._client = boto3.session.Session().client(
                "route53", endpoint_url=self.endpoint_url or None,
                region_name=str(self.region or "us-east-1"), config=cfg)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    # -- calls ---------------------------------------------------------------

    async def _call(self, op: str, **kwargs: Any) -> Any:
        """One API call in a thread, paced, with throttling retried here.

        Throttled requests did not run and are resent; a write that failed in
        a way that leaves its fate unknown (timeout, 5xx) is not resent: the
        syncer re-reads and re-plans instead.
        """
        write = op == "change_resource_record_sets"
        for attempt in range(self.attempts):
            wait = self._limiter.delay(time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                fn = getattr(self.client, op)
                async with asyncio.timeout(self.timeout * 2 + 1):
                    return await asyncio.to_thread(fn, **kwargs)
            except botocore.exceptions.ClientError as e:
                code = str(e.response.get("Error", {}).get("Code", ""))
                status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
                if code in PERMANENT_CODES:
                    raise PermanentError(self.name, f"{op}: {code}: {e}") from e
                if code not in RETRY_CODES and status < 500:
                    if op == "change_resource_record_sets":
                        raise  # the batch was rejected: the caller isolates bad names
                    raise PermanentError(self.name, f"{op}: {code}: {e}") from e
                detail = f"{code or status}: {e}"
                # Throttled requests did not run; a 5xx write (InternalError,
                # ServiceUnavailable included) may have landed.
                if write and (code not in RETRY_CODES or status >= 500):
                    raise TransientError(self.name, op, detail) from e
            except (botocore.exceptions.BotoCoreError, botocore.parsers.ResponseParserError,
                    TimeoutError, OSError) as e:
                if isinstance(e, botocore.exceptions.NoCredentialsError):
                    raise PermanentError(self.name, f"{op}: {e}") from e
                if write:  # the batch may have landed: let the syncer re-read, re-plan
                    raise TransientError(self.name, op, repr(e)) from e
                detail = repr(e)
            self.on_retry("throttled" if "Throttl" in detail or "Prior" in detail
                          else "transient")
            if attempt + 1 < self.attempts:
                delay = backoff_delay(attempt, self.backoff, 20.0, self._rng)
                self._log.info("retry op=%s attempt=%d delay=%.2f detail=%s",
                               op, attempt + 1, delay, detail)
                await asyncio.sleep(delay)
        raise TransientError(self.name, op, detail)

    async def zone(self) -> str:
        if self._zone is None:
            res = await self._call("get_hosted_zone", Id=self.zone_id)
            self._zone = absolute(str(res["HostedZone"]["Name"]))
        return self._zone

    # -- read ----------------------------------------------------------------

    async def read(self) -> Current:
        try:
            return await self._read()
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # a listing botocore parsed but that lacks what the API promises
            raise TransientError(self.name, "list_resource_record_sets",
                                 f"malformed answer: {e!r}") from e

    async def _read(self) -> Current:
        zone = await self.zone()
        kwargs: dict[str, Any] = {"HostedZoneId": self.zone_id, "MaxItems": PAGE_SIZE}
        listed: dict[RRKey, dict[str | None, R53Set]] = {}  # key -> SetIdentifier -> set
        while True:
            page = await self._call("list_resource_record_sets", **kwargs)
            for rs in page.get("ResourceRecordSets", []):
                key = (decode_name(str(rs["Name"])), str(rs["Type"]))
                sid = rs.get("SetIdentifier")
                listed.setdefault(key, {})[None if sid is None else str(sid)] = rs
            if not page.get("IsTruncated"):
                break
            kwargs["StartRecordName"] = page["NextRecordName"]
            kwargs["StartRecordType"] = page["NextRecordType"]
            if "NextRecordIdentifier" in page:
                kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]
            else:
                kwargs.pop("StartRecordIdentifier", None)
        raw: dict[RRKey, list[R53Set]] = {}
        foreign: set[RRKey] = set()
        sets: list[RRSet] = []
        for key, members in listed.items():
            found = parse_sets(key, list(members.values()))
            if found is None:
                foreign.add(key)  # alias, other routing, health check: never ours
            else:
                raw[key] = list(members.values())
                sets.append(found)
        return txtzone.current(zone, raw, foreign, sets, self.owner)

    def check(self, desired: Mapping[RRKey, RRSet], current: Current) -> dict[RRKey, str]:
        return txtzone.refusals(desired, current, "hosted zone", SUPPORTED, "route53")

    # -- apply ---------------------------------------------------------------

    def _changes(self, ch: Change, obs: Observed) -> list[R53Change]:
        """DELETE what was listed (exactly), CREATE what is wanted: a plain set
        turning into latency sets (or back) is one DELETE+CREATE per name, in
        one batch."""
        key = ch.key
        out: list[R53Change] = []
        listed: list[R53Set] = list(obs.raw.get(key, ())) if ch.action != "create" else []
        wanted = _raw(ch.after) if ch.after is not None else []
        if ch.before is not None and ch.before.routed and ch.after is not None \
                and ch.after.routed:  # latency to latency: only the members that differ
            have = {_norm_set(rs) for rs in listed}
            want = {_norm_set(rs) for rs in wanted}
            listed = [rs for rs in listed if _norm_set(rs) not in want]
            wanted = [rs for rs in wanted if _norm_set(rs) not in have]
        for rs in listed:
            out.append({"Action": "DELETE", "ResourceRecordSet": rs})
        if ch.action == "delete":
            mk = obs.markers.get(key)
            if mk is not None:
                for rs in obs.raw.get(mk.key) or _raw(mk):
                    out.append({"Action": "DELETE", "ResourceRecordSet": rs})
        if ch.after is not None:
            out.extend({"Action": "CREATE", "ResourceRecordSet": rs} for rs in wanted)
            if ch.action == "create" and key not in obs.markers:
                out.extend({"Action": "CREATE", "ResourceRecordSet": rs}
                           for rs in _raw(ownership.marker(key, self.owner, self.marker_ttl)))
        return out

    async def apply(self, plan: Plan, current: Current) -> ApplyResult:
        obs = Observed.of(current)
        groups = [(chs, [c for ch in chs for c in self._changes(ch, obs)])
                  for chs in txtzone.by_name(plan)]
        groups = [g for g in groups if g[1]]
        batches = pack(groups, lambda g: change_cost(g[1]), (MAX_VALUES, MAX_CHARS))
        applied = requests = 0
        errors: list[RecordError] = []
        for batch in batches:
            n, r, errs = await self._send(batch)
            applied, requests = applied + n, requests + r
            errors.extend(errs)
        return ApplyResult(applied, tuple(errors), requests)

    async def _send(self, batch: list[tuple[list[Change], list[R53Change]]]
                    ) -> tuple[int, int, list[RecordError]]:
        changes = [c for _, cs in batch for c in cs]
        changes.sort(key=lambda c: c["Action"] != "DELETE")  # stable: deletes first
        try:
            await self._call("change_resource_record_sets", HostedZoneId=self.zone_id,
                             ChangeBatch={"Comment": "fedns", "Changes": changes})
            return sum(len(chs) for chs, _ in batch), 1, []
        except botocore.exceptions.ClientError as e:
            reason = f"{e.response.get('Error', {}).get('Code', '')}: " \
                     f"{e.response.get('Error', {}).get('Message', '')}"
        if len(batch) > 1:  # find the bad name(s); the rest proceeds
            applied, requests, errors = 0, 1, []
            for group in batch:
                n, r, errs = await self._send([group])
                applied, requests = applied + n, requests + r
                errors.extend(errs)
            return applied, requests, errors
        chs = batch[0][0]
        return 0, 1, [RecordError(c.key[0], c.key[1], c.action, reason) for c in chs]
