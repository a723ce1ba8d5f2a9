"""Build a kubernetes ``ApiClient`` for one kubeconfig context, with clear errors.

The client's own loader reads the context, from the kubeconfig as parsed here
once, with every exec credential plugin run under a time limit
(``healthwatch.kube.execplugin`` says how and why).
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from kubernetes import client
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.kube_config import KubeConfigLoader

from healthwatch.kube.errors import KubeconfigError
from healthwatch.kube.execplugin import Verdicts, wrap_exec_plugins
from healthwatch.kube.options import KubeOptions


def kubeconfig_path(path: str | None) -> str:
    """``path``, or the default kubeconfig: the first of $KUBECONFIG, else ~/.kube/config."""
    if path is not None:
        return path
    return os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or os.path.expanduser(
        "~/.kube/config")


def _contexts(path: str) -> tuple[list[str], str | None, dict[str, Any]]:
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
    return names, current if isinstance(current, str) and current else None, doc


def kube_entry(doc: dict[str, Any], section: str, key: str, name: Any) -> dict[str, Any]:
    """The ``key`` mapping of the entry called ``name`` in a kubeconfig's
    ``section`` (``contexts``/``context``, ``users``/``user``,
    ``clusters``/``cluster``); empty when there is none."""
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get(key), dict):
            found: dict[str, Any] = item[key]
            return found
    return {}


def _uses_exec(doc: dict[str, Any], context: str) -> bool:
    """Whether ``context``'s user gets its credentials from an exec plugin only."""
    ctx = kube_entry(doc, "contexts", "context", context)
    user = kube_entry(doc, "users", "user", ctx.get("user"))
    if "exec" not in user:
        return False
    return not any(k in user for k in ("token", "tokenFile", "auth-provider"))


def _load_configuration(path: str, doc: dict[str, Any], context: str,
                        options: KubeOptions) -> tuple[Any, str | None]:
    """``context``'s client configuration, loaded by the client's loader from
    ``doc`` (the kubeconfig at ``path``; relative file names resolved against
    its directory, as the client does) with exec plugins stopped after
    ``options.exec_timeout``; and why a plugin failed, when it was the
    wrapper's doing (a plugin killed or not started). Raises what the
    client's loader raises."""
    configuration = client.Configuration()
    with Verdicts() as verdicts:
        loader = KubeConfigLoader(
            config_dict=wrap_exec_plugins(doc, options.exec_timeout, verdicts.path),
            active_context=context,
            config_base_path=os.path.dirname(os.path.abspath(path)),
        )
        loader.load_and_set(configuration)
        return configuration, verdicts.read()


def load_client(path: str | None, context: str | None, options: KubeOptions) -> client.ApiClient:
    """An ApiClient for ``context`` of the kubeconfig at ``path`` (default: $KUBECONFIG
    or ~/.kube/config). Blocking (reads files, may run exec plugins): call it
    off the event loop. Raises KubeconfigError with a one-line reason."""
    path = kubeconfig_path(path)
    names, current, doc = _contexts(path)
    wanted = context or current
    if wanted is None:
        raise KubeconfigError(path=path, problem="no context given and no current-context set")
    if wanted not in names:
        have = ", ".join(sorted(names)) or "none"
        raise KubeconfigError(path=path, problem=f"context {wanted!r} not found (have: {have})")
    try:
        configuration, plugin_failure = _load_configuration(path, doc, wanted, options)
    except (ConfigException, ValueError, OSError) as e:
        raise KubeconfigError(path=path, problem=f"context {wanted!r}: {e}") from None
    if (_uses_exec(doc, wanted) and not configuration.api_key.get("authorization")
            and not configuration.cert_file):
        # the client logs the plugin's failure and goes on without credentials
        why = plugin_failure or ("the exec plugin gave no credentials "
                                 "(its error is logged by the kubernetes client)")
        raise KubeconfigError(path=path, problem=f"context {wanted!r}: {why}")
    configuration.retries = False  # our own backoff decides when to retry
    configuration.connection_pool_maxsize = options.pool_size
    return client.ApiClient(configuration)
