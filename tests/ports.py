"""Free loopback ports for the servers the tests start.

``free_port`` lives in bench/procs.py (the benches start servers too) and is
re-exported here: tests may import bench helpers (bench/ is importable from
the repository root, where pytest runs), bench never imports tests.
"""

from __future__ import annotations

from bench.procs import free_port as free_port

__all__ = ["free_port"]
