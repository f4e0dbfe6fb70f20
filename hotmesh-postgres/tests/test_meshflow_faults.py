"""MeshFlow on a private server under faults: crash-restart, terminated backends, a few seconds down.

Workflows run in worker *processes* (the kit's ``hotmesh_conformance._meshflow_worker``); the
test process only starts them, breaks the server and checks the outcome: every workflow completes
once with the right result, every activity ran at least once (the kit's ledger), no worker process
died, and nothing is left pending (deliveries, timers, dead letters, running jobs).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import private_pg
import psycopg
import pytest

from hotmesh import Connection, MeshFlow, load_config
from hotmesh._runtime import runtime
from hotmesh.errors import ProviderError
from hotmesh.meshflow.client import WorkflowHandle
from hotmesh_conformance import _flows
from hotmesh_conformance._workers import QUEUE, FlowWorkers

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not private_pg.available(), reason="PostgreSQL server binaries not found"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def server() -> Iterator[private_pg.PrivateServer]:
    srv = private_pg.PrivateServer()
    srv.init()
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture
async def env(
    server: private_pg.PrivateServer, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[MeshFlow.Client, FlowWorkers]]:
    namespace = "mf_" + request.node.name.removeprefix("test_")[:20]
    config = load_config(
        url=server.url, store=server.url, stream=server.url, sub=server.url,
        namespace=namespace, timer_lease=5, environ={},
    )  # fmt: skip
    workers = FlowWorkers(config, tmp_path / "ledger.txt")
    # A Connection of our own (not the config) so this test closes exactly what it opened.
    connection = Connection(config)
    try:
        yield MeshFlow.Client(connection=connection), workers
    finally:
        workers.stop()
        engine = runtime.engines.pop(id(connection), None)
        with contextlib.suppress(Exception):
            if engine is not None:
                await engine.stop(1.0)
        with contextlib.suppress(Exception):
            await connection.aclose()
        with contextlib.suppress(psycopg.Error):
            async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "hotmesh_{namespace}" CASCADE')


def _shape(i: int) -> list[Any]:
    return [["act", i], ["act", 1000 + i], ["sleep", 0.2], ["act", 2000 + i]]


ACTIVITIES_PER_FLOW = 3


async def _start(client: MeshFlow.Client, count: int) -> list[WorkflowHandle]:
    handles: list[WorkflowHandle] = []
    for first in range(0, count, 25):
        handles += await asyncio.gather(
            *(
                client.workflow.start(_flows.run_shape, args=[_shape(i)], task_queue=QUEUE, workflow_id=f"wf-{i}")
                for i in range(first, min(first + 25, count))
            )
        )
    return handles


async def _wait_for_progress(workers: FlowWorkers, activities: int) -> None:
    deadline = time.monotonic() + 30
    while len(workers.runs()) < activities:
        assert time.monotonic() < deadline, f"only {len(workers.runs())} activities ran in 30 s"
        await asyncio.sleep(0.02)


async def _result(handle: WorkflowHandle) -> Any:
    """The result; the test process's own connections may be broken by the fault too."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return await handle.result(timeout=max(1.0, deadline - time.monotonic()))
        except ProviderError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def _leftovers(url: str, namespace: str) -> dict[str, Any]:
    """What is still pending in the namespace (everything should be empty)."""
    s = f'"hotmesh_{namespace}"'
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:

        async def rows(query: str) -> list[tuple[Any, ...]]:
            return await (await conn.execute(query)).fetchall()

        return {
            "deliveries": await rows(f"SELECT stream, grp, count(*) FROM {s}.deliveries GROUP BY 1, 2"),
            "timers": await rows(f"SELECT timer_id FROM {s}.timers"),
            "dead_letters": await rows(f"SELECT stream, grp, error FROM {s}.dead_letters"),
            "running": await rows(
                f"SELECT job_id FROM {s}.jobs WHERE job_id LIKE 'mf:%' AND fields->>'status' = 'running'"
            ),
        }


async def _check_all_done(
    client: MeshFlow.Client, workers: FlowWorkers, handles: list[WorkflowHandle], url: str
) -> None:
    results = await asyncio.gather(*(_result(h) for h in handles))
    for i, result in enumerate(results):
        assert result == _flows.evaluate(_shape(i), {}), f"wf-{i}"
    for handle in handles:
        assert await handle.status() == "completed"
        events = await handle.history()
        assert len(events) == len(_shape(0)), (handle.workflow_id, events)
        assert all(e["status"] == "completed" for e in events), (handle.workflow_id, events)
        assert len({e["seq"] for e in events}) == len(events), "one outcome per durable call"
    runs = collections.Counter((r[1], r[2]) for r in workers.runs())
    assert {name for name, _ in runs} == {"double"}
    assert len(runs) == ACTIVITIES_PER_FLOW * len(handles), "every activity ran at least once"
    # The last acks follow the result announcement: give them a moment.
    deadline = time.monotonic() + 10
    while (left := await _leftovers(url, workers.config.namespace)) != {
        "deliveries": [], "timers": [], "dead_letters": [], "running": []
    }:  # fmt: skip
        assert time.monotonic() < deadline, f"left pending: {left}"
        await asyncio.sleep(0.2)
    assert workers.dead() == [], "a worker process died"


async def test_crash_restart_mid_workflows_each_completes_once(
    server: private_pg.PrivateServer, env: tuple[MeshFlow.Client, FlowWorkers]
) -> None:
    """100 workflows (3 activities + a sleep each) in a worker process; the server crashes
    (``pg_ctl stop -m immediate``: recovery from the WAL) and comes back mid-run."""
    client, workers = env
    workers.start(visibility=3.0)
    handles = await _start(client, 100)
    total = ACTIVITIES_PER_FLOW * len(handles)
    await _wait_for_progress(workers, total // 4)
    await asyncio.to_thread(server.restart, 0.5, "immediate")
    assert len({(r[1], r[2]) for r in workers.runs()}) < total, "the crash must land mid-run"
    await _check_all_done(client, workers, handles, server.url)


async def test_terminated_backends_mid_transitions_are_retried_safely(
    server: private_pg.PrivateServer, env: tuple[MeshFlow.Client, FlowWorkers]
) -> None:
    """``pg_terminate_backend`` on every client connection, three times while 100 workflows run:
    the pools reconnect, transitions are retried without duplicate outcomes."""
    client, workers = env
    workers.start(visibility=3.0)
    handles = await _start(client, 100)
    total = ACTIVITIES_PER_FLOW * len(handles)
    killed = 0
    async with await psycopg.AsyncConnection.connect(server.url, autocommit=True) as admin:
        for round_ in range(3):
            await _wait_for_progress(workers, total * (round_ + 1) // 5)
            cur = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            row = await cur.fetchone()
            killed += int(row[0]) if row else 0
    assert killed > 0
    assert len({(r[1], r[2]) for r in workers.runs()}) < total, "the kills must land mid-run"
    await _check_all_done(client, workers, handles, server.url)


async def test_workers_outlive_a_server_down_for_seconds(
    server: private_pg.PrivateServer, env: tuple[MeshFlow.Client, FlowWorkers]
) -> None:
    """The server is down for 5 s mid-run: both worker processes keep retrying (with backoff)
    instead of dying, and finish the work once it is back."""
    client, workers = env
    workers.start(visibility=3.0)
    workers.start(visibility=3.0)
    handles = await _start(client, 40)
    await _wait_for_progress(workers, ACTIVITIES_PER_FLOW * len(handles) // 4)
    await asyncio.to_thread(server.stop, "immediate")
    try:
        await asyncio.sleep(5)
        assert workers.dead() == [], "a worker process died while the server was down"
    finally:
        await asyncio.to_thread(server.start)
    await _check_all_done(client, workers, handles, server.url)
