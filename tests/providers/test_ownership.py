"""The TXT ownership registry."""

from __future__ import annotations

import pytest

from providers import ownership
from providers.rrset import make_rrset


@pytest.mark.parametrize("name", ["www.z.", "*.apps.z.", "z."])
def test_marker_round_trip(name: str) -> None:
    m = ownership.marker((name, "A"), "fedns", 300)
    assert m.rtype == "TXT"
    assert m.name != name
    assert ownership.marked_key(m) == ((name, "A"), "fedns")


def test_split_owned_foreign_and_hidden_markers() -> None:
    ours = make_rrset("a.z.", "A", 30, ["1.1.1.1"])
    theirs = make_rrset("b.z.", "A", 30, ["2.2.2.2"])
    other_owner = make_rrset("c.z.", "A", 30, ["3.3.3.3"])
    broken = make_rrset("d.z.", "A", 30, ["4.4.4.4"])
    same_name_txt = make_rrset("a.z.", "TXT", 30, ['"foreign"'])
    observed = [
        ours, theirs, other_owner, broken, same_name_txt,
        ownership.marker(ours.key, "fedns", 300),
        ownership.marker(other_owner.key, "someone-else", 300),
        make_rrset(ownership.marker_name("d.z.", "A"), "TXT", 300, ['"heritage=fedns,garbage"']),
    ]
    reg = ownership.split(observed, "fedns")
    assert dict(reg.owned) == {ours.key: ours}
    assert set(reg.markers) == {ours.key}
    assert {theirs.key, other_owner.key, broken.key, same_name_txt.key} <= reg.foreign
    assert ownership.marker(ours.key, "fedns", 300).key not in reg.foreign
