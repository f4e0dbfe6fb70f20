"""URL forms and options (issue 6, deliverable 2): passwords never in errors."""

from __future__ import annotations

import pytest

from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import Capability, Role, default_registry
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
