"""Faults on a private server: restart mid-workflow, pg_terminate_backend mid-transition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import private_pg
import psycopg
import pytest

from hotmesh.errors import ProviderError
from hotmesh.providers import Message, NewJob, ReadRequest, Transition, TransitionStatus
from hotmesh_postgres import PostgresStore, PostgresStream, PostgresSub

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not private_pg.available(), reason="PostgreSQL server binaries not found"),
    pytest.mark.timeout(120),
]

STEPS = 30


@pytest.fixture(scope="module")
def server() -> Iterator[private_pg.PrivateServer]:
    srv = private_pg.PrivateServer()
    srv.init()
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


async def _worker(store: PostgresStore, stream: PostgresStream, stop: asyncio.Event) -> None:
    """A tiny engine loop: read, apply (outbox), ack; errors are retried by redelivery."""
    request = ReadRequest("work", "engine", "w1", count=5, block=timedelta(seconds=0.5),
                          visibility_timeout=timedelta(seconds=1))
    while not stop.is_set():
        try:
            for delivery in await stream.read(request):
                step = int(delivery.message.body["step"])  # type: ignore[arg-type]
                follow = (Message("work", {"step": step + 1}),) if step + 1 < STEPS else ()
                await store.apply_transition(
                    Transition("wf", f"s{step}", increment={"done": 1}, messages=follow),
                    stream=stream,
                )
                await stream.ack("work", "engine", [delivery.id])
                await asyncio.sleep(0.05)  # slow enough that the restart lands mid-workflow
        except ProviderError:
            await asyncio.sleep(0.2)


async def _done(store: PostgresStore) -> int:
    value = ((await store.get_job("wf")) or {}).get("done", 0)
    return int(value) if isinstance(value, (int, float)) else 0


async def test_restart_mid_workflow_completes_exactly_once(server: private_pg.PrivateServer) -> None:
    ns = "fault_restart"
    async with (
        PostgresStore(server.url, namespace=ns, options={"sweep_interval": 0}) as store,
        PostgresStream(server.url, namespace=ns, options={"poll_interval": 1}) as stream,
    ):
        await store.create_job(NewJob("wf", {"done": 0}, messages=(Message("work", {"step": 0}),)),
                               stream=stream)
        stop = asyncio.Event()
        task = asyncio.create_task(_worker(store, stream, stop))
        for _ in range(200):
            if await _done(store) >= STEPS // 3:
                break
            await asyncio.sleep(0.05)
        before = await _done(store)
        await asyncio.to_thread(server.restart, 0.5)
        assert before < STEPS, "the restart must happen mid-workflow"
        for _ in range(400):
            try:
                job = await store.get_job("wf")
            except ProviderError:
                job = None
            if job and job.get("done") == STEPS:
                break
            await asyncio.sleep(0.1)
        stop.set()
        await task
        assert (await store.get_job("wf")) == {"done": STEPS}, "each step applied exactly once"
        await store.purge()
        await stream.purge()
        assert await store.is_empty() and await stream.is_empty()


async def test_terminated_backend_mid_transition_is_retried_safely(
    server: private_pg.PrivateServer,
) -> None:
    ns = "fault_kill"
    async with PostgresStore(server.url, namespace=ns, options={"sweep_interval": 0}) as store:
        await store.create_job(NewJob("j", {"n": 0}))
        async with await psycopg.AsyncConnection.connect(server.url) as blocker:
            # Hold the job's row lock so the transition is stuck inside its transaction.
            await blocker.execute(f'SELECT 1 FROM "hotmesh_{ns}".jobs WHERE job_id = %s FOR UPDATE',
                                  ("j",))
            t = Transition("j", "step-1", increment={"n": 1}, read=("n",))
            pending = asyncio.create_task(store.apply_transition(t))
            victim = None
            async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as admin:
                for _ in range(100):
                    cur = await admin.execute(
                        "SELECT pid FROM pg_stat_activity WHERE query LIKE '%%store_apply%%'"
                        " AND pid <> pg_backend_pid() AND state = 'active'"
                    )
                    row = await cur.fetchone()
                    if row:
                        victim = row[0]
                        break
                    await asyncio.sleep(0.05)
                assert victim is not None, "the transition never reached the server"
                await admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
            await asyncio.sleep(0.2)
            await blocker.commit()  # release the lock: the provider's retry can now proceed
        result = await pending  # retried once on a fresh connection by the provider
        assert result.status is TransitionStatus.APPLIED and result.fields == {"n": 1}
        again = await store.apply_transition(t)
        assert again.status is TransitionStatus.DUPLICATE and again.fields == {"n": 1}
        assert await store.get_job("j") == {"n": 1}, "never double applied"
        await store.purge()


async def test_subscription_and_blocked_read_survive_restart(
    server: private_pg.PrivateServer,
) -> None:
    ns = "fault_listen"
    async with (
        PostgresSub(server.url, namespace=ns) as sub,
        PostgresStream(server.url, namespace=ns, options={"poll_interval": 30}) as stream,
    ):
        subscription = await sub.subscribe("t")
        await stream.read(ReadRequest("q", "g", "c"))
        await asyncio.to_thread(server.restart, 0.2)
        got = None
        for attempt in range(50):  # the LISTEN connection reconnects with a short backoff
            try:
                await sub.publish("t", {"n": attempt})
            except ProviderError:
                pass
            got = await subscription.get(0.2)
            if got is not None:
                break
        assert got is not None, "the listener re-LISTENed after the restart"
        reader = asyncio.create_task(
            stream.read(ReadRequest("q", "g", "c", block=timedelta(seconds=10)))
        )
        await asyncio.sleep(0.3)
        started = asyncio.get_running_loop().time()
        await stream.publish([Message("q", {"after": True})])
        deliveries = await reader
        assert [d.message.body for d in deliveries] == [{"after": True}]
        assert asyncio.get_running_loop().time() - started < 2, "woken by NOTIFY after restart"
        await subscription.aclose()
        await stream.purge()
        await sub.purge()
