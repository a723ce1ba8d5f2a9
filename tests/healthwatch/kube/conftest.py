from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.healthwatch.kube.harness import Harness


@pytest.fixture
async def kube(tmp_path: object) -> AsyncIterator[Harness]:
    h = Harness(str(tmp_path))
    yield h
    await h.close()
