"""The HotMesh provider conformance kit.

Run it against a backend with ``pytest --pyargs hotmesh_conformance.suite --hotmesh-url=URL``.
Assertion rewriting is registered first so failures inside the suite show their values.
"""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite(
    "hotmesh_conformance.suite",
    "hotmesh_conformance.helpers",
    "hotmesh_conformance.searchmodel",
    "hotmesh_conformance.machines",
    "hotmesh_conformance.ledger",
)

from hotmesh_conformance.helpers import forbids, requires  # noqa: E402

__version__ = "0.1.0"

__all__ = ["__version__", "forbids", "requires"]
