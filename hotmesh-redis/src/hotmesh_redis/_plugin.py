"""Registers the Redis providers under the ``hotmesh`` entry-point group (no driver import)."""

from __future__ import annotations

from hotmesh.providers import ProviderRegistry, ProviderSpec, Role, hookimpl

_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
_BASE = ("provider.multi_process", "provider.durable", "provider.cluster_safe_keys")
_CLASSES = {
    Role.STORE: (
        "hotmesh_redis.store:RedisStore",
        (*_BASE, "store.ttl", "store.clock", "store.atomic_outbox"),
        "job hashes changed by one Lua script per transition; timers in a sorted set",
    ),
    Role.STREAM: (
        "hotmesh_redis.stream:RedisStream",
        (*_BASE, "stream.delay", "stream.extend"),
        "Redis Streams consumer groups with XREADGROUP BLOCK, dead letters, delayed release",
    ),
    Role.SUB: (
        "hotmesh_redis.sub:RedisSub",
        ("provider.multi_process", "sub.patterns"),
        "pub/sub with PSUBSCRIBE patterns; resubscribes after a connection loss",
    ),
    Role.SEARCH: (
        "hotmesh_redis.search:RedisSearch",
        ("provider.multi_process", "provider.durable", "search.native_query", "search.sort"),
        "Redis Query Engine (FT.SEARCH); needs Redis 8 / Redis Stack / redisearch.so",
    ),
}


@hookimpl
def hotmesh_register_providers(registry: ProviderRegistry) -> None:
    """Describe the Redis providers for each role."""
    for role, (factory, capabilities, description) in _CLASSES.items():
        registry.add(
            ProviderSpec(
                role=role,
                name="redis",
                schemes=_SCHEMES,
                factory=factory,
                distribution="hotmesh-redis",
                capabilities=capabilities,
                description=description,
            )
        )
