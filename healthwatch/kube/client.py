"""Build a kubernetes ``ApiClient`` for one kubeconfig context, with clear errors."""

from __future__ import annotations

import os
from typing import Any

import yaml
from kubernetes import client
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import load_kube_config

from healthwatch.kube.errors import KubeconfigError
from healthwatch.kube.options import KubeOptions


def _contexts(path: str) -> tuple[list[str], str | None]:
    try:
        with open(path, encoding="utf-8") as f:
            doc: Any = yaml.safe_load(f)
    except FileNotFoundError:
        raise KubeconfigError(path=path, problem="file not found") from None
    except OSError as e:
        raise KubeconfigError(path=path, problem=f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise KubeconfigError(path=path, problem=f"not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise KubeconfigError(path=path, problem="not a kubeconfig (expected a mapping)")
    names = [
        c["name"]
        for c in doc.get("contexts") or []
        if isinstance(c, dict) and isinstance(c.get("name"), str)
    ]
    current = doc.get("current-context")
    return names, current if isinstance(current, str) and current else None


def load_client(path: str | None, context: str | None, options: KubeOptions) -> client.ApiClient:
    """An ApiClient for ``context`` of the kubeconfig at ``path`` (default: $KUBECONFIG
    or ~/.kube/config). Blocking (reads files, may run exec plugins): call it
    off the event loop. Raises KubeconfigError with a one-line reason."""
    if path is None:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser(
            "~/.kube/config"
        )
    names, current = _contexts(path)
    wanted = context or current
    if wanted is None:
        raise KubeconfigError(path=path, problem="no context given and no current-context set")
    if wanted not in names:
        have = ", ".join(sorted(names)) or "none"
        raise KubeconfigError(path=path, problem=f"context {wanted!r} not found (have: {have})")
    configuration = client.Configuration()
    try:
        load_kube_config(
            config_file=path,
            context=wanted,
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, ValueError, OSError) as e:
        raise KubeconfigError(path=path, problem=f"context {wanted!r}: {e}") from None
    configuration.retries = False  # our own backoff decides when to retry
    configuration.connection_pool_maxsize = options.pool_size
    return client.ApiClient(configuration)
