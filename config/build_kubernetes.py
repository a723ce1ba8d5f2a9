"""The ``kubernetes`` block: client knobs of every ``source: kubernetes`` cluster.

The schema checks the shapes (durations, a positive ``list_limit``); this
module checks what would make the client misbehave: timeouts and intervals of
0 (urllib3 refuses a 0 timeout, a 0 heartbeat interval is a busy loop), values
too large for a thread's wait, a backoff whose cap is below its base (the
watch threads could not start), a ``watch_timeout`` that is not whole seconds
(it is the API server's ``timeoutSeconds``), and a ``watch_idle_timeout`` that
would end a quiet watch before it ever counts as working.
"""

from __future__ import annotations

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


def _secs(value: float) -> str:
    return f"{value:g}s"


def kubernetes(root: Node) -> Kubernetes:
    node = root.node("kubernetes")
    d = Kubernetes()
    if node is None:
        return d
    ctx = node.ctx
    got: dict[str, float] = {}
    for key, zero_ok in _DURATIONS.items():
        value = node.duration(key)
        if value is None:
            continue
        if value == 0 and not zero_ok:
            ctx.error(node.at(key), "must be greater than 0")
        elif value > LONGEST:
            ctx.error(node.at(key), f"must be at most 1h, got {_secs(value)}")
        else:
            got[key] = value
    watch_timeout = _watch_timeout(node)
    idle = got.get("watch_idle_timeout")
    if idle is not None and idle <= WATCH_SETTLE:
        ctx.error(node.at("watch_idle_timeout"),
                  f"must be longer than {_secs(WATCH_SETTLE)}: a reopened watch without "
                  f"events counts as working only after {_secs(WATCH_SETTLE)}, so a quiet "
                  "resource would be reopened before it ever does")
        del got["watch_idle_timeout"]
    _backoff(node, got, d)
    limit = node.integer("list_limit")
    return Kubernetes(
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


def _backoff(node: Node, got: dict[str, float], d: Kubernetes) -> None:
    """backoff_cap >= backoff_base, reported at the key the config sets (the cap
    when it sets both); the offending value is dropped from ``got``."""
    base = got.get("backoff_base", d.backoff_base)
    cap = got.get("backoff_cap", d.backoff_cap)
    if cap >= base or ("backoff_base" not in got and "backoff_cap" not in got):
        return
    if "backoff_cap" in got:
        node.ctx.error(node.at("backoff_cap"),
                       f"must not be shorter than backoff_base ({_secs(base)}), "
                       f"got {_secs(cap)}")
        del got["backoff_cap"]
    else:
        node.ctx.error(node.at("backoff_base"),
                       f"must not be longer than backoff_cap ({_secs(cap)}, the default), "
                       f"got {_secs(base)}")
        del got["backoff_base"]
