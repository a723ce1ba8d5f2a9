"""Errors of the Kubernetes source; ``KubeError`` is the root."""

from __future__ import annotations

from healthwatch.errors import HealthwatchError


class KubeError(HealthwatchError):
    """Root of every error raised by ``healthwatch.kube``."""


class KubeconfigError(KubeError):
    """The kubeconfig file or context cannot be used."""

    def __init__(self, *, path: str | None, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"kubeconfig {path or '<default>'}: {problem}")


class ObjectError(KubeError):
    """A Kubernetes object (or watch event) is malformed and is skipped."""

    def __init__(self, *, kind: str, problem: str, name: str | None = None) -> None:
        self.kind = kind
        self.problem = problem
        self.name = name
        where = f"{kind} {name}" if name else kind
        super().__init__(f"{where}: {problem}")


class SelectorError(KubeError):
    """A label selector does not parse."""

    def __init__(self, *, selector: str, problem: str) -> None:
        self.selector = selector
        self.problem = problem
        super().__init__(f"label selector {selector!r}: {problem}")


class ProbeSpecError(KubeError):
    """A ``fedns.io/probe`` annotation does not parse."""

    def __init__(self, *, spec: str, problem: str) -> None:
        self.spec = spec
        self.problem = problem
        super().__init__(f"probe {spec!r}: {problem}")


class ResponseError(KubeError):
    """The API server answered 2xx with a body that is not what the call returns
    (not JSON, or JSON of the wrong shape). Retried with backoff like an HTTP error."""

    def __init__(self, *, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)
