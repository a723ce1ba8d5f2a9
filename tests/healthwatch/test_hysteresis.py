"""ProbeState rise/fall tables and the verdict rules of judge()."""

from __future__ import annotations

import pytest

from config.model import Health, TcpProbe
from healthwatch.drains import DrainSet
from healthwatch.hysteresis import PENDING_REASON, ProbeState, cluster_unreachable_for, judge
from healthwatch.model import ClusterReport, ShardHealth, ShardSpec

X = "\u00d7"

# (results as a string of "+"/"-", rise, fall, expected up after each result)
SEQUENCES = [
    ("+", 2, 2, [True]),                       # first pass: up at once
    ("-", 2, 2, [False]),                      # first failure: down at once
    ("+-+-+-", 2, 2, [True] * 6),              # flapping never reaches fall
    ("+--", 2, 2, [True, True, False]),
    ("+---++", 2, 2, [True, True, False, False, False, True]),
    ("-+-++", 2, 2, [False, False, False, False, True]),
    ("+-", 1, 1, [True, False]),
    ("+--+", 3, 3, [True, True, True, True]),
]


@pytest.mark.parametrize(("seq", "rise", "fall", "want"), SEQUENCES)
def test_rise_fall(seq: str, rise: int, fall: int, want: list[bool]) -> None:
    st = ProbeState(rise, fall)
    assert st.up is None and st.reason == PENDING_REASON
    got = []
    for i, ch in enumerate(seq):
        st.observe(ch == "+", "ok" if ch == "+" else "connection refused", float(i))
        got.append(st.up)
    assert got == want


def test_reason_fixed_at_transition_and_changes_only_on_new_cause() -> None:
    st = ProbeState(2, 2)
    assert st.observe(True, "ok", 1.0) is True
    assert st.health() == ShardHealth(True, "probe ok", True, 1.0)
    assert st.observe(False, "connection refused", 2.0) is False  # still up (1 < fall)
    assert st.observe(False, "connection refused", 3.0) is True
    assert st.reason == f"probe failed: connection refused {X}2"
    assert st.changed_at == 3.0
    # staying down for the same cause changes nothing (no republish per probe)
    assert st.observe(False, "connection refused", 4.0) is False
    assert st.reason == f"probe failed: connection refused {X}2"
    # a different cause is news
    assert st.observe(False, "timeout after 0.5s", 5.0) is True
    assert st.reason == f"probe failed: timeout after 0.5s {X}4"
    assert st.observe(True, "ok", 6.0) is False  # 1 < rise
    assert st.observe(True, "ok", 7.0) is True
    assert st.health() == ShardHealth(True, "probe ok", True, 7.0)


H = Health(min_ready=1, cluster_grace=3.0)
PROBE = TcpProbe("192.0.2.1", 80)
NOW = 100.0


def spec(**kw: object) -> ShardSpec:
    base: dict[str, object] = dict(cluster="c", kind="service", namespace="ns", name="s",
                                   addresses=("192.0.2.1",), ready=1)
    base.update(kw)
    return ShardSpec(**base)  # type: ignore[arg-type]


OK_REPORT = ClusterReport("c", ())
LOST = ClusterReport("c", (), reachable=False, last_contact=NOW - 4.1)
FRESH_LOST = ClusterReport("c", (), reachable=False, last_contact=NOW - 2.0)
PUP = ShardHealth(True, "probe ok", probe_up=True)
PDOWN = ShardHealth(False, f"probe failed: HTTP 503 {X}2", probe_up=False)

VERDICTS = [
    ("plain ok", spec(), OK_REPORT, None, DrainSet(), (True, "ok")),
    ("cluster drained", spec(), OK_REPORT, None, DrainSet(frozenset({"c"})),
     (False, "cluster drained")),
    ("shard drained", spec(), OK_REPORT, None, DrainSet(shards=frozenset({("c", "ns/s")})),
     (False, "shard drained")),
    ("no address", spec(addresses=()), OK_REPORT, None, DrainSet(),
     (False, "no load-balancer address")),
    ("hostname is an address", spec(addresses=(), hostnames=("lb.example.net",)), OK_REPORT,
     None, DrainSet(), (True, "ok")),
    ("not ready", spec(ready=0), OK_REPORT, None, DrainSet(),
     (False, "ready endpoints 0 < min_ready 1")),
    ("unreachable past grace", spec(), LOST, None, DrainSet(),
     (False, "cluster unreachable for 4.1s (grace 3s)")),
    ("unreachable within grace", spec(), FRESH_LOST, None, DrainSet(), (True, "ok")),
    ("never contacted", spec(), ClusterReport("c", (), reachable=False), None, DrainSet(),
     (False, "cluster unreachable (never contacted)")),
    ("probe up outranks lost API", spec(probe=PROBE), LOST, PUP, DrainSet(),
     (True, "probe ok (cluster unreachable for 4.1s (grace 3s))")),
    ("probe down", spec(probe=PROBE), OK_REPORT, PDOWN, DrainSet(),
     (False, f"probe failed: HTTP 503 {X}2")),
    ("probe pending", spec(probe=PROBE), OK_REPORT, None, DrainSet(),
     (False, PENDING_REASON)),
    ("drain beats a passing probe", spec(probe=PROBE), OK_REPORT, PUP,
     DrainSet(frozenset({"c"})), (False, "cluster drained")),
]


@pytest.mark.parametrize(("what", "s", "report", "probe", "drains", "want"), VERDICTS,
                         ids=[v[0] for v in VERDICTS])
def test_judge(what: str, s: ShardSpec, report: ClusterReport, probe: ShardHealth | None,
               drains: DrainSet, want: tuple[bool, str]) -> None:
    v = judge(s, report, probe, drains, H, NOW)
    assert (v.healthy, v.reason) == want
    assert v.probe_up == (None if s.probe is None else bool(probe and probe.probe_up))


def test_cluster_unreachable_for() -> None:
    assert cluster_unreachable_for(None, 3.0, NOW) == "cluster not reported yet"
    assert cluster_unreachable_for(OK_REPORT, 3.0, NOW) is None
    assert cluster_unreachable_for(FRESH_LOST, 3.0, NOW) is None
    assert cluster_unreachable_for(FRESH_LOST, 1.0, NOW) == (
        "cluster unreachable for 2.0s (grace 1s)")
