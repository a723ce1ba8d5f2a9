"""Prometheus metrics of the DNS server, cheap enough for the query path.

The query path only bumps plain ints in dicts (no locks, no label lookups);
a custom collector turns them into metric families at scrape time. Request
duration and response size are sampled into fixed buckets: about one query a
second, and at most 1 in ``sample_every`` (1024 by default) on a busy server
(``QueryHandler._timed``). A timed query costs several microseconds more than
another when the CPU's caches are cold after an idle gap (the handler runs
once more around it and fills two histograms): with 1 in 32, the timed 3 % of
queries were the handler's p97 and above in ``bench/handler_bench.py --cold``
(p98 19 us against 9 us at 1 in 256); at 1 in 256 a timed query took 17.7 us
there against 5.9 for the others, and the timed 0.4 % were still the top of
the handler's p99 band. At 1 in 1024 they are 0.1 %, above the p99.9.
Every label is a bounded set:
``qtype`` is one of ``QTYPES`` or ``other``, ``rcode`` one of ``RCODES`` or
``other``, ``locality_kind`` one of ``LOCALITY_KINDS``; the transfer counter's
``proto`` one of ``XFR_PROTOS`` and ``result`` one of ``XFR_RESULTS``.

``fedns_dns_notify_total{target, result}`` (``DnsMetrics.notify``, a
``NotifyCounts``): outbound NOTIFY per ``server.also_notify`` target (a
bounded, configured set) and ``result`` one of ``NOTIFY_RESULTS``.

``fedns_dns_xfr_total`` (``DnsMetrics.transfers``, a ``TransferCounts``)
has two writers: the TCP transfers (``xfr.XfrResponder``, given that object
by the server) and the IXFR queries over UDP (the query handler).

``fedns_dns_cookies_total{result}`` (``DnsMetrics.cookies``): queries with a
COOKIE option by what their server cookie was, ``result`` one of
``COOKIE_RESULTS`` (every one from zero); counted by the query handler, once
per query whichever path answers it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from healthwatch.metrics import PlainHistogram

QTYPES: dict[int, str] = {
    1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
    33: "SRV", 43: "DS", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS", 251: "IXFR", 252: "AXFR",
    255: "ANY", 257: "CAA",
}
RCODES: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    16: "BADVERS", 23: "BADCOOKIE",
}
LOCALITY_KINDS = ("none", "unknown", "zone", "region", "cluster", "other")
XFR_PROTOS = ("tcp", "udp")
XFR_RESULTS = ("ok", "refused", "unsigned", "notauth", "formerr", "servfail")
# outbound NOTIFY: answered NOERROR, REFUSED, NOTIMP, another rcode; no answer in time;
# no socket to the target (e.g. no route); a signed NOTIFY answered, but never with a
# reply whose TSIG verifies (bad_tsig) or only with the secondary's TSIG error
# (BADKEY, BADSIG, BADTIME: tsig_error)
NOTIFY_RESULTS = ("acknowledged", "refused", "notimp", "other_rcode", "timeout", "send_failed",
                  "bad_tsig", "tsig_error")
# a COOKIE option with: a client cookie alone; a valid server cookie; one
# valid under a previous secret (server.cookie_secret_previous, or the secret
# a reload replaced: proven, and replaced by a cookie of the current secret);
# an invalid one (forged, expired, an unknown secret, another address); a
# length RFC 7873 refuses (FORMERR)
COOKIE_RESULTS = ("new", "valid", "rollover", "invalid", "malformed")
DROP_REASONS = ("short_header", "qr_set", "malformed", "tcp_limit", "tcp_idle", "send_failed")
DURATION_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                    0.005, 0.01, 0.025, 0.05, 0.1)
SIZE_BUCKETS = (64.0, 128.0, 256.0, 512.0, 1024.0, 1232.0, 1500.0, 4096.0, 16384.0, 65535.0)


def qtype_label(qtype: int) -> str:
    return QTYPES.get(qtype, "other")


def rcode_label(rcode: int) -> str:
    return RCODES.get(rcode, "other")


def locality_kind(locality: str | None) -> str:
    """``None``: the answer did not depend on locality."""
    if locality is None:
        return "none"
    if locality == "":
        return "unknown"
    kind = locality.partition(":")[0]
    return kind if kind in LOCALITY_KINDS else "other"


class PairCounts:
    """A counter family with two labels, kept as a plain dict of counts and
    exported by ``DnsMetrics``'s collect (``NAME``, ``HELP``, ``LABELS``)."""

    NAME = ""
    HELP = ""
    LABELS: tuple[str, str] = ("", "")

    def __init__(self, keys: Iterable[tuple[str, str]] = ()) -> None:
        self.counts: dict[tuple[str, str], int] = dict.fromkeys(keys, 0)

    def count(self, first: str, second: str) -> None:
        self.counts[(first, second)] = self.counts.get((first, second), 0) + 1

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily(self.NAME, self.HELP, labels=list(self.LABELS))
        for key, n in sorted(self.counts.items()):
            fam.add_metric(list(key), float(n))
        return fam


class TransferCounts(PairCounts):
    """``fedns_dns_xfr_total{proto, result}``: zone transfer requests (AXFR and
    IXFR over TCP, IXFR over UDP) by how they were answered, every pair from
    zero. One writer per proto (the event loop for TCP, the UDP thread for
    UDP), each bumping only its own keys; ``DnsMetrics`` collects it."""

    NAME = "fedns_dns_xfr"
    HELP = "Zone transfer requests (AXFR/IXFR over TCP, IXFR over UDP)"
    LABELS = ("proto", "result")

    def __init__(self) -> None:
        super().__init__((proto, result) for proto in XFR_PROTOS for result in XFR_RESULTS)


class NotifyCounts(PairCounts):
    """``fedns_dns_notify_total{target, result}``: outbound NOTIFY messages
    (one per target per new serial, retransmissions not counted again) by how
    they ended (``NOTIFY_RESULTS``). Written on the event loop only
    (``notify.Notifier``)."""

    NAME = "fedns_dns_notify"
    HELP = "Outbound NOTIFY (RFC 1996) per target by outcome"
    LABELS = ("target", "result")


class CookieCounts:
    """``fedns_dns_cookies_total{result}``: see the module doc. Plain ints
    bumped by the query path (the UDP threads and the event loop; a lost
    increment under a thread switch is the price of no lock, as elsewhere)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COOKIE_RESULTS, 0)

    def count(self, result: str) -> None:
        self.counts[result] = self.counts.get(result, 0) + 1

    def family(self) -> CounterMetricFamily:
        fam = CounterMetricFamily("fedns_dns_cookies", "Queries with a DNS COOKIE option by "
                                  "what their server cookie was", labels=["result"])
        for result, n in self.counts.items():
            fam.add_metric([result], float(n))
        return fam


class DnsMetrics(Collector):
    """All ``fedns_dns_*`` metrics; register with ``DnsMetrics(registry)``."""

    def __init__(self, registry: CollectorRegistry | None, *, sample_every: int = 1024) -> None:
        self.sample_every = max(1, sample_every)
        self.requests: dict[tuple[str, int, int, str], int] = {}
        # (proto, rcode, locality kind) -> qtype -> count: the fast path's
        # counters, handed out by ``counters`` (no tuple per query)
        self.by_qtype: dict[tuple[str, int, str], dict[int, int]] = {}
        self._pairs: dict[tuple[int, str], tuple[dict[int, int], dict[int, int]]] = {}
        self.truncated: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.errors = 0
        self.table_builds = 0
        self.last_build_seconds = 0.0
        self.durations: dict[str, PlainHistogram] = {}
        self.sizes: dict[str, PlainHistogram] = {}
        self.transfers = TransferCounts()  # TCP transfers and IXFR over UDP
        self.notify = NotifyCounts()  # outbound NOTIFY (the parent process only)
        self.cookies = CookieCounts()  # queries with a COOKIE option, by result
        if registry is not None:
            registry.register(self)

    # -- query path ----------------------------------------------------------

    def request(self, proto: str, qtype: int, rcode: int, kind: str) -> None:
        key = (proto, qtype, rcode, kind)
        self.requests[key] = self.requests.get(key, 0) + 1

    def counters(self, rcode: int, kind: str) -> tuple[dict[int, int], dict[int, int]]:
        """The qtype -> count dicts of (rcode, kind) for UDP and for TCP (index
        by ``tcp``), for a caller that bumps ``counter[qtype]`` itself (one
        writer per proto: the UDP thread, the event loop)."""
        pair = self._pairs.get((rcode, kind))
        if pair is None:
            pair = self._pairs[(rcode, kind)] = (
                self.by_qtype.setdefault(("udp", rcode, kind), {}),
                self.by_qtype.setdefault(("tcp", rcode, kind), {}))
        return pair

    def totals(self) -> dict[tuple[str, int, int, str], int]:
        """Queries answered per (proto, qtype, rcode, locality kind)."""
        out = dict(self.requests)
        for (proto, rcode, kind), per in list(self.by_qtype.items()):
            for qtype, n in list(per.items()):
                key = (proto, qtype, rcode, kind)
                out[key] = out.get(key, 0) + n
        return out

    def observe(self, proto: str, seconds: float, size: int) -> None:
        hist = self.durations.get(proto)
        if hist is None:
            hist = self.durations[proto] = PlainHistogram(DURATION_BUCKETS)
            self.sizes[proto] = PlainHistogram(SIZE_BUCKETS)
        hist.observe(seconds)
        self.sizes[proto].observe(float(size))

    def truncate(self, proto: str) -> None:
        self.truncated[proto] = self.truncated.get(proto, 0) + 1

    def drop(self, reason: str) -> None:
        reason = reason if reason in DROP_REASONS else "malformed"
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def error(self) -> None:
        self.errors += 1

    # -- scrape ----------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        req = CounterMetricFamily("fedns_dns_requests", "DNS queries answered",
                                  labels=["proto", "qtype", "rcode", "locality_kind"])
        merged: dict[tuple[str, str, str, str], int] = {}
        for (proto, qtype, rcode, kind), n in self.totals().items():
            k = (proto, qtype_label(qtype), rcode_label(rcode), kind)
            merged[k] = merged.get(k, 0) + n
        for labels, n in sorted(merged.items()):
            req.add_metric(list(labels), float(n))
        yield req
        trunc = CounterMetricFamily("fedns_dns_truncated", "UDP replies sent with TC=1",
                                    labels=["proto"])
        for proto, n in sorted(self.truncated.items()):
            trunc.add_metric([proto], float(n))
        yield trunc
        drop = CounterMetricFamily("fedns_dns_dropped", "Packets dropped without a reply",
                                   labels=["reason"])
        for reason, n in sorted(self.dropped.items()):
            drop.add_metric([reason], float(n))
        yield drop
        yield CounterMetricFamily("fedns_dns_internal_errors",
                                  "Unexpected exceptions answered with SERVFAIL",
                                  value=float(self.errors))
        dur = HistogramMetricFamily("fedns_dns_request_duration_seconds",
                                    "Time to answer a query (sampled)", labels=["proto"])
        size = HistogramMetricFamily("fedns_dns_response_size_bytes",
                                     "Size of replies (sampled)", labels=["proto"])
        for proto in sorted(self.durations):
            self.durations[proto].family("", "", [], [proto], dur)
            self.sizes[proto].family("", "", [], [proto], size)
        yield dur
        yield size
        yield CounterMetricFamily("fedns_dns_answer_table_builds",
                                  "Answer tables built from Snapshots",
                                  value=float(self.table_builds))
        yield self.transfers.family()
        yield self.notify.family()
        yield self.cookies.family()
