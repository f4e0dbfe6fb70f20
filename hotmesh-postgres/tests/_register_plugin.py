"""``-p _register_plugin``: register the providers without the entry point (pre-release runs)."""

from __future__ import annotations

import pytest

from hotmesh.providers import default_registry
from hotmesh_postgres._plugin import specs


def pytest_configure(config: pytest.Config) -> None:
    """Add the specs to the process registry before the kit resolves URLs."""
    registry = default_registry()
    for spec in specs():
        registry.add(spec)
