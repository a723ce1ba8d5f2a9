"""DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018).

A client puts an 8-byte client cookie in the COOKIE EDNS option; the server
answers with it and a 16-byte server cookie, which the client sends back in
its next queries to this server. The server cookie is version 1, three
reserved bytes, a 32-bit timestamp (Unix seconds, compared as serial
numbers) and SipHash-2-4(client cookie | version | reserved | timestamp |
client IP) keyed with a 16-byte server secret. Any server holding the same
secret validates it, whatever software it runs: anycast replicas and the
``server.workers`` processes must share one secret (``pinned``).

A server cookie sent back is valid while its hash matches and its timestamp
lies at most ``LIFETIME`` in the past and ``SKEW`` in the future (RFC 9018
section 4.3). A valid one younger than ``RENEW`` is returned unchanged; an
older valid one, one of a previous secret (below), an invalid one (forged,
expired, a secret we do not have, another address, not our format) or none
at all gets a new one stamped now. A valid cookie proves the client receives
replies at its source address, so response-rate limiting exempts it
(``ServerCookies.proven``).

Rollover (RFC 9018 section 5): a keeper's ``Keys`` are the current secret,
which issues and validates, and previous ones, which only validate, each
until a time. A cookie valid under a previous secret is ROLLOVER: proven
like a VALID one (RRL, ``require_server_cookie``), but always replaced by a
new cookie of the current secret, so clients move to it within one query.
``server.cookie_secret_previous`` gives previous secrets for as long as it
names them (a restart with a new secret keeps the old one this way); a
reload that changes the secret retires the old current one for ``LIFETIME``
more by itself (``Keys.rotated``): every cookie it made has expired by then.
Keys are fixed per keeper: a new secret means a new keeper
(``ServerCookies.rekeyed``), so no decision made with the old keys is
served after the switch.

SipHash in Python costs microseconds, so ``ServerCookies`` keeps its decision
per (option as received, client address) for a bounded time: a client that
keeps sending the same cookie costs a dict lookup. A newly issued cookie is
handed out again for ``REUSE`` seconds, an echoed one until it is ``RENEW``
old (a ROLLOVER decision at most until its secret retires); the table is
bounded like the handler's caches. Both query paths ask the same object (one
per secret per process: ``make_cookies``), so the fast and the full path put
the same bytes on the wire; tests inject a clock.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import math
import secrets
import struct
import time
from collections.abc import Callable, Iterable

from config.model import Server
from dnsserver import wire

Clock = Callable[[], float]

VERSION = 1
LIFETIME = 3600  # seconds a server cookie stays valid after its timestamp
RENEW = 1800  # a valid cookie this old is replaced by a new one
SKEW = 300  # seconds a timestamp may lie ahead of our clock (another replica's)
REUSE = 300  # seconds a newly issued cookie is handed out again to the same client
CACHE_MAX = 65536  # (option, client address) decisions kept

# what the server cookie sent back was (``fedns_dns_cookies_total{result}``,
# with "malformed": FORMERR, decided by the handler)
NEW = "new"  # none: a client cookie alone
VALID = "valid"
ROLLOVER = "rollover"  # valid under a previous secret: proven, and replaced
INVALID = "invalid"
ACCEPTED = frozenset({VALID, ROLLOVER})  # the results that prove the source address

HEAD = wire.OPT_COOKIE.to_bytes(2, "big") + (24).to_bytes(2, "big")  # a reply's option
REPLY_LEN = len(HEAD) + 24  # client cookie 8 + server cookie 16
_PREFIX = bytes((VERSION, 0, 0, 0))  # version and reserved bytes of the cookies we issue

_M = 0xFFFFFFFFFFFFFFFF


def _rounds(v0: int, v1: int, v2: int, v3: int, n: int) -> tuple[int, int, int, int]:
    """``n`` SipRounds over the 64-bit state."""
    for _ in range(n):
        v0 = (v0 + v1) & _M
        v1 = ((v1 << 13) | (v1 >> 51)) & _M ^ v0
        v0 = ((v0 << 32) | (v0 >> 32)) & _M
        v2 = (v2 + v3) & _M
        v3 = ((v3 << 16) | (v3 >> 48)) & _M ^ v2
        v0 = (v0 + v3) & _M
        v3 = ((v3 << 21) | (v3 >> 43)) & _M ^ v0
        v2 = (v2 + v1) & _M
        v1 = ((v1 << 17) | (v1 >> 47)) & _M ^ v2
        v2 = ((v2 << 32) | (v2 >> 32)) & _M
    return v0, v1, v2, v3


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 of ``data`` under the 16-byte ``key`` (Aumasson and
    Bernstein, 2012), as the 64-bit integer whose little-endian bytes are
    the reference implementation's output."""
    k0, k1 = struct.unpack("<QQ", key)
    v0 = k0 ^ 0x736F6D6570736575
    v1 = k1 ^ 0x646F72616E646F6D
    v2 = k0 ^ 0x6C7967656E657261
    v3 = k1 ^ 0x7465646279746573
    n = len(data)
    whole = n & ~7
    words = list(struct.unpack_from(f"<{n >> 3}Q", data))
    words.append(int.from_bytes(data[whole:], "little") | ((n & 0xFF) << 56))
    for m in words:
        v0, v1, v2, v3 = _rounds(v0, v1, v2, v3 ^ m, 2)
        v0 ^= m
    v0, v1, v2, v3 = _rounds(v0, v1, v2 ^ 0xFF, v3, 4)
    return v0 ^ v1 ^ v2 ^ v3


def _mac(secret: bytes, client_cookie: bytes, head: bytes, address: bytes) -> bytes:
    """The hash of a server cookie whose first 8 bytes are ``head``."""
    return siphash24(secret, client_cookie + head + address).to_bytes(8, "little")


def server_cookie(secret: bytes, client_cookie: bytes, address: bytes, timestamp: int) -> bytes:
    """The RFC 9018 server cookie for ``client_cookie`` from the packed client
    ``address`` (4 or 16 bytes) at Unix time ``timestamp``."""
    head = _PREFIX + (timestamp & 0xFFFFFFFF).to_bytes(4, "big")
    return head + _mac(secret, client_cookie, head, address)


def age_of(timestamp: int, now: int) -> int:
    """Seconds from a cookie's 32-bit ``timestamp`` to ``now``, compared as
    serial numbers (RFC 1982): negative when it lies ahead, and right across
    the wrap of the 32-bit counter."""
    return ((now - timestamp + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def _age(option: bytes, now: int) -> int | None:
    """The age at ``now`` of the server cookie in the COOKIE option data
    ``option``; None when it is not our format (16 bytes, version 1)."""
    server = option[8:]
    if len(server) != 16 or server[0] != VERSION:
        return None
    return age_of(int.from_bytes(server[4:8], "big"), now)


def _made_with(secret: bytes, option: bytes, address: bytes) -> bool:
    """Did ``secret`` make the server cookie in ``option`` for ``address``?
    The reserved bytes are hashed as received (RFC 9018 section 4.3)."""
    server = option[8:]
    return hmac.compare_digest(_mac(secret, option[:8], server[:8], address), server[8:])


def _checked(secret: bytes) -> bytes:
    if len(secret) != 16:
        raise ValueError("a server cookie secret is 16 bytes")
    return secret


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class Keys:
    """The secrets of a keeper: ``current`` issues and validates; each of
    ``previous`` only validates, until its time (Unix seconds, ``math.inf``
    while the config names it). Build with ``configured`` or ``rotated``:
    every secret 16 bytes and listed once. Picklable, for the workers."""

    current: bytes
    previous: tuple[tuple[bytes, float], ...] = ()

    def __repr__(self) -> str:
        return f"Keys(previous={len(self.previous)})"  # never a secret

    @classmethod
    def configured(cls, current: bytes, previous: Iterable[bytes] = ()) -> Keys:
        """The keys a config gives: ``previous`` validate as long as it names them."""
        return cls._of(current, ((p, math.inf) for p in previous))

    @classmethod
    def _of(cls, current: bytes, previous: Iterable[tuple[bytes, float]]) -> Keys:
        """``current`` and ``previous`` without ``current`` or repeats (the first kept)."""
        kept: dict[bytes, float] = {}
        for secret, until in previous:
            if _checked(secret) != current:
                kept.setdefault(secret, until)
        return cls(_checked(current), tuple(kept.items()))

    def rotated(self, current: bytes, configured: Iterable[bytes], now: float) -> Keys:
        """The keys after a reload at ``now`` whose config says ``current`` and
        ``configured`` previous secrets: those, then this ``current`` (when
        replaced) until ``LIFETIME`` from now, then the ones earlier reloads
        retired until their time. A previous secret the config no longer
        names and no reload retired is dropped at once."""
        retired = [] if current == self.current else [(self.current, now + LIFETIME)]
        earlier = [(s, until) for s, until in self.previous if now <= until < math.inf]
        return self._of(current, [*((p, math.inf) for p in configured), *retired, *earlier])

    def previous_until(self, option: bytes, address: bytes, now: float) -> float | None:
        """Until when the previous secret that made ``option``'s server cookie
        for ``address`` validates; None when none did (or it retired)."""
        for secret, until in self.previous:
            if now <= until and _made_with(secret, option, address):
                return until
        return None


class ServerCookies:
    """The server secrets, the clock and the decisions kept; see the module doc.

    Safe to share between the UDP threads and the event loop: a decision is
    one dict assignment, and two threads deciding the same key at once decide
    the same (or, across a second boundary, an equally valid) cookie."""

    def __init__(self, keys: Keys | bytes, *, clock: Clock = time.time,
                 cache_max: int = CACHE_MAX) -> None:
        """``keys``: the ``Keys``, or one secret (16 bytes) alone."""
        self._keys = keys if isinstance(keys, Keys) else Keys.configured(keys)
        self.clock = clock
        self._cache: dict[tuple[bytes, str], tuple[bytes, str, float]] = {}
        self._cache_max = max(1, cache_max)

    def __repr__(self) -> str:
        return f"ServerCookies(kept={len(self._cache)})"  # never the secret

    @property
    def keys(self) -> Keys:
        """The secrets, fixed for this keeper's life."""
        return self._keys

    def rekeyed(self, keys: Keys) -> ServerCookies:
        """A keeper of ``keys`` with this one's clock and bound, and none of
        its decisions (they were made with the old keys)."""
        return ServerCookies(keys, clock=self.clock, cache_max=self._cache_max)

    def reply(self, option: bytes, client: str) -> tuple[bytes, str]:
        """(the reply's whole COOKIE option, NEW/VALID/ROLLOVER/INVALID) for
        the well-formed COOKIE option data ``option`` from the socket address
        ``client``: the decision kept for them while it holds, else a new one."""
        now = self.clock()
        key = (option, client)
        kept = self._cache.get(key)
        if kept is None or now >= kept[2]:
            kept = self._decide(option, client, now)
            if len(self._cache) >= self._cache_max:
                self._cache.clear()
            self._cache[key] = kept
        return kept[0], kept[1]

    def proven(self, query: bytes, client: str) -> bool:
        """Did ``query`` (as received, one question and an OPT record) carry a
        valid server cookie (of any of our secrets) for ``client``? Response-
        rate limiting asks this only of replies it would limit; the decision
        is usually kept already."""
        if len(query) < 12 or query[10] or query[11] != 1:
            return False
        qend = query.find(b"\x00", 12) + 5
        if qend < 18:
            return False
        raw = query[qend:]
        if wire.fast_opt(raw) is None:
            return False
        spans = wire.option_spans(raw, wire.OPT_COOKIE)
        if not spans:
            return False
        option = raw[spans[0][0]:spans[0][1]]
        return wire.cookie_well_formed(option) and self.reply(option, client)[1] in ACCEPTED

    def _decide(self, option: bytes, client: str, now: float) -> tuple[bytes, str, float]:
        """(reply option, result, time until which both hold) at ``now``."""
        try:
            address = wire.packed_address(client)
        except (OSError, ValueError):
            address = b""  # no address (not a socket): a cookie all the same
        stamp = int(now)
        if len(option) == 8:
            return self._issue(option, address, stamp), NEW, now + REUSE
        age = _age(option, stamp)
        if age is None or age > LIFETIME or age < -SKEW:
            # one ahead of the window becomes valid once it is within SKEW
            wait = REUSE if age is None or age >= 0 else min(REUSE, -age - SKEW)
            return self._issue(option[:8], address, stamp), INVALID, now + wait
        keys = self._keys
        if _made_with(keys.current, option, address):
            if age < RENEW:
                return HEAD + option, VALID, now + (RENEW - age)
            return self._issue(option[:8], address, stamp), VALID, now + min(REUSE, LIFETIME - age)
        until = keys.previous_until(option, address, now)
        if until is not None:  # replaced, at most until its secret retires
            hold = min(REUSE, LIFETIME - age, until - now)
            return self._issue(option[:8], address, stamp), ROLLOVER, now + hold
        return self._issue(option[:8], address, stamp), INVALID, now + REUSE

    def _issue(self, client_cookie: bytes, address: bytes, stamp: int) -> bytes:
        return HEAD + client_cookie + server_cookie(self._keys.current, client_cookie, address,
                                                    stamp)


@functools.cache
def process_secret() -> bytes:
    """This process's random server secret, used when the config sets none
    (``pinned`` hands it to the worker processes)."""
    return secrets.token_bytes(16)


@functools.lru_cache(maxsize=8)
def _keeper(secret: bytes, previous: tuple[bytes, ...]) -> ServerCookies:
    return ServerCookies(Keys.configured(secret, previous))


def make_cookies(server: Server) -> ServerCookies | None:
    """The keeper of ``server.cookie_secret`` (else of the process's secret)
    and ``server.cookie_secret_previous``, one per such pair in a process, so
    every handler in it agrees; None when ``server.cookies`` is off."""
    if not server.cookies:
        return None
    return _keeper(server.cookie_secret or process_secret(), server.cookie_secret_previous)


def pinned(server: Server) -> Server:
    """``server`` with its cookie secret fixed: the process's random one when
    the config sets none, so worker processes validate this process's cookies."""
    if server.cookie_secret is not None or not server.cookies:
        return server
    return dataclasses.replace(server, cookie_secret=process_secret())
