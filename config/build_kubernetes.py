"""The ``kubernetes`` blocks: client knobs of the ``source: kubernetes`` clusters.

The top-level block applies to every such cluster; a cluster's own
``kubernetes`` block (same keys) overrides it for that cluster only, since one
member cluster is often unlike the rest (an API server across an ocean, a slow
exec plugin, a huge cluster). Both are read by the same code, so they accept
the same values.

The schema checks the shapes (durations, a positive ``list_limit``); this
module checks what would make the client misbehave: timeouts and intervals of
0 (urllib3 refuses a 0 timeout, a 0 heartbeat interval is a busy loop), values
too large for a thread's wait, a backoff whose cap is below its base (the
watch threads could not start), a ``watch_timeout`` that is not whole seconds
(it is the API server's ``timeoutSeconds``), and a ``watch_idle_timeout`` that
would end a quiet watch before it ever counts as working. The cross-key check
(the backoff) runs on the merged values a cluster ends up with, and reports at
the key the cluster's block sets; a rejected value is dropped, so the cluster
keeps the inherited one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from config.model import Kubernetes
from config.node import Node

# healthwatch.kube.KubeOptions.watch_settle: a reopened watch without any event
# counts as working after this long (kept equal by a test in tests/healthwatch).
WATCH_SETTLE = 1.0
LONGEST = 3600.0  # no knob may exceed an hour

# knob -> may it be 0? (retry_after_cap: 0 ignores Retry-After headers)
_DURATIONS = {
    "connect_timeout": False,
    "request_timeout": False,
    "watch_idle_timeout": False,
    "backoff_base": False,
    "backoff_cap": False,
    "retry_after_cap": True,
    "heartbeat_interval": False,
    "heartbeat_timeout": False,
    "credential_reload_interval": False,
    "exec_timeout": False,
}


@dataclass(frozen=True, slots=True)
class Resolved:
    """The top-level block resolved: its knobs (defaults where it says
    nothing) and the keys the config set in it, so that an error about a
    cluster's block can say where the value it conflicts with came from."""

    knobs: Kubernetes = field(default_factory=Kubernetes)
    set_keys: frozenset[str] = frozenset()

    def origin(self, key: str) -> str:
        """``kubernetes.KEY`` when the top-level block set it, else ``the default``."""
        return f"kubernetes.{key}" if key in self.set_keys else "the default"


def _secs(value: float) -> str:
    return f"{value:g}s"


def top_level(root: Node) -> Resolved:
    """The top-level ``kubernetes`` block over the defaults."""
    node = root.node("kubernetes")
    if node is None:
        return Resolved()
    knobs, set_keys = _block(node, Resolved())
    return Resolved(knobs, set_keys)


def for_cluster(cluster: Node, top: Resolved) -> Kubernetes:
    """A ``source: kubernetes`` cluster's knobs: its own ``kubernetes`` block
    over the top-level one (``top``)."""
    node = cluster.node("kubernetes")
    return top.knobs if node is None else _block(node, top)[0]


def _block(node: Node, under: Resolved) -> tuple[Kubernetes, frozenset[str]]:
    """The knobs of the block at ``node``, each key it leaves out (or gets
    wrong) taken from ``under``; and the keys it set."""
    d = under.knobs
    got = _durations(node)
    watch_timeout = _watch_timeout(node)
    _idle(node, got)
    _backoff(node, got, under)
    limit = node.integer("list_limit")
    knobs = Kubernetes(
        connect_timeout=got.get("connect_timeout", d.connect_timeout),
        request_timeout=got.get("request_timeout", d.request_timeout),
        watch_timeout=d.watch_timeout if watch_timeout is None else watch_timeout,
        watch_idle_timeout=got.get("watch_idle_timeout", d.watch_idle_timeout),
        backoff_base=got.get("backoff_base", d.backoff_base),
        backoff_cap=got.get("backoff_cap", d.backoff_cap),
        retry_after_cap=got.get("retry_after_cap", d.retry_after_cap),
        heartbeat_interval=got.get("heartbeat_interval", d.heartbeat_interval),
        heartbeat_timeout=got.get("heartbeat_timeout", d.heartbeat_timeout),
        list_limit=d.list_limit if limit is None else limit,
        credential_reload_interval=got.get("credential_reload_interval",
                                           d.credential_reload_interval),
        exec_timeout=got.get("exec_timeout", d.exec_timeout),
    )
    others = {"watch_timeout": watch_timeout, "list_limit": limit}
    return knobs, frozenset(got) | {k for k, v in others.items() if v is not None}


def _durations(node: Node) -> dict[str, float]:
    """The durations the block sets that are usable on their own (not 0
    where 0 cannot work, at most an hour); each other one is reported."""
    got: dict[str, float] = {}
    for key, zero_ok in _DURATIONS.items():
        value = node.duration(key)
        if value is None:
            continue
        if value == 0 and not zero_ok:
            node.ctx.error(node.at(key), "must be greater than 0")
        elif value > LONGEST:
            node.ctx.error(node.at(key), f"must be at most 1h, got {_secs(value)}")
        else:
            got[key] = value
    return got


def _idle(node: Node, got: dict[str, float]) -> None:
    """A ``watch_idle_timeout`` not above the settle time is dropped from ``got``."""
    idle = got.get("watch_idle_timeout")
    if idle is None or idle > WATCH_SETTLE:
        return
    node.ctx.error(node.at("watch_idle_timeout"),
                   f"must be longer than {_secs(WATCH_SETTLE)}: a reopened watch without "
                   f"events counts as working only after {_secs(WATCH_SETTLE)}, so a quiet "
                   "resource would be reopened before it ever does")
    del got["watch_idle_timeout"]


def _watch_timeout(node: Node) -> int | None:
    value = node.duration("watch_timeout")
    if value is None:
        return None
    if value != int(value) or not 1 <= value <= LONGEST:
        node.ctx.error(node.at("watch_timeout"),
                       "must be a whole number of seconds from 1s to 1h (it is sent as the "
                       f"API server's timeoutSeconds), got {_secs(value)}")
        return None
    return int(value)


def _backoff(node: Node, got: dict[str, float], under: Resolved) -> None:
    """backoff_cap >= backoff_base on the merged values, reported at the key
    the block sets (the cap when it sets both), naming where the other value
    came from when the block did not set it; the offending value is dropped
    from ``got``. A block that sets neither keeps ``under``'s pair, checked
    already."""
    base = got.get("backoff_base", under.knobs.backoff_base)
    cap = got.get("backoff_cap", under.knobs.backoff_cap)
    if cap >= base or ("backoff_base" not in got and "backoff_cap" not in got):
        return
    if "backoff_cap" in got:
        where = "" if "backoff_base" in got else f", {under.origin('backoff_base')}"
        node.ctx.error(node.at("backoff_cap"),
                       f"must not be shorter than backoff_base ({_secs(base)}{where}), "
                       f"got {_secs(cap)}")
        del got["backoff_cap"]
    else:
        node.ctx.error(node.at("backoff_base"),
                       f"must not be longer than backoff_cap ({_secs(cap)}, "
                       f"{under.origin('backoff_cap')}), got {_secs(base)}")
        del got["backoff_base"]
