"""Response-rate limiting (RRL) for UDP replies, in the style of BIND and Knot.

A reflection attack sends small queries with a victim's spoofed source and
lets the server answer the victim. RRL counts *responses* per account and
limits an account that answers faster than ``rate`` per second:

- an account is (client prefix, response class): the client's IPv4 /24 or
  IPv6 /56, and the class of the reply — a positive answer is keyed by
  (qname, qtype), NXDOMAIN and NODATA each by the zone (one account per
  prefix: we serve one zone), every error rcode (REFUSED, FORMERR, ...) by
  the prefix alone;
- each account is a token bucket: ``rate`` tokens a second, at most ``rate``
  banked; a reply costs one token. Below zero the reply is limited, and the
  debt may grow to ``rate * window``, so a client that keeps flooding stays
  limited and one that stops is served again after at most ``window`` seconds;
- of the limited replies, every ``slip``-th is sent as an empty TC=1 reply
  (question only) so a real client behind that prefix retries over TCP; the
  rest are dropped. ``slip`` 0 drops all, 1 slips all;
- accounts live in a fixed-size table (least recently used evicted), so a
  flood from spoofed random sources costs bounded memory.

TCP replies are never limited (a TCP client cannot spoof its address), and
neither is a UDP reply to a query whose DNS Cookie proves its source address
(a valid server cookie, RFC 7873; decided by ``wrap``'s ``exempt``), as in
BIND. The exemption is asked only of a reply that would be limited, so it
costs other replies nothing: such a reply passes and leaves its account as
it was (the tokens it finds are spent as any reply's, so its traffic still
counts against its prefix while the account is in credit).
The limiter wraps a transport ``Handle`` (``wrap``); it knows only reply bytes
and, for the exemption, the query bytes.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from config.model import Server

log = logging.getLogger("dnsserver.rrl")

Handle = Callable[[bytes, str, bool], "bytes | None"]
Clock = Callable[[], float]
Exempt = Callable[[bytes, str], bool]  # (query, client) -> never limited

DEFAULT_WINDOW = 15.0
DEFAULT_TABLE_SIZE = 65536

# response classes (second half of an account key)
ERROR = b"\x00err"
NXDOMAIN = b"\x00nx"
NODATA = b"\x00nodata"


def client_prefix(client: str, v4_bits: int = 24, v6_bits: int = 56) -> str | bytes:
    """The account prefix of a socket address (text); any hashable value."""
    if ":" not in client or "." in client:  # IPv4, or IPv4-mapped IPv6 (::ffff:a.b.c.d)
        if v4_bits == 24:
            return client.rpartition(".")[0]
        try:
            raw = socket.inet_aton(client.rpartition(":")[2])
        except OSError:
            return client
        return (int.from_bytes(raw, "big") >> (32 - v4_bits)).to_bytes(4, "big")
    try:
        raw = socket.inet_pton(socket.AF_INET6, client.partition("%")[0])
    except OSError:
        return client
    if v6_bits % 8 == 0:
        return raw[:v6_bits // 8]
    return (int.from_bytes(raw, "big") >> (128 - v6_bits)).to_bytes(16, "big")


def response_class(reply: bytes) -> tuple[bytes, int]:
    """(class key, end of the question) of a reply; end 12 when it has none."""
    if len(reply) < 12 or reply[4:6] != b"\x00\x01":
        return ERROR, 12
    rcode = reply[3] & 0x0F
    n = len(reply)
    i = 12
    while i < n and reply[i]:
        if reply[i] & 0xC0:  # our replies never compress the question
            return ERROR, 12
        i += 1 + reply[i]
    end = i + 5
    if end > n:
        return ERROR, 12
    if rcode == 3:
        return NXDOMAIN, end
    if rcode:
        return ERROR, end
    if reply[6:8] == b"\x00\x00" and not reply[2] & 0x02:
        return NODATA, end
    return reply[12:end - 2].lower(), end  # name and qtype (0x20 folded)


def slip_reply(reply: bytes, end: int) -> bytes:
    """The reply cut to its header and question, with TC=1."""
    qd = b"\x00\x01" if end > 12 else b"\x00\x00"
    return (reply[:2] + bytes((reply[2] | 0x02, reply[3])) + qd + b"\x00\x00\x00\x00\x00\x00"
            + reply[12:end])


class ResponseRateLimiter(Collector):
    """Token buckets per (client prefix, response class); see the module doc."""

    def __init__(self, *, rate: int, slip: int = 2, window: float = DEFAULT_WINDOW,
                 table_size: int = DEFAULT_TABLE_SIZE, ipv4_prefix: int = 24,
                 ipv6_prefix: int = 56, clock: Clock = time.monotonic,
                 registry: CollectorRegistry | None = None) -> None:
        self.configure(rate, slip, window)
        self.table_size = max(1, table_size)
        self.v4 = ipv4_prefix
        self.v6 = ipv6_prefix
        self.clock = clock
        # key -> [balance, last update, limited replies so far]
        self.table: OrderedDict[tuple[str | bytes, bytes], list[float]] = OrderedDict()
        self.passed = 0
        self.dropped = 0
        self.slipped = 0
        self.evicted = 0
        self.exempted = 0
        if registry is not None:
            registry.register(self)

    def configure(self, rate: int, slip: int, window: float) -> None:
        """Set the limits (at start, and by a reload: the accounts are kept)."""
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.slip = max(0, slip)
        self.floor = -self.rate * max(window, 1.0 / self.rate)

    def check(self, reply: bytes, client: str, query: bytes = b"",
              exempt: Exempt | None = None) -> bytes | None:
        """``reply`` if within the rate; else a TC=1 slip reply or None (drop),
        unless ``exempt(query, client)`` says the source is proven: then
        ``reply``, its account neither charged nor counted as limited."""
        cls, end = response_class(reply)
        key = (client_prefix(client, self.v4, self.v6), cls)
        now = self.clock()
        table = self.table
        acct = table.get(key)
        if acct is None:
            if len(table) >= self.table_size:
                table.popitem(last=False)
                self.evicted += 1
            table[key] = [self.rate - 1.0, now, 0.0]
            self.passed += 1
            return reply
        table.move_to_end(key)
        balance = acct[0] + (now - acct[1]) * self.rate
        if balance > self.rate:
            balance = self.rate
        balance -= 1.0
        acct[1] = now
        if balance >= 0.0:
            acct[0] = balance
            self.passed += 1
            return reply
        if exempt is not None and exempt(query, client):
            acct[0] = balance + 1.0  # the refill, and no charge
            self.exempted += 1
            return reply
        acct[0] = balance if balance > self.floor else self.floor
        acct[2] += 1.0
        if self.slip and not int(acct[2]) % self.slip:
            self.slipped += 1
            return slip_reply(reply, end)
        self.dropped += 1
        return None

    def wrap(self, handle: Handle, exempt: Exempt | None = None) -> Handle:
        """``handle`` with its UDP replies rate-limited (TCP replies pass, and
        those whose query ``exempt`` proves: a valid DNS Cookie)."""
        check = self.check

        def limited(data: bytes, client: str, tcp: bool) -> bytes | None:
            out = handle(data, client, tcp)
            if out is None or tcp:
                return out
            return check(out, client, data, exempt)

        return limited

    # -- metrics -----------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        fam = CounterMetricFamily("fedns_dns_rrl", "UDP replies limited by response-rate "
                                  "limiting (exempted: passed, the query had a valid DNS "
                                  "Cookie)", labels=["action"])
        fam.add_metric(["dropped"], float(self.dropped))
        fam.add_metric(["slipped"], float(self.slipped))
        fam.add_metric(["exempted"], float(self.exempted))
        yield fam
        yield GaugeMetricFamily("fedns_dns_rrl_accounts", "RRL accounts in the table",
                                value=float(len(self.table)))


def make_rrl(server: Server, registry: CollectorRegistry | None) -> ResponseRateLimiter | None:
    """The limiter ``server`` configures, or None when RRL is off (rate 0)."""
    if server.rrl_responses_per_second <= 0:
        return None
    log.info("rrl_enabled rate=%d slip=%d window=%s", server.rrl_responses_per_second,
             server.rrl_slip, server.rrl_window)
    return ResponseRateLimiter(rate=server.rrl_responses_per_second, slip=server.rrl_slip,
                               window=server.rrl_window, registry=registry)
