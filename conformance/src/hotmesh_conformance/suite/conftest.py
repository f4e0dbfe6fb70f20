"""Suite-wide fixtures: the suites run on asyncio (anyio's pytest plugin)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    """The suites target asyncio (providers' drivers are asyncio-based)."""
    return "asyncio"
