"""The public API is small and locked: a change to __all__ must be deliberate."""

from __future__ import annotations

import hotmesh
import hotmesh.errors
import hotmesh.providers


def test_errors_exports() -> None:
    for name in hotmesh.errors.__all__:
        assert hasattr(hotmesh.errors, name)
    assert issubclass(hotmesh.errors.TimeoutError, TimeoutError)
    assert issubclass(hotmesh.errors.WorkflowFailed, hotmesh.errors.RemoteError)


def test_providers_exports_are_complete() -> None:
    for name in hotmesh.providers.__all__:
        assert hasattr(hotmesh.providers, name), name
    assert {"Store", "Stream", "Sub", "Search", "Capability", "ProviderSpec", "hookimpl"} <= set(
        hotmesh.providers.__all__
    )


def test_top_level_api_is_locked() -> None:
    assert set(hotmesh.__all__) == {
        "Connection",
        "HotMeshConfig",
        "MeshCall",
        "MeshData",
        "MeshFlow",
        "RetryPolicy",
        "__version__",
        "connect",
        "errors",
        "load_config",
        "workflow",
    }
    for name in hotmesh.__all__:
        assert hasattr(hotmesh, name), name
