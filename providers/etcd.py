"""CoreDNS-etcd backend: SkyDNS messages in etcd v3 via ``aetcd``.

Ownership is the ``owner`` field inside each value (no separate marker keys:
CoreDNS would read them as records).  Every record-set change is one etcd
transaction whose compares pin the observed values (owner included), so a
key that changed since the read is never overwritten; deletes name exact
keys only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import aetcd
import aetcd.exceptions

from config.model import Provider
from providers import skydns
from providers.backend import ApplyResult, Current, RecordError
from providers.errors import ConflictError, PermanentError, TransientError
from providers.plan import Change, Plan
from providers.rrset import RRKey, RRSet, make_rrset

T = TypeVar("T")
_PERMANENT = (aetcd.exceptions.UnauthenticatedError, aetcd.exceptions.InvalidArgumentError)


@dataclass(frozen=True, slots=True)
class _Observed:
    owned_keys: Mapping[RRKey, Mapping[str, bytes]]  # our keys per record set
    foreign_paths: frozenset[str]  # key paths held by foreign values


def _endpoint(url: str) -> tuple[str, int]:
    u = urlparse(url if "://" in url else f"http://{url}")
    return u.hostname or "127.0.0.1", u.port or 2379


class EtcdBackend:
    kind = "coredns-etcd"

    def __init__(self, provider: Provider) -> None:
        self.name = provider.name
        self.owner = provider.owner_id
        eps = provider.get("endpoints", ["http://127.0.0.1:2379"])
        if isinstance(eps, str):
            eps = [eps]
        if not isinstance(eps, list | tuple) or not eps:
            raise PermanentError(provider.name, "endpoints must be a non-empty list")
        self._endpoints = [_endpoint(str(e)) for e in eps]
        self.prefix = str(provider.get("prefix", "/skydns")).rstrip("/") or "/skydns"
        self.timeout = float(str(provider.get("timeout", 5.0)))
        self._ep = 0
        self._client: aetcd.Client | None = None
        self._log = logging.getLogger(f"providers.etcd[{self.name}]")

    # -- connection ----------------------------------------------------------

    async def _conn(self) -> aetcd.Client:
        if self._client is None:
            host, port = self._endpoints[self._ep]
            client = aetcd.Client(host=host, port=port, timeout=self.timeout)
            await self._call("connect", client.connect())
            self._client = client
        return self._client

    async def _drop(self) -> None:
        client, self._client = self._client, None
        self._ep = (self._ep + 1) % len(self._endpoints)
        if client is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await client.close()
            except Exception as e:  # closing a broken channel may fail; it is gone anyway
                self._log.debug("close_failed error=%r", e)

    async def _call(self, op: str, aw: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await aw
        except _PERMANENT as e:
            raise PermanentError(self.name, f"{op}: {e!r}") from e
        except (aetcd.exceptions.ClientError, TimeoutError, OSError) as e:
            await self._drop()
            raise TransientError(self.name, op, repr(e)) from e

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                async with asyncio.timeout(self.timeout):
                    await client.close()
            except Exception as e:
                self._log.debug("close_failed error=%r", e)

    # -- read ----------------------------------------------------------------

    async def read(self) -> Current:
        client = await self._conn()
        res = await self._call("read", client.get_prefix((self.prefix + "/").encode()))
        owned_keys: dict[RRKey, dict[str, bytes]] = {}
        entries: dict[RRKey, list[skydns.Entry]] = {}
        foreign_paths: set[str] = set()
        foreign: set[RRKey] = set()
        for kv in res:
            path = kv.key.decode(errors="replace")
            entry = skydns.decode(kv.value)
            parent = path.rsplit("/", 1)[0]
            name = skydns.dir_name(self.prefix, parent)
            if entry is not None and entry.owner == self.owner and name is not None:
                key = (name, entry.rtype)
                owned_keys.setdefault(key, {})[path] = kv.value
                entries.setdefault(key, []).append(entry)
                continue
            foreign_paths.add(path)
            rtype = entry.rtype if entry is not None else "?"
            # CoreDNS reads a foreign key for the name it sits at and every ancestor.
            walk = path
            while walk.startswith(self.prefix + "/"):
                anc = skydns.dir_name(self.prefix, walk)
                if anc is not None:
                    foreign.add((anc, rtype))
                walk = walk.rsplit("/", 1)[0]
        owned: dict[RRKey, RRSet] = {}
        for key, ents in entries.items():
            ttls = {e.ttl for e in ents}
            rr = make_rrset(key[0], key[1], min(t or 0 for t in ttls), [e.value for e in ents])
            if len(ttls) > 1 or skydns.encode(self.prefix, rr, self.owner) != owned_keys[key]:
                rr = RRSet(rr.name, rr.rtype, -1, rr.values)  # inconsistent layout: rewrite
            owned[key] = rr
        return Current(".", owned, frozenset(foreign),
                       _Observed(owned_keys, frozenset(foreign_paths)))

    # -- check ---------------------------------------------------------------

    def check(self, desired: Mapping[RRKey, RRSet], current: Current) -> dict[RRKey, str]:
        out: dict[RRKey, str] = {}
        dirs = {k: skydns.name_dir(self.prefix, k[0]) for k in desired}
        above: set[str] = set()  # every proper ancestor dir of a published name
        for d in set(dirs.values()):
            walk = d.rsplit("/", 1)[0]
            while walk and walk not in above:
                above.add(walk)
                walk = walk.rsplit("/", 1)[0]
        raw = current.raw
        foreign_paths = raw.foreign_paths if isinstance(raw, _Observed) else frozenset()
        for key, rr in desired.items():
            why = skydns.unsupported(rr)
            d = dirs[key]
            if why is None and d in above:
                why = "names below it are published and CoreDNS would answer them here too"
            if why is None and _at_or_above(d, foreign_paths):
                why = "a foreign etcd key sits at or above this name"
            if why is not None:
                out[key] = why
        return out

    # -- apply ---------------------------------------------------------------

    async def apply(self, plan: Plan, current: Current) -> ApplyResult:
        raw = current.raw
        observed = raw.owned_keys if isinstance(raw, _Observed) else {}
        client = await self._conn()
        applied = requests = 0
        errors: list[RecordError] = []
        conflicts: list[str] = []
        for ch in plan.changes:
            have = dict(observed.get(ch.key, {}))
            want = skydns.encode(self.prefix, ch.after, self.owner) if ch.after else {}
            compare, ops = self._txn(client, have, want)
            if not ops:
                applied += 1
                continue
            requests += 1
            try:
                ok, _ = await self._call("txn", client.transaction(compare, ops, []))
            except PermanentError as e:
                errors.append(_record_error(ch, e.detail))
                continue
            if ok:
                applied += 1
            else:
                conflicts.append(f"{ch.key[0]} {ch.key[1]}")
        if conflicts:
            raise ConflictError(self.name, f"values changed since read: {', '.join(conflicts)}")
        return ApplyResult(applied, tuple(errors), requests)

    @staticmethod
    def _txn(client: aetcd.Client, have: Mapping[str, bytes],
             want: Mapping[str, bytes]) -> tuple[list[Any], list[Any]]:
        t = client.transactions
        compare: list[Any] = []
        ops: list[Any] = []
        for path, value in have.items():
            if path not in want:
                compare.append(t.value(path.encode()) == value)
                ops.append(t.delete(path.encode()))
        for path, value in want.items():
            old = have.get(path)
            if old == value:
                continue
            if old is None:
                compare.append(t.version(path.encode()) == 0)
            else:
                compare.append(t.value(path.encode()) == old)
            ops.append(t.put(path.encode(), value))
        return compare, ops


def _at_or_above(d: str, paths: frozenset[str]) -> bool:
    walk = d
    while walk:
        if walk in paths:
            return True
        walk = walk.rsplit("/", 1)[0]
    return False


def _record_error(ch: Change, reason: str) -> RecordError:
    return RecordError(ch.key[0], ch.key[1], ch.action, reason)
