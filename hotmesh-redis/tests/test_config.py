"""URL forms and options (issue 6, deliverable 2): passwords never in errors."""

from __future__ import annotations

import asyncio

import pytest

from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import Capability, Message, Role, default_registry
from hotmesh_redis import RedisStore, RedisStream, RedisSub
from hotmesh_redis._config import RedisSettings

from .conftest import PrivateRedis, free_port

pytestmark = pytest.mark.anyio
SECRET = "s3cr3t-Pa55"


def test_url_forms() -> None:
    s = RedisSettings(f"redis://ann:{SECRET}@h:7000/3?pool_size=7&socket_timeout=2", {}, provider="t")
    assert (s.host, s.port, s.options.db, s.options.pool_size, s.options.username) == ("h", 7000, 3, 7, "ann")
    assert SECRET not in s.redacted and "h:7000" in s.redacted
    u = RedisSettings("unix:///tmp/r.sock?db=2", {}, provider="t")
    assert u.unix_path == "/tmp/r.sock" and u.client_kwargs()["unix_socket_path"] == "/tmp/r.sock"
    t = RedisSettings("rediss://h", {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem"}, provider="t")
    assert t.tls and t.client_kwargs()["ssl_ca_certs"] == "/ca.pem"
    c = RedisSettings("redis+cluster://h:7000", {}, provider="t")
    assert c.cluster


def test_bad_options_are_config_errors_without_password() -> None:
    with pytest.raises(ConfigError):
        RedisStore("redis://127.0.0.1", namespace="n", options={"nope": 1})
    with pytest.raises(ConfigError) as caught:
        RedisStore(f"redis://:{SECRET}@127.0.0.1/x", namespace="n")
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError):
        RedisStore("postgresql://x", namespace="n")
    with pytest.raises(ConfigError):
        RedisStore("redis://127.0.0.1", namespace="bad-ns!")


def test_registry_resolves_every_scheme() -> None:
    for scheme in ("redis", "rediss", "unix", "redis+cluster"):
        for role in (Role.STORE, Role.STREAM, Role.SUB, Role.SEARCH):
            assert default_registry().for_url(role, f"{scheme}://h/0").distribution == "hotmesh-redis"


async def test_unreachable_names_host_port_not_password() -> None:
    port = free_port()
    store = RedisStore(f"redis://ann:{SECRET}@127.0.0.1:{port}/0", namespace="n",
                       options={"connect_timeout": 1})
    with pytest.raises(ProviderError) as caught:
        await store.open()
    text = str(caught.value) + repr(caught.value)
    assert f"127.0.0.1:{port}" in text and SECRET not in text


async def test_acl_password_and_wrong_password(private_redis: PrivateRedis) -> None:
    import redis.asyncio as aioredis

    admin = aioredis.Redis(port=private_redis.port)
    await admin.execute_command("ACL", "SETUSER", "ann", "on", f">{SECRET}", "~*", "&*", "+@all")
    await admin.aclose()
    good = f"redis://ann:{SECRET}@127.0.0.1:{private_redis.port}/0"
    async with RedisStore(good, namespace="n") as store:
        assert Capability.STORE_CLOCK in store.capabilities
        await store.now()
    bad = f"redis://ann:wrong-{SECRET}@127.0.0.1:{private_redis.port}/0"
    with pytest.raises(ProviderError) as caught:
        await RedisStream(bad, namespace="n").open()
    assert SECRET not in str(caught.value) and "authentication" in str(caught.value)


async def test_closed_provider_raises() -> None:
    sub = RedisSub("redis://127.0.0.1:6379/0", namespace="t_closed")
    await sub.open()
    await sub.aclose()
    await sub.aclose()
    with pytest.raises(ProviderError):
        await sub.publish("x", {})


async def test_more_concurrent_commands_than_pool_size_wait_for_a_connection() -> None:
    """pool_size bounds connections, not callers: the rest wait instead of "Too many connections"."""
    url = "redis://127.0.0.1:6379/0?pool_size=3"
    async with RedisStore(url, namespace="t_pool") as store, RedisStream(url, namespace="t_pool") as stream:
        jobs = await asyncio.gather(*(store.get_job(f"j{i}") for i in range(200)))
        assert jobs == [None] * 200
        await asyncio.gather(*(stream.publish([Message(f"s{i % 7}", {"i": i})]) for i in range(100)))
        await stream.purge()


async def test_subscriptions_are_not_bounded_by_pool_size() -> None:
    """Each subscription holds a connection; MeshCall.exec makes one per call in flight."""
    async with RedisSub("redis://127.0.0.1:6379/0?pool_size=2", namespace="t_pool") as sub:
        subscriptions = [await sub.subscribe(f"topic{i}") for i in range(120)]
        await sub.publish("topic119", {"n": 1})
        got = await subscriptions[-1].get(5)
        assert got is not None and got.payload == {"n": 1}
        for subscription in subscriptions:
            await subscription.aclose()
