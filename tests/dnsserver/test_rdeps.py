"""``AnswerTable.rdeps`` (a name -> the names whose answers depend on it) follows
the current dependencies through ``derive``: a CNAME chain that moved away from
a name no longer rebuilds with it, and the answers stay those of a full build."""

from __future__ import annotations

import random
from dataclasses import replace

import dns.message

from dnsserver.answers import AnswerTable, Deps
from dnsserver.names import name_to_wire
from dnsserver.server import DnsServer
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_answers import CLIENTS, _query, _truth, _with_serial

Z = zf.ZONE
A, B, X, Y = (f"{n}.{Z}" for n in ("a", "b", "x", "y"))


def _snap(serial: int, b_to: str, x_ip: str) -> Snapshot:
    """``a`` CNAME ``b`` CNAME ``b_to``; ``x`` and ``y`` hold addresses."""
    base = zf.snapshot(serial=serial)
    extra = (zf.rec(A, "CNAME", B), zf.rec(B, "CNAME", b_to),
             zf.rec(X, "A", x_ip), zf.rec(Y, "A", "192.0.2.62"))
    return _with_serial(replace(base, records=tuple(sorted((*base.records, *extra)))))


def edges(table: AnswerTable) -> dict[bytes, set[bytes]]:
    return {t: set(d) for t, d in table.rdeps.items()}


def forward(rdeps: dict[bytes, Deps]) -> dict[bytes, set[bytes]]:
    out: dict[bytes, set[bytes]] = {}
    for t, deps in rdeps.items():
        for n in deps:
            out.setdefault(n, set()).add(t)
    return out


def serve(server: DnsServer, prev: Snapshot | None, snap: Snapshot, hinted: bool) -> None:
    if hinted and prev is not None:
        snap = replace(snap, changed=frozenset(_truth(prev, snap)), base_serial=prev.serial)
    assert server.update(snap)


def full(snap: Snapshot) -> DnsServer:
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    assert server.update(snap)
    return server


def test_a_chain_that_moved_away_does_not_rebuild_with_its_old_target() -> None:
    """``b`` CNAMEs to ``y`` instead of ``x``: a later change of ``x`` rebuilds
    no more names than it does in a table built after the move (was: ``a`` and
    ``b`` too, on every change of ``x``, for as long as the server ran)."""
    moved = _snap(2, Y, "192.0.2.61")
    x_changed = _snap(3, Y, "192.0.2.63")
    x_again = _snap(4, Y, "192.0.2.64")
    for hinted in (False, True):
        inc = DnsServer(zf.config(), zf.locator(), registry=None)
        start = _snap(1, X, "192.0.2.61")
        serve(inc, None, start, hinted)
        state = inc.handler.state
        assert state is not None
        xw, aw, bw = name_to_wire(X), name_to_wire(A), name_to_wire(B)
        assert {aw, bw} <= edges(state.table)[xw]  # a and b answer with x's records

        serve(inc, start, moved, hinted)
        state = inc.handler.state
        assert state is not None and state.serial == 2
        fresh = full(moved)
        assert fresh.handler.state is not None
        assert edges(state.table) == edges(fresh.handler.state.table)
        assert aw not in edges(state.table).get(xw, set())

        # the same change of x from the incremental table and from a fresh one
        serve(inc, moved, x_changed, hinted)
        serve(fresh, moved, x_changed, hinted)
        state, fstate = inc.handler.state, fresh.handler.state
        assert state is not None and fstate is not None
        assert state.serial == fstate.serial == 3
        assert state.table.stats.rebuilt_names == fstate.table.stats.rebuilt_names, hinted
        serve(inc, x_changed, x_again, hinted)
        state = inc.handler.state
        assert state is not None and state.table.stats.rebuilt_names == \
            fstate.table.stats.rebuilt_names


def test_answers_follow_a_moving_chain_like_a_full_build() -> None:
    """Every step of a chain moving between targets and of those targets
    changing: answers (table maps and reply bytes) and the edges equal those
    of a full build. An edge too many can only cost a rebuild; one too few
    would leave a stale answer, which this would see."""
    steps = [_snap(1, X, "192.0.2.61"), _snap(2, Y, "192.0.2.61"),
             _snap(3, Y, "192.0.2.63"), _snap(4, X, "192.0.2.63"),
             _snap(5, X, "192.0.2.65"), _snap(6, f"nowhere.{Z}", "192.0.2.65"),
             _snap(7, f"nowhere.{Z}", "192.0.2.67"), _snap(8, X, "192.0.2.68")]
    probe = [A, B, X, Y, f"nowhere.{Z}", zf.GLOBAL, Z]
    rng = random.Random(7)
    inc = DnsServer(zf.config(), zf.locator(), registry=None)
    prev: Snapshot | None = None
    for snap in steps:
        serve(inc, prev, snap, hinted=rng.random() < 0.5)
        state = inc.handler.state
        assert state is not None and state.serial == snap.serial
        fresh = full(snap)
        built = fresh.handler.state
        assert built is not None
        assert state.table.questions == built.table.questions, snap.serial
        assert state.table.names == built.table.names, snap.serial
        assert edges(state.table) == edges(built.table), snap.serial
        assert forward(state.table.rdeps) == forward(built.table.rdeps), snap.serial
        for _ in range(100):
            data = _query(rng, probe)
            client = rng.choice(CLIENTS)
            assert inc.handler.handle(data, client, False) == fresh.handler.handle(
                data, client, False), (snap.serial, dns.message.from_wire(data))
        prev = snap
