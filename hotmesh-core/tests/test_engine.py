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
from hotmesh.errors import ProviderError, ValidationError
from hotmesh.providers import Capability, Delivery, Message, ReadRequest

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


async def _lost_times(connection: Connection, stream: str, times: int) -> None:
    """Take the stream's message ``times`` times without an outcome, as workers that died would."""
    request = ReadRequest(stream, "g", "dying", visibility_timeout=timedelta(milliseconds=20))
    for _ in range(times):
        for _ in range(100):
            if await connection.stream.read(request):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.03)


async def _serve_suspect(name: str, *, culprit: bool) -> tuple[list[int], list[str]]:
    """A message lost three times (max_attempts=3) reaches a router; with ``culprit`` its earlier
    probation left a marker, as when the probation's worker died."""
    connection, engine = await _engine(name)
    ran: list[int] = []
    dead: list[str] = []

    async def handler(delivery: Delivery) -> None:
        ran.append(delivery.delivery_count)

    async def on_dead(delivery: Delivery, exc: BaseException) -> None:
        dead.append(f"{type(exc).__name__}: {exc}")

    (message_id,) = await connection.stream.publish([Message("work", {"n": 1})])
    await _lost_times(connection, "work", 3)
    if culprit:
        await connection.store.set_cached(f"hotmesh:probation:work:g:{message_id}", 4, ttl=None)
    policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=10))
    await engine.serve("work", handler, group="g", retry=policy, on_dead_letter=on_dead,
                       visibility_timeout=timedelta(milliseconds=50))  # fmt: skip
    for _ in range(200):
        if (ran or dead) and await connection.stream.backlog("work", "g") == 0:
            break
        await asyncio.sleep(0.02)
    await engine.stop()
    assert await connection.stream.backlog("work", "g") == 0
    assert await connection.store.get_cached(f"hotmesh:probation:work:g:{message_id}") == (False, None)
    return ran, dead


async def test_a_task_lost_more_often_than_its_retries_runs_once_more_on_probation() -> None:
    """A bystander of a crashing task: lost 3 times, it runs a 4th time (alone) and completes."""
    ran, dead = await _serve_suspect("probation-ok", culprit=False)
    assert ran == [4] and dead == []


async def test_a_task_whose_probation_killed_its_worker_is_given_up_with_worker_lost() -> None:
    """The culprit: its probation's marker is found, so it is dead-lettered (WorkerLostError
    through the hook, the workflow or call fails) and never run again."""
    ran, dead = await _serve_suspect("probation-lost", culprit=True)
    assert ran == []
    assert len(dead) == 1 and dead[0].startswith("WorkerLostError: work/") and "ran alone" in dead[0]


class _StoreAway:
    """A store whose cache cannot be reached (everything else forwards)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def get_cached(self, key: str) -> tuple[bool, object]:
        raise ProviderError("store unreachable (test)")


async def test_a_probation_the_store_cannot_record_is_not_the_tasks_failure() -> None:
    """With the store away, a suspect is neither run nor dead-lettered: it waits for its
    visibility timeout and is tried again later."""
    connection, _ = await _engine("probation-away")
    away = await Connection(connection.config, store=_StoreAway(connection.store), stream=connection.stream).open()  # type: ignore[arg-type]
    engine = Engine(away)
    ran: list[int] = []
    dead: list[str] = []

    async def handler(delivery: Delivery) -> None:
        ran.append(delivery.delivery_count)

    async def on_dead(delivery: Delivery, exc: BaseException) -> None:
        dead.append(str(exc))

    await connection.stream.publish([Message("work", {"n": 1})])
    await _lost_times(connection, "work", 3)
    policy = RetryPolicy(max_attempts=3, initial_interval=timedelta(milliseconds=10))
    await engine.serve("work", handler, group="g", retry=policy, on_dead_letter=on_dead,
                       visibility_timeout=timedelta(seconds=30))  # fmt: skip
    await asyncio.sleep(0.3)
    await engine.stop()
    assert ran == [] and dead == []
    assert await connection.stream.backlog("work", "g") == 1
    assert await connection.stream.dead_letters("work", "g") == []


async def _run_long_task(name: str, *, extend: bool) -> list[tuple[str, int]]:
    """Two engines serve one stream with a 0.3 s visibility timeout; a task takes 1.2 s."""
    connection, engine = await _engine(name)
    other = Engine(connection)
    runs: list[tuple[str, int]] = []

    def handler_of(who: str) -> object:
        async def handler(delivery: Delivery) -> None:
            runs.append((who, delivery.delivery_count))
            await asyncio.sleep(1.2)

        return handler

    if not extend:  # a stream without rule 11: the router must not try to renew
        stream = connection.stream
        setattr(stream, "declared", stream.capabilities - {Capability.STREAM_EXTEND})  # noqa: B010
    lease = timedelta(milliseconds=300)
    await engine.serve("long", handler_of("first"), group="g", visibility_timeout=lease)  # type: ignore[arg-type]
    await connection.stream.publish([Message("long", {"n": 1})])
    for _ in range(100):
        if runs:
            break
        await asyncio.sleep(0.01)
    await other.serve("long", handler_of("second"), group="g", visibility_timeout=lease)  # type: ignore[arg-type]
    for _ in range(300):
        if await connection.stream.backlog("long", "g") == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.gather(engine.stop(), other.stop())
    await connection.aclose()
    return runs


async def test_a_task_longer_than_its_visibility_timeout_keeps_its_lease_and_runs_once() -> None:
    """Stream rule 11: the router renews the lease of a task running past a third of its
    visibility timeout, so a 1.2 s task with a 0.3 s lease is not handed to the other engine."""
    assert await _run_long_task("lease-kept", extend=True) == [("first", 1)]


async def test_without_stream_extend_a_long_task_is_redelivered() -> None:
    """The control: the same task on a stream that cannot renew comes back to the other engine
    after the visibility timeout (at least once), which is what the heartbeat prevents."""
    runs = await _run_long_task("lease-lost", extend=False)
    assert runs[0] == ("first", 1) and len(runs) > 1, runs
