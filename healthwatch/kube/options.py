"""Timing knobs of a Kubernetes source (defaults suit production)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from config.model import Kubernetes


@dataclass(frozen=True, slots=True)
class KubeOptions:
    connect_timeout: float = 5.0  # TCP/TLS connect of every API call
    request_timeout: float = 30.0  # read timeout of list/get calls
    watch_timeout: int = 300  # server-side ``timeoutSeconds`` of a watch
    watch_read_margin: float = 15.0  # read timeout of a watch = watch_timeout + margin
    backoff_base: float = 0.25  # first retry delay after an error
    backoff_cap: float = 30.0  # longest retry delay (jitter applies below it)
    retry_after_cap: float = 60.0  # longest wait a server's Retry-After header may ask for
    watch_settle: float = 1.0  # a reopened watch with no event yet counts as healthy after this
    # a watch stream silent this long is presumed hung (a connection dropped
    # without a reset): it is reopened from its resourceVersion. Above the
    # API server's bookmark period (about a minute), so a healthy quiet watch
    # is at worst reopened once per period.
    watch_idle_timeout: float = 75.0
    heartbeat_interval: float = 2.0  # GET /version to notice a hung API server
    heartbeat_timeout: float = 2.0
    coalesce: float = 0.005  # batch changes this long before emitting a report
    list_limit: int | None = 500  # page size of list calls (None: one page)
    pool_size: int = 10  # HTTP connections per cluster (one per watch + spare)
    # After a 401 the kubeconfig is loaded again (exec plugins run again), at
    # most once per this many seconds (the first load counts), so that revoked
    # credentials cost one plugin run per interval, not one per request. Equal
    # to the default backoff_cap: a call failing for good is retried no faster.
    # A changed kubeconfig file is reloaded at once (checked every heartbeat).
    credential_reload_interval: float = 30.0
    # An exec credential plugin (kubeconfig ``users[].user.exec``) still
    # running after this many seconds is killed, with whatever it started, and
    # the (re)load fails: a hung plugin must not hold a cluster's credentials
    # for ever. Generous: a plugin may call a cloud API (EKS, GKE, OIDC).
    exec_timeout: float = 30.0

    @classmethod
    def from_config(cls, knobs: Kubernetes) -> KubeOptions:
        """The options of a config's ``kubernetes`` block (validated by config/;
        its fields are named as these); the knobs it does not offer keep their
        defaults."""
        return cls(**{f.name: getattr(knobs, f.name) for f in fields(knobs)})

    @property
    def watch_request_timeout(self) -> tuple[float, float]:
        """(connect, read) of a watch; the read timeout bounds each read, so it
        is the longest silence a stream may keep."""
        read = min(self.watch_timeout + self.watch_read_margin, self.watch_idle_timeout)
        return (self.connect_timeout, read)

    @property
    def call_timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.request_timeout)
