"""Registers the embedded SQLite providers (no driver import, no I/O: the hook only describes)."""

from __future__ import annotations

from hotmesh.providers import ProviderRegistry, ProviderSpec, Role, hookimpl

_MODULE = "hotmesh.backends.sqlite"
_COMMON = ("provider.multi_process", "provider.durable")
_CLASSES = {
    Role.STORE: ("SqliteStore", ("store.ttl", "store.atomic_outbox")),
    Role.STREAM: ("SqliteStream", ("stream.delay", "stream.extend")),
    Role.SUB: ("SqliteSub", ("sub.patterns",)),
    Role.SEARCH: ("SqliteSearch", ("search.sort",)),
}


@hookimpl
def hotmesh_register_providers(registry: ProviderRegistry) -> None:
    """Describe the four SQLite providers: one file, shared by the processes of a host."""
    for role, (cls, capabilities) in _CLASSES.items():
        registry.add(
            ProviderSpec(
                role=role,
                name="sqlite",
                schemes=("sqlite",),
                factory=f"{_MODULE}:{cls}",
                distribution="hotmesh-core",
                capabilities=_COMMON + capabilities,
                description="embedded SQLite file (WAL): durable, several processes on one host",
            )
        )
