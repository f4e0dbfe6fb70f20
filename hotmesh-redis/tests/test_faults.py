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


async def test_a_subscribe_that_failed_while_redis_was_down_does_not_block_the_next(
    private_redis: PrivateRedis,
) -> None:
    """A subscribe sent while the server is down fails; once it is back, subscribing to the same
    channel again works (it used to wait forever for a confirmation of the failed one: found by
    the MeshCall crash test, whose callers retry exec with the same id during the outage)."""
    async with RedisSub(private_redis.url, namespace="t_fault") as sub:
        first = await sub.subscribe("warmup")  # the hub and its connection exist
        private_redis.stop()
        await anyio.sleep(1.0)  # the reader has seen the connection drop: SUBSCRIBE cannot be sent
        with pytest.raises(ProviderError):
            await sub.subscribe("result")
        private_redis.start()
        subscription = None
        with anyio.move_on_after(40):  # without the fix every attempt waits for a lost confirmation
            while subscription is None:  # until the client reconnects
                try:
                    subscription = await sub.subscribe("result")
                except ProviderError:
                    await anyio.sleep(0.2)
        assert subscription is not None, "the channel never subscribed again after the restart"
        await sub.publish("result", {"ok": True})
        got = await subscription.get(5)
        assert got is not None and got.payload == {"ok": True}
        await subscription.aclose()
        await first.aclose()


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
