"""Per-shard probe hysteresis and the final health verdict (SPEC section 4).

``ProbeState`` turns a stream of probe results into up/down with ``rise``
consecutive passes to come up and ``fall`` consecutive failures to go down.
Initial state: *pending* (counts as down). The first result decides at once:
a pass makes the shard up, a failure makes it down. A fresh start therefore
serves a shard as soon as its first probe passes instead of after ``rise``
intervals, and never serves one whose first probe failed.

``judge`` combines everything a verdict depends on into a ``ShardHealth``
with a reason a human can act on. It is pure (``now`` is passed in).
"""

from __future__ import annotations

from config.model import Health
from healthwatch.drains import DrainSet
from healthwatch.model import ClusterReport, ShardHealth, ShardKind, ShardSpec

PENDING_REASON = "probe pending"
TIMES = "\u00d7"  # multiplication sign: "probe failed: connection refused \u00d72"


class ProbeState:
    """Rise/fall state machine of one probed shard."""

    __slots__ = ("_detail", "changed_at", "fails", "fall", "passes", "reason", "rise", "up")

    def __init__(self, rise: int, fall: int) -> None:
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.up: bool | None = None  # None: no result yet
        self.passes = 0
        self.fails = 0
        self.reason = PENDING_REASON
        self.changed_at = 0.0
        self._detail = ""

    def observe(self, ok: bool, detail: str, now: float) -> bool:
        """Record one probe result; True when the verdict or its reason changed.

        The reason is fixed at the transition (the failure count at ``fall``) so a
        shard that stays down does not change (and republish) on every probe.
        """
        if ok:
            self.passes += 1
            self.fails = 0
        else:
            self.fails += 1
            self.passes = 0
        before = (self.up, self.reason)
        if self.up is None:
            self.up = ok
        elif ok and not self.up and self.passes >= self.rise:
            self.up = True
        elif not ok and self.up and self.fails >= self.fall:
            self.up = False
        if self.up:
            self.reason = "probe ok"
        elif not ok and (before[0] is not False or detail != self._detail):
            # newly down, or down for a different cause
            self.reason = f"probe failed: {detail} {TIMES}{self.fails}"
        if not ok:
            self._detail = detail
        changed = (self.up, self.reason) != before
        if changed and self.up != before[0]:
            self.changed_at = now
        return changed

    def health(self) -> ShardHealth:
        return ShardHealth(healthy=bool(self.up), reason=self.reason,
                           probe_up=bool(self.up), changed_at=self.changed_at)


def cluster_unreachable_for(report: ClusterReport | None, grace: float,
                            now: float, kind: ShardKind | None = None) -> str | None:
    """Why a cluster counts as unreachable now for its shards of ``kind`` (None:
    for the cluster as a whole), or None if it counts as reachable."""
    if report is None:
        return "cluster not reported yet"
    if not report.affects(kind):
        return None
    since = report.grace_from
    if since is None:
        return "cluster unreachable (never contacted)"
    age = now - since
    if age <= grace:
        return None
    return f"cluster unreachable for {age:.1f}s (grace {grace:g}s)"


def judge(spec: ShardSpec, report: ClusterReport | None, probe: ShardHealth | None,
          drains: DrainSet, health: Health, now: float) -> ShardHealth:
    """The verdict for one shard: healthy iff every SPEC section 4 rule holds.

    ``probe`` is the probe's ShardHealth (from ``ProbeState.health``), or
    None when the shard has no probe configured; a configured probe that has
    not reported yet counts as down (``probe pending``).
    """
    probe_up: bool | None = None
    if spec.probe is not None:
        probe_up = probe.probe_up if probe is not None and probe.probe_up is not None else False
    changed = probe.changed_at if probe is not None else 0.0

    def bad(reason: str) -> ShardHealth:
        return ShardHealth(False, reason, probe_up, changed)

    drained = drains.reason(spec.cluster, spec.service)
    if drained is not None:
        return bad(drained)
    if not spec.addresses and not spec.hostnames:
        return bad("no load-balancer address")
    if spec.ready < health.min_ready:
        return bad(f"ready endpoints {spec.ready} < min_ready {health.min_ready}")
    unreachable = cluster_unreachable_for(report, health.cluster_grace, now, spec.kind)
    if unreachable is not None and not probe_up:
        return bad(unreachable)
    if spec.probe is not None and not probe_up:
        return bad(probe.reason if probe is not None else PENDING_REASON)
    if spec.probe is not None:
        reason = "probe ok" if unreachable is None else f"probe ok ({unreachable})"
    else:
        reason = "ok"
    return ShardHealth(True, reason, probe_up, changed)
