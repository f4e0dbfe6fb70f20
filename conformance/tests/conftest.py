"""Meta-tests of the kit run the suites in-process through pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def anyio_backend() -> str:
    """The kit's own async tests run on asyncio."""
    return "asyncio"
