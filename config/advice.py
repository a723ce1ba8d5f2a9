"""Advice on a valid config: the failover budget it implies, and settings that
are legal but usually a mistake.

The loader refuses what cannot work; this module tells the operator what
will work differently from what they probably expect. ``failover_budget``
spells out SPEC section 4 with the config's own numbers (a dead shard stops
being served within ``interval x fall + timeout`` plus at most 100 ms to
publish; providers add their debounce and their API's latency; clients move
within that plus ``ttl``; a lost Kubernetes API takes unprobed shards out
within ``heartbeat_interval + max(cluster_grace, heartbeat_timeout)`` of the
cluster's own knobs (``Config.kube_for``), docs/kubernetes.md 6b).
``warnings`` lists the risky-but-legal settings, each with a stable code,
so ``fedns check`` can print them, ``--strict`` can fail on them and
``fedns serve`` can log them.

Pure: no I/O and nothing from healthwatch, dnsserver or providers. The
config text is optional and used only to find line numbers (the model keeps
none); without it, warnings carry no line. The one check that depends on the
time (``expired-config-drain``) takes it as ``now``, the clock by default.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from config.model import Cluster, Config, Health, Kubernetes, Provider
from config.yamltree import Path, Tree, parse

PUBLISH_BOUND = 0.1  # SPEC section 4: a verdict is published within 100 ms
# ``ttl-dominates-failover``: the TTL counts as much larger than the detection
# time only above both of these (see _ttl_dominates for why).
TTL_RATIO = 10
TTL_FLOOR = 60
UDP_LIMIT = 512  # largest reply to a query without EDNS (RFC 1035 4.2.1)
_HEADER = 12
_RR_FIXED = 2 + 10  # a compression pointer to the question, then type, class, TTL, length

CODES = (
    "grace-below-heartbeat",
    "ttl-dominates-failover",
    "no-fall-hysteresis",
    "no-rise-hysteresis",
    "nxdomain-when-all-unhealthy",
    "max-answers-exceed-512",
    "change-limit-disabled",
    "unprobed-static-shard",
    "cookie-secret-per-process",
    "expired-config-drain",
)


# -- the failover budget ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delay:
    """One way to fail (or recover), in seconds: detection + publish + ttl.

    ``unknown`` names a part that adds to ``total`` but is not known in
    advance (a provider API's latency), or is None.
    """

    failure: str
    detection: float
    detection_formula: str
    publish: float
    publish_formula: str
    ttl: int
    applies_to: tuple[str, ...] = ()  # cluster names (empty: not tied to clusters)
    unknown: str | None = None

    @property
    def total(self) -> float:
        return round(self.detection + self.publish + self.ttl, 3)

    def to_json(self) -> dict[str, object]:
        return {"failure": self.failure, "detection": self.detection,
                "detection_formula": self.detection_formula, "publish": self.publish,
                "publish_formula": self.publish_formula, "ttl": self.ttl,
                "total": self.total, "applies_to": list(self.applies_to),
                "unknown": self.unknown}


@dataclass(frozen=True, slots=True)
class Budget:
    """How long until clients have moved: off a failed shard (``failover``),
    and back onto a recovered one (``recovery``); ``notes`` say what no
    number here covers."""

    failover: tuple[Delay, ...]
    recovery: tuple[Delay, ...]
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"failover": [d.to_json() for d in self.failover],
                "recovery": [d.to_json() for d in self.recovery],
                "notes": list(self.notes)}


def secs(value: float) -> str:
    """``2.5s``: seconds as the config writes them, without float noise."""
    return f"{value:.3f}".rstrip("0").rstrip(".") + "s"


def failover_budget(config: Config) -> Budget:
    """The failover budget of ``config`` (SPEC section 4) in seconds.

    Probe timing has one setting for every probe (the ``health`` block:
    service, Ingress, ``default_probe`` and ``fedns.io/probe`` probes all use
    it), so there is one probe row; each provider that publishes answers adds
    a row with its debounce on top of it.
    """
    h, ttl = config.health, config.ttl
    probed = tuple(c.name for c in config.clusters if _may_probe(c))
    probe = Delay("shard probe fails", _probe_detection(h), _probe_formula(h),
                  PUBLISH_BOUND, secs(PUBLISH_BOUND), ttl, probed)
    rows = [probe]
    api = _api_delay(config)
    if api is not None:
        rows.append(api)
    rows.extend(_via_provider(probe, p) for p in config.providers if not p.delegate)
    recovery = Delay("shard probe passes again", _recovery_detection(h),
                     f"interval {secs(h.interval)} x rise {h.rise} + timeout "
                     f"{secs(h.timeout)}", PUBLISH_BOUND, secs(PUBLISH_BOUND), ttl, probed)
    return Budget(tuple(rows), (recovery,), _budget_notes(config))


def _probe_detection(h: Health) -> float:
    """The fall-th failure after the death is the probe started ``fall``
    intervals later; it is given up on ``timeout`` after it started."""
    return round(h.interval * h.fall + h.timeout, 3)


def _probe_formula(h: Health) -> str:
    return (f"interval {secs(h.interval)} x fall {h.fall} + timeout "
            f"{secs(h.timeout)}")


def _recovery_detection(h: Health) -> float:
    """The rise-th pass is the probe started ``rise`` intervals after the
    recovery; it answers within its ``timeout``."""
    return round(h.interval * h.rise + h.timeout, 3)


def _api_delay(config: Config) -> Delay | None:
    """A hung API server: the next heartbeat goes out within its interval and
    the shards leave ``cluster_grace`` after it was sent, or at its timeout
    if later (docs/kubernetes.md 6b). Shards with a passing probe stay.

    Each cluster has its own heartbeat knobs (its ``kubernetes`` block over
    the top-level one): the row is the bound of them all, so it shows the
    slowest cluster's numbers, and names that cluster when another one is
    faster."""
    kube = [c for c in config.clusters if c.source == "kubernetes"]
    if not kube:
        return None
    g = config.health.cluster_grace
    detections = [_api_detection(config.kube_for(c), g) for c in kube]
    worst = max(detections)
    slowest = [c for c, d in zip(kube, detections, strict=True) if d == worst]
    k = config.kube_for(slowest[0])
    formula = (f"heartbeat_interval {secs(k.heartbeat_interval)} + max(cluster_grace "
               f"{secs(g)}, heartbeat_timeout {secs(k.heartbeat_timeout)})")
    failure = "Kubernetes API lost"
    if len(slowest) < len(kube):
        failure += f", slowest: {', '.join(c.name for c in slowest)}"
    return Delay(failure, worst, formula, PUBLISH_BOUND, secs(PUBLISH_BOUND), config.ttl,
                 tuple(c.name for c in kube))


def _api_detection(k: Kubernetes, grace: float) -> float:
    return round(k.heartbeat_interval + max(grace, k.heartbeat_timeout), 3)


def _via_provider(probe: Delay, p: Provider) -> Delay:
    """A provider syncs ``debounce`` after each new Snapshot, then waits for its API."""
    return Delay(f"shard probe fails, published by provider {p.name}", probe.detection,
                 probe.detection_formula, round(probe.publish + p.debounce, 3),
                 f"{secs(probe.publish)} + debounce {secs(p.debounce)}", probe.ttl,
                 probe.applies_to, f"the {p.type} API's latency")


def _budget_notes(config: Config) -> tuple[str, ...]:
    notes = []
    if any(c.source == "kubernetes" for c in config.clusters):
        notes.append("a lost Kubernetes API takes out only shards without a passing probe "
                     "(a passing probe outranks it)")
    unprobed_kube = [c.name for c in config.clusters
                     if c.source == "kubernetes" and c.default_probe == "none"]
    if unprobed_kube:
        notes.append(f"Kubernetes shards without a probe ({', '.join(unprobed_kube)}: "
                     "default_probe none, no fedns.io/probe annotation) leave when no "
                     "endpoint is ready: as fast as the cluster's readiness probes, which "
                     "this config does not set")
    if any(_unprobed(c) for c in config.clusters):
        notes.append("static shards without a probe never leave by themselves "
                     "(warning unprobed-static-shard)")
    return tuple(notes)


def _may_probe(cluster: Cluster) -> bool:
    """Can any shard of ``cluster`` be probed? Kubernetes objects may carry a
    ``fedns.io/probe`` annotation that only the running source sees."""
    if cluster.source == "kubernetes":
        return True
    return len(_unprobed(cluster)) < len(cluster.services) + len(cluster.ingresses)


def _unprobed(cluster: Cluster) -> list[str]:
    """The static shards of ``cluster`` that nothing probes: no probe of their
    own, and no ``default_probe`` that applies (it needs an address, as
    healthwatch.static_source.default_probe does)."""
    if cluster.source != "static":
        return []
    default = cluster.default_probe != "none"
    shards = [(f"{s.namespace}/{s.name}", s.probe, s.addresses) for s in cluster.services]
    shards += [(f"ingress:{i.namespace}/{i.name}", i.probe, i.addresses)
               for i in cluster.ingresses]
    return [name for name, probe, addrs in shards
            if probe is None and not (default and addrs)]


# -- warnings -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """A legal setting that is usually a mistake: what will happen and what to
    change. ``code`` is stable (scripts and docs use it); ``line`` is 1-based,
    None when unknown."""

    code: str
    message: str
    line: int | None = None

    def log_fields(self) -> str:
        """``code=... line=... message='...'``, the key=value form of the logs."""
        return f"code={self.code} line={self.line or '-'} message={self.message!r}"

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "line": self.line, "message": self.message}


@dataclass(frozen=True, slots=True)
class _Finding:
    """A warning before its line is looked up: the config paths that hold the
    settings involved, the most telling first."""

    code: str
    message: str
    paths: tuple[Path, ...]


def warnings(config: Config, text: str | None = None, *,
             now: float | None = None) -> list[ConfigWarning]:
    """Every warning for ``config``, in ``CODES`` order. ``text`` is the config
    file's text (as loaded), only to give each warning its line; ``now`` (Unix
    time, default: the clock) is the time of the check, for the checks that
    depend on it."""
    tree = parse(text, config.source_path) if text is not None else None
    findings = [f for check in _CHECKS for f in check(config)]
    findings += _expired_config_drain(config, time.time() if now is None else now)
    return [ConfigWarning(f.code, f.message, _line(tree, f.paths)) for f in findings]


def _line(tree: Tree | None, paths: Sequence[Path]) -> int | None:
    """The line of the first of ``paths`` that the config text spells out (a
    default is on no line)."""
    if tree is None:
        return None
    for path in paths:
        pos = tree.keys.get(path) or tree.values.get(path)
        if pos is not None:
            return pos.line
    return None


def _grace_below_heartbeat(config: Config) -> list[_Finding]:
    """docs/kubernetes.md 6b: the grace rides over one slow heartbeat only if
    it outlasts the heartbeat's timeout plus the retry's backoff. Checked per
    cluster (its ``kubernetes`` block may override the top-level one); one
    warning per set of knobs, naming the clusters that have them: the
    top-level block's first, worded as without overrides."""
    grace = config.health.cluster_grace
    groups: dict[tuple[float, float], list[int]] = {}
    for ci, c in enumerate(config.clusters):
        k = config.kube_for(c)
        if c.source == "kubernetes" and grace <= k.heartbeat_timeout + k.backoff_base:
            groups.setdefault((k.heartbeat_timeout, k.backoff_base), []).append(ci)
    top = (config.kubernetes.heartbeat_timeout, config.kubernetes.backoff_base)
    ordered = sorted(groups.items(), key=lambda item: item[0] != top)
    return [_grace_finding(config, pair, cis, own=pair != top) for pair, cis in ordered]


def _grace_finding(config: Config, pair: tuple[float, float], cis: list[int], *,
                   own: bool) -> _Finding:
    """The warning for the clusters ``cis`` whose heartbeat_timeout and
    backoff_base are ``pair``; ``own``: their own ``kubernetes`` blocks make
    the pair, so the warning starts with their names and points at the first
    one's block (else at the top-level settings, worded as without overrides)."""
    timeout, backoff = pair
    grace, bound = config.health.cluster_grace, timeout + backoff
    names = _names([config.clusters[ci].name for ci in cis])
    paths: tuple[Path, ...] = (("health", "cluster_grace"), ("kubernetes", "heartbeat_timeout"),
                               ("kubernetes", "backoff_base"), ("kubernetes",), ("health",))
    setting = (f"kubernetes.heartbeat_timeout {secs(timeout)} + backoff_base {secs(backoff)} "
               f"= {secs(bound)}")
    lead = ""
    if own:
        one = len(cis) == 1
        lead = f"{names}: "
        setting = (f"{'its' if one else 'their'} heartbeat_timeout {secs(timeout)} + "
                   f"backoff_base {secs(backoff)} = {secs(bound)} (set by "
                   f"{'its' if one else 'their'} own kubernetes block over the top-level one)")
        block = ("clusters", cis[0], "kubernetes")
        paths = ((*block, "heartbeat_timeout"), (*block, "backoff_base"), block, *paths)
    return _Finding(
        "grace-below-heartbeat",
        f"{lead}health.cluster_grace {secs(grace)} is not above {setting}: one heartbeat "
        f"slower than its timeout takes the shards of {names} that have no passing probe "
        f"out of DNS before the retry can answer; set cluster_grace above {secs(bound)} "
        "(docs/kubernetes.md 6b)",
        paths)


def _ttl_dominates(config: Config) -> list[_Finding]:
    """Clients move within detection + publish + ttl; a TTL above one minute
    (the usual TTL of DNS failover records) and above ten times the
    detection time makes the cache, not the detection, decide how long
    clients stay on a dead shard. Checked only where probes can run: without
    them there is no detection time to compare with."""
    if not any(_may_probe(c) for c in config.clusters):
        return []
    detection = _probe_detection(config.health)
    limit = max(TTL_FLOOR, math.ceil(TTL_RATIO * detection))
    if config.ttl <= limit:
        return []
    return [_Finding(
        "ttl-dominates-failover",
        f"ttl {config.ttl}s is over {TTL_RATIO} times the probe detection time "
        f"({secs(detection)}) and over {TTL_FLOOR}s: fedns stops serving a dead shard after "
        f"{secs(detection + PUBLISH_BOUND)}, but resolvers keep handing it out from their "
        f"caches for up to {config.ttl}s more; lower ttl to {limit}s or less",
        (("ttl",), ("health", "interval"), ("health", "fall"), ("health",)))]


def _no_fall_hysteresis(config: Config) -> list[_Finding]:
    """SPEC section 4: rise/fall exist so that shards do not flap."""
    h = config.health
    if h.fall != 1 or not any(_may_probe(c) for c in config.clusters):
        return []
    return [_Finding(
        "no-fall-hysteresis",
        "health.fall is 1: a single failed probe (one lost packet, one slow answer) takes "
        "a shard out of DNS and a pass brings it back, so shards flap; set fall to 2 or "
        f"more (detection then takes one interval, {secs(h.interval)}, longer)",
        (("health", "fall"), ("health",)))]


def _no_rise_hysteresis(config: Config) -> list[_Finding]:
    """SPEC section 4: rise/fall exist so that shards do not flap."""
    h = config.health
    if h.rise != 1 or not any(_may_probe(c) for c in config.clusters):
        return []
    return [_Finding(
        "no-rise-hysteresis",
        "health.rise is 1: one passing probe brings a failed shard back, so a backend that "
        "fails now and then flaps in and out of the answers; set rise to 2 or more "
        f"(recovery then takes one interval, {secs(h.interval)}, longer)",
        (("health", "rise"), ("health",)))]


def _nxdomain_when_all_unhealthy(config: Config) -> list[_Finding]:
    """SPEC section 3: nxdomain turns a total outage (or probes failing
    everywhere, say fedns' own network path) into NXDOMAIN, cached by
    resolvers for the SOA minimum, which fedns sets to ``ttl``."""
    if config.health.when_all_unhealthy != "nxdomain":
        return []
    return [_Finding(
        "nxdomain-when-all-unhealthy",
        "health.when_all_unhealthy is nxdomain: when no shard of a name is healthy (also "
        "when the probes fail everywhere because fedns lost its own network path) the name "
        f"answers NXDOMAIN, which resolvers cache for the SOA minimum ({config.ttl}s, the "
        "ttl) and many clients treat as final; serve_all (the default) answers with every "
        "shard instead",
        (("health", "when_all_unhealthy"), ("health",)))]


def _static_addresses(cluster: Cluster) -> list[str]:
    return [a for s in cluster.services for a in s.addresses] + [
        a for i in cluster.ingresses for a in i.addresses]


def fitting_answers(config: Config, rdata_size: int) -> int:
    """How many records of ``rdata_size`` bytes fit in a reply without EDNS
    to the shortest global service name ``a.b.F.svc.Z`` (one-letter service
    and namespace); longer names fit fewer."""
    qname = sum(len(label) + 1 for label in ("a", "b", config.federation, "svc")) \
        + _wire_len(config.zone)
    room = UDP_LIMIT - _HEADER - (qname + 4)
    return room // (_RR_FIXED + rdata_size)


def _wire_len(name: str) -> int:
    """Octets of an absolute name on the wire (labels with length bytes, root)."""
    return sum(len(label) + 1 for label in name.split(".") if label) + 1


def _max_answers_exceed_512(config: Config) -> list[_Finding]:
    """SPEC section 5: a reply that does not fit is sent with TC=1 and the
    client must retry over TCP. AAAA records (16-byte addresses) count when
    IPv6 shards may exist (any Kubernetes cluster, or an IPv6 static
    address); else A records."""
    v6 = any(c.source == "kubernetes" or ":" in "".join(_static_addresses(c))
             for c in config.clusters)
    rtype, size = ("AAAA", 16) if v6 else ("A", 4)
    fit = fitting_answers(config, size)
    n = config.server.max_answers
    if n <= fit:
        return []
    return [_Finding(
        "max-answers-exceed-512",
        f"server.max_answers {n}: a reply with {n} {rtype} records does not fit in "
        f"{UDP_LIMIT} bytes even for the shortest service name (at most {fit} fit), so "
        "resolvers that do not send EDNS get it truncated (TC=1) and must retry over TCP; "
        f"set max_answers to {fit} or less",
        (("server", "max_answers"), ("server",)))]


def _change_limit_disabled(config: Config) -> list[_Finding]:
    """SPEC section 6: syncers refuse plans that delete or update more than a
    threshold; at 1.0 no plan can exceed it."""
    return [_Finding(
        "change-limit-disabled",
        f"provider {p.name}: max_change_fraction {p.max_change_fraction:g} disables the "
        "safety limit, so a mistake that makes every owned record vanish (a wrong zone, "
        "a cluster list emptied) is published as is; set it below 1 (default 0.3) and use "
        "fedns sync --force for intended large changes",
        (("providers", i, "max_change_fraction"), ("providers", i)))
        for i, p in enumerate(config.providers) if p.max_change_fraction >= 1.0]


def _unprobed_static_shard(config: Config) -> list[_Finding]:
    """SPEC section 4: a static cluster is always reachable and its ``ready``
    never changes, so only a probe (or a drain) can take its shard out."""
    out = []
    for ci, cluster in enumerate(config.clusters):
        shards = _unprobed(cluster)
        if not shards:
            continue
        out.append(_Finding(
            "unprobed-static-shard",
            f"cluster {cluster.name}: nothing probes {_names(shards, 'shard')}, so a dead "
            "backend stays in DNS (a static cluster is always reachable) until drained by "
            "hand; give each a probe, or set the cluster's default_probe to http or tcp "
            "(it covers shards with addresses)",
            _shard_paths(ci, cluster, shards)))
    return out


def _cookie_secret_per_process(config: Config) -> list[_Finding]:
    """docs/security.md, DNS Cookies: without ``cookie_secret`` each process
    start makes its own secret (``server.workers`` of one fedns share it).
    Replicas behind one address (the Deployment runs two) then do not accept
    each other's server cookies, and with ``require_server_cookie`` a client
    that moves between them is sent BADCOOKIE and must retry."""
    server = config.server
    if not (server.cookies and server.require_server_cookie) or server.cookie_secret:
        return []
    return [_Finding(
        "cookie-secret-per-process",
        "server.require_server_cookie is on without server.cookie_secret: every fedns "
        "process start makes its own secret, so replicas behind one address reject each "
        "other's server cookies and a client that moves between them (or asks again after "
        "a restart) gets BADCOOKIE and must retry; set the same cookie_secret on every "
        "replica (e.g. ${FEDNS_COOKIE_SECRET} from one Kubernetes Secret)",
        (("server", "require_server_cookie"), ("server",)))]


def _expired_config_drain(config: Config, now: float) -> list[_Finding]:
    """A config drain whose ``until`` has passed drains nothing, yet whoever
    reads the config (or reverts to it) takes the target for drained."""
    out = []
    for i, d in enumerate(config.drains):
        if d.until is None or d.until > now:
            continue
        target = d.cluster if d.service is None else f"{d.cluster}/{d.service}"
        out.append(_Finding(
            "expired-config-drain",
            f"drains[{i}]: the drain of {target} ended at {_utc(d.until)} (its until) and "
            "drains nothing now, though the config still lists it; remove it (or move its "
            "until if the work is not done)",
            (("drains", i, "until"), ("drains", i))))
    return out


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _shard_paths(ci: int, cluster: Cluster, names: Iterable[str]) -> tuple[Path, ...]:
    """Config paths of the first unprobed shard, then of the cluster."""
    first = next(iter(names))
    listed = (("services", [f"{s.namespace}/{s.name}" for s in cluster.services]),
              ("ingresses", [f"ingress:{i.namespace}/{i.name}" for i in cluster.ingresses]))
    for key, shard_names in listed:
        if first in shard_names:
            return (("clusters", ci, key, shard_names.index(first)), ("clusters", ci))
    return (("clusters", ci),)


def _names(names: Sequence[str], what: str = "cluster") -> str:
    """``cluster a``, ``clusters a, b`` or ``5 clusters (a, b, c, ...)``."""
    if len(names) == 1:
        return f"{what} {names[0]}"
    if len(names) <= 3:
        return f"{what}s {', '.join(names)}"
    return f"{len(names)} {what}s ({', '.join(names[:3])}, ...)"


_CHECKS: tuple[Callable[[Config], list[_Finding]], ...] = (
    _grace_below_heartbeat,
    _ttl_dominates,
    _no_fall_hysteresis,
    _no_rise_hysteresis,
    _nxdomain_when_all_unhealthy,
    _max_answers_exceed_512,
    _change_limit_disabled,
    _unprobed_static_shard,
    _cookie_secret_per_process,
)
