"""Registers the PostgreSQL providers; imports no driver (DESIGN §3)."""

from __future__ import annotations

from hotmesh.providers import Capability, ProviderRegistry, ProviderSpec, Role, hookimpl

_SCHEMES = ("postgresql", "postgres")
_DIST = "hotmesh-postgres"


def specs() -> list[ProviderSpec]:
    """One spec per role (also used by tests that register without the entry point)."""
    common = (Capability.MULTI_PROCESS.value,)
    return [
        ProviderSpec(
            role=Role.STORE,
            name="postgres",
            schemes=_SCHEMES,
            factory="hotmesh_postgres._store:PostgresStore",
            distribution=_DIST,
            capabilities=(
                Capability.STORE_TTL.value,
                Capability.STORE_CLOCK.value,
                Capability.ATOMIC_STORE_AND_STREAM.value,
                Capability.DURABLE.value,
                *common,
            ),
            description="job rows with JSONB fields; one plpgsql call per transition",
        ),
        ProviderSpec(
            role=Role.STREAM,
            name="postgres",
            schemes=_SCHEMES,
            factory="hotmesh_postgres._stream:PostgresStream",
            distribution=_DIST,
            capabilities=(Capability.STREAM_DELAY.value, Capability.STREAM_EXTEND.value, Capability.DURABLE.value, *common),
            description="queue table with FOR UPDATE SKIP LOCKED, woken by LISTEN/NOTIFY",
        ),
        ProviderSpec(
            role=Role.SUB,
            name="postgres",
            schemes=_SCHEMES,
            factory="hotmesh_postgres._sub:PostgresSub",
            distribution=_DIST,
            capabilities=(Capability.SUB_PATTERNS.value, *common),
            description="LISTEN/NOTIFY; large payloads by reference through a table",
        ),
        ProviderSpec(
            role=Role.SEARCH,
            name="postgres",
            schemes=_SCHEMES,
            factory="hotmesh_postgres._search:PostgresSearch",
            distribution=_DIST,
            capabilities=(Capability.SEARCH_SORT.value, Capability.DURABLE.value, *common),
            description="JSONB documents with GIN indexes; parameterized structured queries",
        ),
    ]


@hookimpl
def hotmesh_register_providers(registry: ProviderRegistry) -> None:
    """Add the four PostgreSQL provider specs."""
    for spec in specs():
        registry.add(spec)
