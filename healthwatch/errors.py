"""The healthwatch package's exceptions: one root, subclasses carry fields."""

from __future__ import annotations


class HealthwatchError(Exception):
    """Root of every error raised by healthwatch."""


class SourceUnavailableError(HealthwatchError):
    """A cluster's configured source type cannot be built."""

    def __init__(self, *, cluster: str, source: str, why: str) -> None:
        self.cluster = cluster
        self.source = source
        self.why = why
        super().__init__(f"cluster {cluster}: source {source!r} unavailable: {why}")


class UnknownClusterError(HealthwatchError):
    """A drain or lookup named a cluster that is not configured."""

    def __init__(self, *, cluster: str) -> None:
        self.cluster = cluster
        super().__init__(f"unknown cluster {cluster!r}")


class StateError(HealthwatchError):
    """A state file could not be read or written."""

    def __init__(self, *, path: str, why: str) -> None:
        self.path = path
        self.why = why
        super().__init__(f"state file {path}: {why}")


class InvalidDrainError(HealthwatchError):
    """A drain request named a shard in a form we cannot use."""

    def __init__(self, *, service: str, why: str) -> None:
        self.service = service
        self.why = why
        super().__init__(f"bad service {service!r}: {why}")
