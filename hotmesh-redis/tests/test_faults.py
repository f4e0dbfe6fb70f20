"""Server restarts (issue 6, deliverable 5): scripts reload after NOSCRIPT, sub resubscribes,
stream state survives with AOF."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio

from hotmesh.errors import ProviderError
from hotmesh.providers import Message, NewJob, ReadRequest, Survives, Transition, TransitionStatus
from hotmesh_redis import RedisStore, RedisStream, RedisSub

from .conftest import PrivateRedis

pytestmark = pytest.mark.anyio


async def _retry(make: object, attempts: int = 50) -> object:
    for _ in range(attempts):
        try:
            return await make()  # type: ignore[operator]
        except ProviderError:
            await anyio.sleep(0.1)
    raise AssertionError("no recovery")


async def test_restart_keeps_state_and_reloads_scripts(private_redis: PrivateRedis) -> None:
    url = private_redis.url
    async with RedisStore(url, namespace="t_fault") as store, RedisStream(url, namespace="t_fault") as stream:
        await store.create_job(NewJob("j", {"n": 0}), stream=stream)
        first = await store.apply_transition(
            Transition("j", "s1", increment={"n": 1}, messages=(Message("q", {"i": 1}),)), stream=stream
        )
        assert first.published
        private_redis.stop()
        with pytest.raises(ProviderError) as caught:
            await store.get_job("j")
        assert str(private_redis.port) in str(caught.value)
        private_redis.start()  # AOF replays; the script cache is empty now (NOSCRIPT)
        again = await _retry(lambda: store.apply_transition(Transition("j", "s1", increment={"n": 1}, read=("n",))))
        assert again.status is TransitionStatus.DUPLICATE and again.fields == {"n": 1}  # type: ignore[attr-defined]
        deliveries = await _retry(lambda: stream.read(ReadRequest("q", "g", "c")))
        assert [d.message.body for d in deliveries] == [{"i": 1}]  # type: ignore[attr-defined]
        await store.purge()
        await stream.purge()


async def test_sub_resubscribes_after_restart(private_redis: PrivateRedis) -> None:
    async with RedisSub(private_redis.url, namespace="t_fault") as sub:
        subscription = await sub.subscribe("topic")
        patterned = await sub.subscribe("to*", pattern=True)
        private_redis.stop()
        private_redis.start()
        got = None
        for i in range(100):  # publish until the reader has reconnected and resubscribed
            try:
                await sub.publish("topic", {"i": i})
            except ProviderError:
                pass
            got = await subscription.get(0.1)
            if got is not None:
                break
        assert got is not None and got.topic == "topic"
        assert (await patterned.get(2)) is not None
        await subscription.aclose()
        await patterned.aclose()


async def test_info_reads_what_a_write_survives_from_the_server(private_redis: PrivateRedis) -> None:
    """B-9 / C9: the level follows the server's AOF settings as they change, so the kit's
    ``--hotmesh-require-durability`` lint judges the configuration actually running."""
    async with RedisStore(private_redis.url, namespace="t_lint") as store:
        client = redis.asyncio.Redis.from_url(private_redis.url)
        try:
            assert (await store.info()).survives is Survives.POWER_LOSS  # appendfsync always
            await client.config_set("appendfsync", "everysec")
            assert (await store.info()).survives is Survives.PROCESS_CRASH
            await client.config_set("appendonly", "no")
            info = await store.info()
            assert info.survives is Survives.NOTHING and "lost on a crash" in info.durability
        finally:
            await client.aclose()
