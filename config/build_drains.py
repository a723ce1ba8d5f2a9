"""The top-level ``drains`` list: drains that every replica loading the config applies.

A drain done through the HTTP API lives in one fedns process; the config is
what every replica of a Deployment loads alike, so a drain declared here is
the same on all of them, survives a pod rescheduled with an empty state dir,
and is reviewed like any other change. An entry names its target as the drain
API does (``cluster`` alone, or with ``service`` as ``NAMESPACE/NAME``,
``ingress:NAMESPACE/NAME`` or ``httproute:NAMESPACE/NAME``) and may give a
``reason`` (the API's rules) and an ``until``: an RFC 3339 time with a
timezone after which it drains nothing.

Mistakes are problems at their line rather than drains of nothing: a cluster
not in ``clusters`` (the API answers 404 for it), a malformed target, the same
target twice, an ``until`` without a timezone (whose instant would depend on
the replica's clock settings).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from config.model import ConfigDrain, check_drain_reason, split_service
from config.node import Node
from config.yamltree import Path

# RFC 3339 section 5.6 date-time: full-date "T" full-time, the offset required
# (lower case and a space for "T" are allowed by its notes)
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_EXAMPLE = "e.g. 2026-11-25T06:00:00Z"
_KEYS = ("cluster", "service", "reason", "until")


def drains(root: Node) -> tuple[ConfigDrain, ...]:
    """Every well-formed entry of ``drains``; each problem reported at its line."""
    known = {name for n in root.nodes("clusters") if (name := n.text("name")) is not None}
    out: list[ConfigDrain] = []
    first: dict[tuple[str, str | None], Path] = {}
    for node in root.nodes("drains"):
        drain = _entry(node, known)
        if drain is None:
            continue
        key = (drain.cluster, drain.service)
        if key in first:
            line = node.ctx.tree.pos(first[key]).line
            node.ctx.error(node.path, f"the drain of {_target(drain)} is listed twice "
                                      f"(first at line {line})")
            continue
        first[key] = node.path
        out.append(drain)
    return tuple(out)


def _entry(node: Node, known: set[str]) -> ConfigDrain | None:
    """One entry, or None when any part of it is wrong (every part is checked,
    so one run reports them all)."""
    problems = node.ctx.tree.problems
    before = len(problems)
    cluster = _cluster(node, known)
    drain = ConfigDrain(cluster or "", _service(node), _reason(node), _until(node))
    shaped = all(node.ctx.ok(node.at(key)) for key in _KEYS)  # else the schema said why
    return drain if cluster is not None and shaped and len(problems) == before else None


def _cluster(node: Node, known: set[str]) -> str | None:
    name = node.text("cluster")
    if name is not None and name not in known:
        listed = ", ".join(sorted(known)) or "none"
        node.ctx.error(node.at("cluster"), f"unknown cluster {name!r} (configured: {listed}); "
                                           "a drain must name a cluster in 'clusters'")
        return None
    return name


def _service(node: Node) -> str | None:
    """The target text; None for the whole cluster (or when it is malformed)."""
    text = node.text("service")
    if text is None:
        return None
    try:
        split_service(text)
    except ValueError as exc:
        node.ctx.error(node.at("service"), str(exc))
        return None
    return text


def _reason(node: Node) -> str:
    raw = node.raw("reason")
    if raw is None:
        return ""
    try:
        return check_drain_reason(raw)
    except ValueError as exc:
        node.ctx.error(node.at("reason"), str(exc))
        return ""


def _until(node: Node) -> float | None:
    """``until`` as Unix time; None when absent (or not usable).

    YAML turns an unquoted ``2026-11-25T06:00:00Z`` into a datetime and a
    quoted one stays text: both are accepted, with their timezone.
    """
    raw = node.raw("until")
    if raw is None:
        return None
    moment = _moment(raw)
    if isinstance(moment, str):
        node.ctx.error(node.at("until"), moment)
        return None
    return moment.timestamp()


def _moment(raw: object) -> datetime | str:
    """The aware datetime ``raw`` stands for, or what is wrong with it."""
    if isinstance(raw, datetime):
        value = raw
    elif isinstance(raw, date):
        return f"{raw} has no time and no timezone; use an RFC 3339 time, {_EXAMPLE}"
    elif isinstance(raw, str) and _RFC3339.match(raw.strip()):
        try:
            value = datetime.fromisoformat(raw.strip().upper().replace(" ", "T"))
        except ValueError as exc:
            return f"{raw!r} is not an RFC 3339 time ({exc}); {_EXAMPLE}"
    else:
        return f"{raw!r} is not an RFC 3339 time with a timezone; {_EXAMPLE}"
    if value.tzinfo is None:
        return (f"{value.isoformat()} has no timezone (Z or +HH:MM), so its instant would "
                f"depend on each replica's clock settings; {_EXAMPLE}")
    return value


def _target(drain: ConfigDrain) -> str:
    return drain.cluster if drain.service is None else f"{drain.cluster}/{drain.service}"
