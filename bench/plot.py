#!/usr/bin/env python3
"""Plot ``compare.py --json`` output: max qps, CPU-us/query and p99 per mix, fedns vs
gdnsd (and the Python floor, ``pyfloor``, when the run had it).

    python bench/plot.py compare.json docs/performance.png

Needs matplotlib (``pip install matplotlib``); not a dependency of fedns.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(argv[0]).read_text())
    rows = data["rows"]
    by = {(r["server"], r["mix"], r["mode"]): r for r in rows}
    mixes = [m for m in ("static", "geo-ecs", "geo") if any(r["mix"] == m for r in rows)]
    modes = sorted({r["mode"] for r in rows if r["mode"] != "max"},
                   key=lambda m: int(m[1:]))
    servers = [(name, color) for name, color in (("gdnsd", "#4c72b0"), ("fedns", "#dd8452"),
                                                 ("pyfloor", "#8c8c8c"))
               if any(r["server"] == name for r in rows)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    width = 0.76 / len(servers)

    def bars(ax: object, metric: str, mode: str, title: str, ylabel: str) -> None:
        xs = range(len(mixes))
        for k, (server, color) in enumerate(servers):
            vals = [by.get((server, m, mode), {}).get(metric) or 0 for m in mixes]
            pos = [x + (k - (len(servers) - 1) / 2) * width for x in xs]
            ax.bar(pos, vals, width, label=server, color=color)  # type: ignore[attr-defined]
            for p, v in zip(pos, vals, strict=True):
                label = f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.3f}"
                ax.text(p, v, label,  # type: ignore[attr-defined]
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(xs), mixes)  # type: ignore[attr-defined]
        ax.set_title(title, fontsize=10)  # type: ignore[attr-defined]
        ax.set_ylabel(ylabel)  # type: ignore[attr-defined]
        ax.legend(fontsize=8, loc="lower right")  # type: ignore[attr-defined]

    bars(axes[0], "qps", "max", "max qps (dnsperf -c 10 -q 100, pinned)", "queries/s")
    top = modes[-1] if modes else "max"  # the highest fixed rate: issue 5's CPU line
    bars(axes[1], "cpu_us", top, f"server CPU-us per query at -{top[0]} {top[1:]}",
         "CPU-us / query")
    low = f"Q{data['options']['latency_rate']}"
    bars(axes[2], "p99_ms", low, f"p99 latency at -Q {low[1:]}", "ms")
    m = data["machine"]
    fig.suptitle(f"fedns vs gdnsd 3.8, loopback, {m['nproc']} CPUs ({m['cpu_model']}), "
                 "medians of interleaved rounds", fontsize=11)
    fig.tight_layout()
    fig.savefig(argv[1], dpi=110)
    print(f"wrote {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
