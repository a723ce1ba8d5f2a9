"""Write kubeconfig files pointing at simulated API servers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import yaml


@dataclass(frozen=True, slots=True)
class KubeconfigEntry:
    context: str
    server: str  # http://127.0.0.1:PORT
    token: str | None = None


def write_kubeconfig(
    path: str | os.PathLike[str], entries: Sequence[KubeconfigEntry], current: str | None = None
) -> str:
    """Write one kubeconfig holding a context per entry; returns the path."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": e.context, "cluster": {"server": e.server}} for e in entries],
        "users": [
            {"name": e.context, "user": {"token": e.token} if e.token else {}} for e in entries
        ],
        "contexts": [
            {"name": e.context, "context": {"cluster": e.context, "user": e.context}}
            for e in entries
        ],
        "current-context": current or (entries[0].context if entries else ""),
        "preferences": {},
    }
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return os.fspath(path)
