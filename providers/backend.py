"""The narrow seam between the sync loop and one DNS service.

A backend reads what is there (``read``), applies a plan (``apply``) and says
which record sets it cannot represent (``unsupported``).  Everything else —
planning, safety, retries, debouncing, metrics — lives in the syncer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from providers.plan import Plan
from providers.rrset import RRKey, RRSet


@dataclass(frozen=True, slots=True)
class Current:
    """What a read found: owned record sets, keys held by someone else."""

    zone: str  # the zone the backend writes into (absolute)
    owned: Mapping[RRKey, RRSet]
    foreign: frozenset[RRKey] = frozenset()
    raw: object = None  # backend-private observed state (exact deletes, markers)


@dataclass(frozen=True, slots=True)
class RecordError:
    """A change the service rejected for good; the rest of the plan proceeded."""

    name: str
    rtype: str
    action: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "type": self.rtype, "action": self.action,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int = 0  # changes (record sets) that went through
    errors: tuple[RecordError, ...] = field(default=())
    requests: int = 0  # write requests sent


class Backend(Protocol):
    name: str  # provider name (logs, metrics)
    kind: str  # provider type

    async def read(self) -> Current:
        """Observe the zone; raises TransientError / PermanentError."""
        ...

    def check(self, desired: Mapping[RRKey, RRSet], current: Current) -> dict[RRKey, str]:
        """Record sets of ``desired`` that cannot be published here, with why."""
        ...

    async def apply(self, plan: Plan, current: Current) -> ApplyResult:
        """Apply ``plan``; raises ConflictError when the zone changed under it."""
        ...

    async def close(self) -> None: ...
