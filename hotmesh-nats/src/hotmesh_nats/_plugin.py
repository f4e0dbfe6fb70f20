"""Registers the NATS providers (no driver import here: the factories load lazily)."""

from __future__ import annotations

from hotmesh.providers import ProviderRegistry, ProviderSpec, Role, hookimpl

_SCHEMES = ("nats", "tls")
_PROVIDERS = {
    Role.STORE: (
        "hotmesh_nats.store:NatsStore",
        ("store.ttl", "store.clock", "provider.multi_process", "provider.durable"),
        "JetStream KV, one compare-and-set per transition; expiry kept in the value; server clock from JetStream stamps",
    ),
    Role.STREAM: (
        "hotmesh_nats.stream:NatsStream",
        ("stream.delay", "stream.extend", "provider.multi_process", "provider.durable"),
        "JetStream durable pull consumers; dead letters in the same stream",
    ),
    Role.SUB: (
        "hotmesh_nats.sub:NatsSub",
        ("sub.patterns", "provider.multi_process"),
        "core NATS subjects (patterns filtered client-side)",
    ),
}


@hookimpl
def hotmesh_register_providers(registry: ProviderRegistry) -> None:
    """One spec per role NATS serves; search is deliberately absent (issue 8, item 2)."""
    for role, (factory, capabilities, description) in _PROVIDERS.items():
        registry.add(
            ProviderSpec(
                role=role,
                name="nats",
                schemes=_SCHEMES,
                factory=factory,
                distribution="hotmesh-nats",
                capabilities=capabilities,
                description=description,
            )
        )
