"""The providers package's exceptions: one root, subclasses carry behaviour."""

from __future__ import annotations


class ProviderError(Exception):
    """Root of every error raised by the providers package."""


class TransientError(ProviderError):
    """The service is unreachable, throttled or overloaded: retry with backoff."""

    def __init__(self, provider: str, op: str, detail: str) -> None:
        self.provider = provider
        self.op = op
        self.detail = detail
        super().__init__(f"transient error provider={provider} op={op}: {detail}")


class ConflictError(ProviderError):
    """The zone changed under us (409/412, failed etcd compare): re-read, re-plan."""

    def __init__(self, provider: str, detail: str) -> None:
        self.provider = provider
        self.detail = detail
        super().__init__(f"conflict provider={provider}: {detail}")


class PermanentError(ProviderError):
    """Retrying will not help (zone missing, access denied, bad settings)."""

    def __init__(self, provider: str, detail: str) -> None:
        self.provider = provider
        self.detail = detail
        super().__init__(f"permanent error provider={provider}: {detail}")


class UnsafePlanError(ProviderError):
    """A plan touches more owned record sets than allowed; needs ``--force``."""

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"refusing unsafe plan for provider {provider}: {reason}")
