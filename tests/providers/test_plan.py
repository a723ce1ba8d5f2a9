"""Plans: stable order, minimal diff, foreign keys, safety check."""

from __future__ import annotations

import json

import pytest

from providers.errors import UnsafePlanError
from providers.plan import check_safety, make_plan
from providers.rrset import RRSet, group, make_rrset, normalize, publishable
from tests.providers.helpers import ZONE, fed_snapshot


def rr(name: str, rtype: str, *values: str, ttl: int = 30) -> RRSet:
    return make_rrset(name, rtype, ttl, values)


def as_map(*sets: RRSet) -> dict[tuple[str, str], RRSet]:
    return {s.key: s for s in sets}


@pytest.mark.parametrize(("rtype", "value", "want"), [
    ("A", " 10.0.0.1 ", "10.0.0.1"),
    ("AAAA", "2001:DB8:0:0::1", "2001:db8::1"),
    ("CNAME", "Web.Example", "web.example."),
    ("MX", "10 Mail.Example", "10 mail.example."),
    ("SRV", "1 2 443 T.Example.", "1 2 443 t.example."),
    ("TXT", "hello", '"hello"'),
    ("TXT", '"a b"', '"a b"'),
    ("CAA", '0  issue  "ca.example"', '0 issue "ca.example"'),
])
def test_normalize(rtype: str, value: str, want: str) -> None:
    assert normalize(rtype, value) == want


def test_order_is_delete_create_update_and_sorted() -> None:
    owned = as_map(rr("b.z.", "A", "1.1.1.1"), rr("a.z.", "A", "1.1.1.1"),
                   rr("c.z.", "A", "1.1.1.1"))
    desired = as_map(rr("c.z.", "A", "2.2.2.2"), rr("e.z.", "A", "1.1.1.1"),
                     rr("d.z.", "A", "1.1.1.1"))
    plan = make_plan("p", desired, owned)
    assert [(c.action, c.key[0]) for c in plan.changes] == [
        ("delete", "a.z."), ("delete", "b.z."), ("create", "d.z."), ("create", "e.z."),
        ("update", "c.z.")]
    data = json.loads(plan.to_json())
    assert data["counts"] == {"delete": 2, "create": 2, "update": 1}
    assert data["changes"][4]["before"]["values"] == ["1.1.1.1"]
    assert "~ c.z. 30 A 1.1.1.1 -> 2.2.2.2" in plan.describe()


def test_equal_sets_make_an_empty_plan() -> None:
    view = group(publishable(fed_snapshot().static_view(), ZONE))
    assert make_plan("p", view, dict(view)).empty


def test_foreign_keys_are_skipped_not_planned() -> None:
    desired = as_map(rr("a.z.", "TXT", "x"), rr("b.z.", "CNAME", "t.z."),
                     rr("c.z.", "A", "1.1.1.1"))
    foreign = frozenset({("a.z.", "TXT"), ("b.z.", "TXT"), ("c.z.", "CNAME")})
    plan = make_plan("p", desired, {}, foreign)
    assert plan.empty
    assert [(s.name, s.rtype) for s in plan.skipped] == [
        ("a.z.", "TXT"), ("b.z.", "CNAME"), ("c.z.", "A")]


def test_safety_refuses_mass_delete_and_says_why() -> None:
    owned = as_map(*(rr(f"n{i}.z.", "A", "1.1.1.1") for i in range(10)))
    plan = make_plan("p", {}, owned)
    with pytest.raises(UnsafePlanError) as err:
        check_safety(plan, 0.3)
    assert "delete 10 of 10 owned record sets" in str(err.value)
    assert "--force" in str(err.value)
    check_safety(plan, 0.3, force=True)


def test_safety_counts_type_change_as_update_and_ignores_small_zones() -> None:
    owned = as_map(*(rr(f"n{i}.z.", "A", "1.1.1.1") for i in range(10)))
    desired = dict(owned)
    for i in range(3):  # three A sets turn into CNAMEs: 3 updates = 30 %, allowed
        del desired[(f"n{i}.z.", "A")]
        desired[(f"n{i}.z.", "CNAME")] = rr(f"n{i}.z.", "CNAME", "g.z.")
    check_safety(make_plan("p", desired, owned), 0.3)
    desired[("n3.z.", "A")] = rr("n3.z.", "A", "9.9.9.9")
    with pytest.raises(UnsafePlanError, match="update 4 of 10"):
        check_safety(make_plan("p", desired, owned), 0.3)
    small = as_map(*(rr(f"n{i}.z.", "A", "1.1.1.1") for i in range(9)))
    check_safety(make_plan("p", {}, small), 0.3)


def test_serve_loop_limit_lets_failover_updates_through_but_not_deletes() -> None:
    owned = as_map(*(rr(f"n{i}.z.", "A", "1.1.1.1") for i in range(10)))
    failover = {k: rr(k[0], "A", "2.2.2.2") for k in owned}  # every value moves
    plan = make_plan("p", failover, owned)
    with pytest.raises(UnsafePlanError, match="update 10 of 10"):
        check_safety(plan, 0.3)
    check_safety(plan, 0.3, limit_updates=False)
    with pytest.raises(UnsafePlanError, match="delete 10 of 10"):
        check_safety(make_plan("p", {}, owned), 0.3, limit_updates=False)
