"""Engine pieces on the memory reference: durations, router retries and dead letters, quorum."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from hotmesh.config import load_config
from hotmesh.connection import Connection
from hotmesh.engine.durations import Interval, parse_duration
from hotmesh.engine.engine import Engine
from hotmesh.engine.quorum import roll_call
from hotmesh.engine.router import RetryPolicy
from hotmesh.errors import ValidationError
from hotmesh.providers import Delivery, Message

pytestmark = pytest.mark.anyio


def test_durations() -> None:
    assert parse_duration("15 minutes") == timedelta(minutes=15)
    assert parse_duration("1 day") == timedelta(days=1)
    assert parse_duration("1 hour 30 minutes") == timedelta(minutes=90)
    assert parse_duration(2.5) == timedelta(seconds=2.5)
    for bad in ("-1", "soon", "3 parsecs", -1, 0, True):
        with pytest.raises(ValidationError):
            parse_duration(bad)  # type: ignore[arg-type]
    assert Interval("*/5 * * * *").expression == "*/5 * * * *"
    with pytest.raises(ValidationError, match="cron"):
        Interval("61 * * * *")


async def _engine(name: str) -> tuple[Connection, Engine]:
    connection = await Connection(load_config(url=f"memory://{name}", environ={})).open()
    return connection, Engine(connection)


async def test_router_retries_with_backoff_then_dead_letters_keeping_the_error() -> None:
    connection, engine = await _engine("router")
    attempts: list[int] = []
    dead: list[str] = []

    async def handler(delivery: Delivery) -> None:
        attempts.append(delivery.delivery_count)
        raise RuntimeError("always broken")

    async def on_dead(delivery: Delivery, exc: BaseException) -> None:
        dead.append(str(exc))

    policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=10))
    await engine.serve("work", handler, group="g", retry=policy, on_dead_letter=on_dead)
    await connection.stream.publish([Message("work", {"n": 1})])
    for _ in range(200):
        if dead:
            break
        await asyncio.sleep(0.02)
    await engine.stop()
    assert attempts == [1, 2, 3]
    assert dead == ["always broken"]
    letters = await connection.stream.dead_letters("work", "g")
    assert len(letters) == 1 and "always broken" in letters[0].error
    await connection.aclose()


async def test_quorum_roll_call_lists_live_engines_and_their_streams() -> None:
    connection, engine = await _engine("quorum")

    async def handler(delivery: Delivery) -> None:
        return None

    await engine.serve("orders", handler, group="g")
    profiles = await roll_call(connection.sub, wait=0.3)
    await engine.stop()
    assert [p["engine_id"] for p in profiles] == [engine.engine_id]
    assert profiles[0]["streams"] == ["orders"]
    await connection.aclose()


async def test_routers_trim_what_every_group_acked() -> None:
    """Streams stay bounded: a router trims fully acked messages beyond RETAIN as it goes."""
    from hotmesh.engine.router import RETAIN, TRIM_EVERY

    connection, engine = await _engine("trim")
    handled: list[int] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(1)

    await engine.serve("busy", handler, group="g", concurrency=50)
    total = RETAIN + 2 * TRIM_EVERY
    await connection.stream.publish([Message("busy", {"n": i}) for i in range(total)])
    for _ in range(500):
        if len(handled) == total and await connection.stream.length("busy") <= RETAIN + TRIM_EVERY:
            break
        await asyncio.sleep(0.02)
    await engine.stop()
    assert len(handled) == total
    assert await connection.stream.length("busy") <= RETAIN + TRIM_EVERY
    assert await connection.stream.backlog("busy", "g") == 0
    await connection.aclose()


async def test_a_final_transition_acks_its_delivery_and_the_router_does_not_ack_again() -> None:
    """Store rule 6b through the engine: ``final=True`` folds the ack into the transition; a
    non-final transition, or one that is not applied, leaves the ack to the router."""
    from hotmesh.providers import NewJob, Transition

    connection, engine = await _engine("fold")
    calls: list[str] = []
    results: dict[str, bool] = {}
    real_ack = connection.stream.ack

    async def counting_ack(stream: str, group: str, ids: list[str]) -> int:
        calls.append(stream)
        return await real_ack(stream, group, ids)

    connection.stream.ack = counting_ack  # type: ignore[method-assign]
    await connection.store.create_job(NewJob("j", {}))

    async def handler(delivery: Delivery) -> None:
        name = str(delivery.message.body["name"])
        final = name != "not-final"
        step = "same" if name == "duplicate" else name
        result = await engine.transition(Transition("j", step, set={name: 1}), final=final)
        results[name] = result.acked

    await engine.serve("work", handler, group="g", concurrency=1)
    await connection.stream.publish([Message("work", {"name": n}) for n in ("same", "not-final")])
    await connection.stream.publish([Message("work", {"name": "duplicate"})])
    for _ in range(200):
        if len(results) == 3:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    await engine.stop()
    assert results == {"same": True, "not-final": False, "duplicate": False}
    assert calls == ["work", "work"], "the router acked a delivery its transition already acked"
    assert await connection.stream.backlog("work", "g") == 0
    await connection.aclose()
