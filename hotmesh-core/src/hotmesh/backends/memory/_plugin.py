"""Registers the memory providers through the same entry-point group as outside backends."""

from __future__ import annotations

from hotmesh.providers import ProviderRegistry, ProviderSpec, Role, hookimpl

_MODULE = "hotmesh.backends.memory"
_CLASSES = {
    Role.STORE: ("MemoryStore", ("store.ttl", "store.atomic_outbox")),
    Role.STREAM: ("MemoryStream", ("stream.delay", "stream.extend")),
    Role.SUB: ("MemorySub", ("sub.patterns",)),
    Role.SEARCH: ("MemorySearch", ("search.sort",)),
}


@hookimpl
def hotmesh_register_providers(registry: ProviderRegistry) -> None:
    """Describe the four memory providers (single process; the reference model)."""
    for role, (cls, capabilities) in _CLASSES.items():
        registry.add(
            ProviderSpec(
                role=role,
                name="memory",
                schemes=("memory",),
                factory=f"{_MODULE}:{cls}",
                distribution="hotmesh-core",
                capabilities=capabilities,
                description="one process, no durability: the reference model and for tests",
            )
        )
