"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.healthwatch.backends import Backend
from tests.healthwatch.test_engine import PLACES


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, Backend]]:
    """A live HTTP backend on each cluster's address of ``PLACES``."""
    out = {name: Backend(ip) for name, (_, _, ip) in PLACES.items()}
    for b in out.values():
        await b.start()
    yield out
    for b in out.values():
        await b.stop()
