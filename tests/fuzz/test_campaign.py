"""The bounded CI fuzz campaign and the replay of the corpus and crash regressions.

``FEDNS_FUZZ_SECONDS`` sets the campaign length (default 60, what CI's plain
``python -m pytest`` runs; 0 skips it). A longer campaign by hand:

    FEDNS_FUZZ_SECONDS=3600 python -m pytest tests/fuzz/test_campaign.py -k campaign
    # or directly, growing the checked-in corpus:
    python -m tests.fuzz.fuzz_query tests/fuzz/corpus -max_total_time=3600 \
        -artifact_prefix=tests/fuzz/crashes/

A crash fails the test; its input is saved in tests/fuzz/crashes/ (commit it
with a descriptive name: the replay test then keeps it as a regression) and
printed in base64 in the failure message for CI runs whose files are lost.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.fuzz_query import case_for
from tests.fuzz.harness import Harness

HERE = Path(__file__).parent
CORPUS = HERE / "corpus"
CRASHES = HERE / "crashes"
REPO = HERE.parent.parent
SECONDS = int(os.environ.get("FEDNS_FUZZ_SECONDS", "60"))


def _inputs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix != ".md")


def test_crash_regressions_and_corpus_replay() -> None:
    harness = Harness()
    files = _inputs(CRASHES) + _inputs(CORPUS)
    assert len(files) > 300  # the seed corpus is checked in
    for path in files:
        data = path.read_bytes()
        client, tcp = case_for(data)
        harness.check(data, client, tcp)  # raises on a failed property


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 120)
@pytest.mark.skipif(SECONDS <= 0, reason="FEDNS_FUZZ_SECONDS=0")
def test_fuzz_campaign(tmp_path: Path) -> None:
    work = tmp_path / "corpus"  # new inputs land here, not in the checked-in corpus
    work.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [sys.executable, "-m", "tests.fuzz.fuzz_query", str(work), str(CORPUS),
           f"-max_total_time={SECONDS}", f"-artifact_prefix={artifacts}/", "-timeout=10",
           "-rss_limit_mb=2048", "-max_len=4096", "-print_final_stats=1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=SECONDS + 100)
    crashes = sorted(artifacts.iterdir())
    if proc.returncode != 0 or crashes:
        saved = []
        CRASHES.mkdir(exist_ok=True)
        for path in crashes:
            dest = CRASHES / path.name
            shutil.copyfile(path, dest)
            saved.append(f"{dest}: {base64.b64encode(path.read_bytes()).decode()}")
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        pytest.fail(f"fuzz campaign failed (exit {proc.returncode}); inputs saved:\n"
                    + "\n".join(saved) + f"\n--- libFuzzer output ---\n{tail}")
    assert "Done" in proc.stderr, proc.stderr[-2000:]
