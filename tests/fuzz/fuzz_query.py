"""Coverage-guided fuzz target for the DNS query path (atheris / libFuzzer).

    python -m tests.fuzz.fuzz_query tests/fuzz/corpus -max_total_time=600 \
        -artifact_prefix=tests/fuzz/crashes/

Every input is a packet as it arrives on the socket; the client address and
the transport are derived from its length, so the seeds in corpus/ are plain
packets (readable with ``dig``-style tools and reusable by other fuzzers).
The target runs the fast path and the full path and checks the properties of
``harness.check``; a failed property or an exception is a crash, which
libFuzzer saves as ``crash-<sha1>`` under the artifact prefix. Copy a crash
into tests/fuzz/crashes/: ``test_campaign.py`` replays that directory.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["dnsserver", "tests.fuzz.harness"]):
    from tests.fuzz.harness import CLIENTS, Harness

_HARNESS: Harness | None = None


def case_for(data: bytes) -> tuple[str, bool]:
    """The (client address, tcp) a fuzz input is sent as."""
    return CLIENTS[len(data) % len(CLIENTS)], (len(data) // len(CLIENTS)) % 4 == 3


def test_one_input(data: bytes) -> None:
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = Harness()
    client, tcp = case_for(data)
    _HARNESS.check(data, client, tcp)


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
