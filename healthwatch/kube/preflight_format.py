"""How a preflight of the member clusters is shown (``fedns check --clusters``).

A table of steps per cluster and a summary line, or the same as JSON, and the
exit status. The statuses are those of ``fedns check`` (``dnsserver.cli``,
which healthwatch may not import; a test keeps them equal): 0 every cluster
ok, 3 warnings only (as ``--strict`` on config warnings), 1 any failure.
``run_preflight`` is the entry the CLI calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from config.model import Config
from healthwatch.kube.preflight import ClusterCheck, Step, Verdict, preflight, worst

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_WARNINGS = 3
_EXIT: dict[Verdict, int] = {"ok": EXIT_OK, "warn": EXIT_WARNINGS, "fail": EXIT_FAIL}
_HEADERS = ("STEP", "RESULT", "DETAIL")


def exit_code(checks: Sequence[ClusterCheck]) -> int:
    """0 all ok (or nothing to check), 3 warnings only, 1 any failure."""
    return _EXIT[worst(c.verdict for c in checks)]


def format_text(checks: Sequence[ClusterCheck]) -> str:
    """Per cluster a head line and its steps as a table; then a summary."""
    if not checks:
        return "preflight: no source: kubernetes clusters to check\n"
    out = [_cluster_text(c) for c in checks]
    counts = {v: sum(1 for c in checks if c.verdict == v) for v in _EXIT}
    n = len(checks)
    summary = ", ".join(f"{counts[v]} {v}" for v in _EXIT)
    out.append(f"preflight: {n} cluster{'s' if n != 1 else ''}: {summary}\n")
    return "\n".join(out)


def _cluster_text(check: ClusterCheck) -> str:
    which = (f"context {check.context}" if check.context
             else f"current context of {check.kubeconfig}")
    rows = [(s.name, s.verdict, s.detail) for s in check.steps]
    head = f"cluster {check.cluster} ({which}): {check.verdict}\n"
    return head + "".join(f"  {line}\n" for line in _table(rows).splitlines())


def _table(rows: Sequence[tuple[str, str, str]]) -> str:
    """Left-aligned columns under ``_HEADERS``; the last one is not padded."""
    cells = [_HEADERS, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(_HEADERS) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)),
                                r[-1]]).rstrip() for r in cells)


def to_json(checks: Sequence[ClusterCheck]) -> dict[str, Any]:
    """The whole preflight as JSON data: overall verdict, exit code, clusters."""
    return {
        "verdict": worst(c.verdict for c in checks),
        "exit_code": exit_code(checks),
        "clusters": [_cluster_json(c) for c in checks],
    }


def _cluster_json(check: ClusterCheck) -> dict[str, Any]:
    return {"cluster": check.cluster, "context": check.context,
            "kubeconfig": check.kubeconfig, "verdict": check.verdict,
            "version": check.version, "steps": [_step_json(s) for s in check.steps]}


def _step_json(step: Step) -> dict[str, Any]:
    """A step; the counts only where a list gave them."""
    out: dict[str, Any] = {"name": step.name, "verdict": step.verdict, "detail": step.detail}
    if step.listed is not None:
        out["listed"] = step.listed
        out["at_least"] = step.at_least
    if step.federated is not None:
        out["federated"] = step.federated
    return out


def run_preflight(config: Config, *, clusters: Sequence[str] | None = None,
                  timeout: float | None = None, as_json: bool = False) -> tuple[Any, int]:
    """Check the clusters and render the result: (text, or JSON data for
    ``to_json``'s callers to embed, and the exit status). ``timeout``
    (``--timeout``) caps every wait of every call (see ``preflight``). Runs
    its own event loop: call it where none runs. Raises PreflightError
    (nothing checked) for an unknown cluster or a bad timeout."""
    checks = asyncio.run(preflight(config, clusters=clusters, call_timeout=timeout))
    return (to_json(checks) if as_json else format_text(checks)), exit_code(checks)
