"""What the TXT-registry backends (Route53, Cloud DNS) share.

Both list a hosted zone into plain record sets, split them by ownership
markers (``providers.ownership``), refuse the same kinds of names, and group a
plan's changes per name so a name and its marker travel in one request.
Only the wire shapes differ, and those stay in each backend.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from providers import ownership
from providers.backend import Current
from providers.plan import Change, Plan
from providers.rrset import RRKey, RRSet, in_zone


@dataclass(frozen=True, slots=True)
class Observed:
    """Backend-private read state kept in ``Current.raw`` for exact deletes."""

    raw: Mapping[RRKey, Any] = field(default_factory=dict)  # plain sets exactly as listed
    markers: Mapping[RRKey, RRSet] = field(default_factory=dict)  # ours, by marked key

    @staticmethod
    def of(current: Current) -> Observed:
        return current.raw if isinstance(current.raw, Observed) else Observed()


def current(zone: str, plain: Mapping[RRKey, Any], foreign: Collection[RRKey],
            sets: Iterable[RRSet], owner: str) -> Current:
    """``Current`` from listed record sets: ``sets`` are the parsed ``plain`` ones
    (keys in ``foreign`` — shapes fedns never writes — left out)."""
    reg = ownership.split(sets, owner)
    owned = {k: v for k, v in reg.owned.items() if k not in foreign}
    return Current(zone, owned, reg.foreign | frozenset(foreign), Observed(plain, reg.markers))


def refusals(desired: Mapping[RRKey, RRSet], current: Current, zone_kind: str,
             supported: Collection[str] | None = None, service: str = "") -> dict[RRKey, str]:
    """Record sets of ``desired`` that cannot be published in ``current.zone``, with why.

    A set fedns does not own yet whose marker name holds a foreign TXT (a
    verification token, another owner's orphan marker) is refused too: the
    marker could only be written over foreign data.
    """
    zone = current.zone
    out = {}
    for key, rr in desired.items():
        marker = (ownership.marker_name(*key), "TXT")
        if not in_zone(rr.name, zone):
            out[key] = f"outside {zone_kind} {zone}"
        elif supported is not None and rr.rtype not in supported:
            out[key] = f"{service} does not publish {rr.rtype}"
        elif rr.rtype == "NS" and rr.name == zone:
            out[key] = f"the apex NS set belongs to the {zone_kind}"
        elif rr.name.startswith(ownership.PREFIX):
            out[key] = "name collides with the ownership registry"
        elif key not in current.owned and marker in current.foreign:
            out[key] = f"its ownership marker's name {marker[0]} holds a foreign TXT record set"
    return out


def by_name(plan: Plan) -> list[list[Change]]:
    """The plan's changes grouped per name, in plan order."""
    groups: dict[str, list[Change]] = {}
    for ch in plan.changes:
        groups.setdefault(ch.key[0], []).append(ch)
    return list(groups.values())
