"""Plans: desired vs current record sets → plain data with a stable order.

A plan lists deletes, then creates, then updates, each sorted by (name, type),
and has a JSON form for dry runs.  ``check_safety`` refuses plans that would
touch too much of what fedns owns (octodns' ``raise_if_unsafe``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from providers.errors import UnsafePlanError
from providers.rrset import RRKey, RRSet, route_json

Action = Literal["delete", "create", "update"]
MIN_EXISTING = 10  # below this many owned record sets the safety check does not apply


@dataclass(frozen=True, slots=True)
class Change:
    action: Action
    before: RRSet | None  # the observed owned set (delete/update)
    after: RRSet | None  # the wanted set (create/update)

    @property
    def rrset(self) -> RRSet:
        rr = self.after if self.after is not None else self.before
        assert rr is not None
        return rr

    @property
    def key(self) -> RRKey:
        return self.rrset.key

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "name": self.key[0], "type": self.key[1]}
        if self.before is not None:
            out["before"] = _state(self.before)
        if self.after is not None:
            out["after"] = _state(self.after)
        return out


def _state(rr: RRSet) -> dict[str, Any]:
    out: dict[str, Any] = {"ttl": rr.ttl, "values": list(rr.values)}
    if rr.routes:
        out["routing"] = rr.policy
        out["routes"] = [route_json(r) for r in rr.routes]
    return out


@dataclass(frozen=True, slots=True)
class Skipped:
    """A wanted record set fedns will not publish, and why."""

    name: str
    rtype: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.rtype, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Plan:
    provider: str
    changes: tuple[Change, ...]
    skipped: tuple[Skipped, ...] = ()
    owned: int = 0  # owned record sets before the plan

    @property
    def empty(self) -> bool:
        return not self.changes

    def of(self, action: Action) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action == action)

    def counts(self) -> dict[str, int]:
        actions: tuple[Action, ...] = ("delete", "create", "update")
        return {a: len(self.of(a)) for a in actions}

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "owned": self.owned,
            "counts": self.counts(),
            "changes": [c.to_json() for c in self.changes],
            "skipped": [s.to_json() for s in self.skipped],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def describe(self) -> str:
        """A human diff: one line per change."""
        c = self.counts()
        lines = [f"provider {self.provider}: {c['delete']} delete, {c['create']} create, "
                 f"{c['update']} update ({self.owned} owned record sets)"]
        for ch in self.changes:
            sign = {"delete": "-", "create": "+", "update": "~"}[ch.action]
            rr = ch.rrset
            vals = rr.show()
            if ch.action == "update" and ch.before is not None:
                vals = f"{ch.before.show()} -> {vals}"
            lines.append(f"  {sign} {rr.name} {rr.ttl} {rr.rtype} {vals}")
        for s in self.skipped:
            lines.append(f"  ! {s.name} {s.rtype} skipped: {s.reason}")
        return "\n".join(lines)


def _cname_clash(key: RRKey, foreign_by_name: Mapping[str, set[str]]) -> str | None:
    types = foreign_by_name.get(key[0], set())
    if not types:
        return None
    if key[1] == "CNAME":
        return f"foreign record sets at this name ({', '.join(sorted(types))})"
    if "CNAME" in types:
        return "a foreign CNAME lives at this name"
    return None


def make_plan(
    provider: str,
    desired: Mapping[RRKey, RRSet],
    owned: Mapping[RRKey, RRSet],
    foreign: frozenset[RRKey] = frozenset(),
    skipped: tuple[Skipped, ...] = (),
) -> Plan:
    """The minimal diff that turns ``owned`` into ``desired``.

    Keys held by foreign data are never planned: wanting one is reported in
    ``skipped`` instead (fedns never shares a record set with foreign data).
    """
    foreign_by_name: dict[str, set[str]] = {}
    for name, rtype in foreign:
        foreign_by_name.setdefault(name, set()).add(rtype)
    skip = list(skipped)
    deletes, creates, updates = [], [], []
    for key in sorted(owned):
        if key not in desired:
            deletes.append(Change("delete", owned[key], None))
    for key in sorted(desired):
        want = desired[key]
        have = owned.get(key)
        if have is None:
            if key in foreign:
                skip.append(Skipped(key[0], key[1], "a foreign record set holds this name/type"))
                continue
            clash = _cname_clash(key, foreign_by_name)
            if clash is not None:
                skip.append(Skipped(key[0], key[1], clash))
                continue
            creates.append(Change("create", None, want))
        elif have != want:
            updates.append(Change("update", have, want))
    return Plan(provider, tuple(deletes + creates + updates),
                tuple(sorted(skip, key=lambda s: (s.name, s.rtype))), len(owned))


def check_safety(
    plan: Plan, max_fraction: float, force: bool = False, *, limit_updates: bool = True
) -> None:
    """Raise UnsafePlanError when the plan updates or deletes too much.

    A delete at a name that the same plan re-creates with another type (an A
    set turning into a CNAME on failover) counts as an update, not a loss.
    ``limit_updates=False`` limits deletes only: the continuous loop inside
    ``fedns serve`` uses it so that a region-wide failover (many value updates
    at names that stay) is published when it is needed most, while a config
    mistake that makes owned names vanish is still refused.
    """
    if force or plan.owned < MIN_EXISTING:
        return
    created_names = {c.key[0] for c in plan.of("create")}
    deletes = [c for c in plan.of("delete") if c.key[0] not in created_names]
    updates = len(plan.of("update")) + len(plan.of("delete")) - len(deletes)
    limit = max_fraction * plan.owned
    reasons = []
    if len(deletes) > limit:
        reasons.append(f"it would delete {len(deletes)} of {plan.owned} owned record sets "
                       f"({100 * len(deletes) / plan.owned:.0f}% > "
                       f"{100 * max_fraction:.0f}%)")
    if limit_updates and updates > limit:
        reasons.append(f"it would update {updates} of {plan.owned} owned record sets "
                       f"({100 * updates / plan.owned:.0f}% > {100 * max_fraction:.0f}%)")
    if reasons:
        raise UnsafePlanError(plan.provider, "; ".join(reasons)
                              + " (max_change_fraction); re-run with --force if intended")
