"""One dead letter per poison task, however many copies of its message were in flight.

A store that cannot publish atomically re-emits a workflow task's follow-ups when that task is
redelivered after a crash between its publish and its ack (Engine rule 2), so an activity
message can exist twice. If the activity kills its workers, both copies are given up on; the
first decides the outcome and is dead-lettered, the second is superseded and only acked.
Seen on a Redis Cluster in CI (the kit's M-3 test found two dead letters for one poison).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from hotmesh import MeshFlow, workflow
from hotmesh.config import load_config
from hotmesh.connection import Connection
from hotmesh.engine.engine import Engine
from hotmesh.engine.router import RetryPolicy
from hotmesh.errors import WorkerLostError, WorkflowFailed
from hotmesh.meshflow import WorkflowHandle
from hotmesh.meshflow import _records as rec
from hotmesh.providers import Delivery, Message, ReadRequest

pytestmark = pytest.mark.anyio

async def stalls() -> str:
    await asyncio.Event().wait()  # until the worker shuts down: the tests give its task up by hand
    return "never read"


acts = workflow.proxy_activities([stalls], start_to_close_timeout=300)


async def waits_on_stalls() -> str:
    return str(await acts.stalls())


async def test_a_hook_that_says_superseded_gets_the_delivery_acked_not_dead_lettered() -> None:
    connection = await Connection(load_config(url="memory://superseded", environ={})).open()
    engine = Engine(connection)
    asked: list[str] = []

    async def handler(delivery: Delivery) -> None:
        raise RuntimeError("broken")

    async def on_dead(delivery: Delivery, exc: BaseException) -> bool:
        asked.append(str(delivery.message.body["n"]))
        return delivery.message.body["n"] == 2  # the second copy: already settled elsewhere

    policy = RetryPolicy(max_attempts=1)
    await engine.serve("work", handler, group="g", retry=policy, on_dead_letter=on_dead)
    await connection.stream.publish([Message("work", {"n": 1}), Message("work", {"n": 2})])
    for _ in range(200):
        if len(asked) == 2 and await connection.stream.backlog("work", "g") == 0:
            break
        await asyncio.sleep(0.02)
    await engine.stop()
    assert sorted(asked) == ["1", "2"]
    letters = await connection.stream.dead_letters("work", "g")
    assert [d.message.body["n"] for d in letters] == [1]
    assert await connection.stream.backlog("work", "g") == 0  # the superseded copy was acked
    await connection.aclose()


async def _stalled_workflow() -> tuple[str, MeshFlow.Worker, WorkflowHandle]:
    """A worker on a fresh memory queue and one workflow waiting on its never-ending activity."""
    queue = f"dead-{uuid.uuid4().hex[:6]}"
    config = load_config(url=f"memory://{queue}", environ={})
    worker = await MeshFlow.Worker.create(connection=config, task_queue=queue, workflow=waits_on_stalls)
    handle = await MeshFlow.Client(connection=config).workflow.start(waits_on_stalls, task_queue=queue)
    return queue, worker, handle


async def test_two_copies_of_a_poison_activity_leave_one_outcome_and_one_dead_letter() -> None:
    queue, worker, handle = await _stalled_workflow()
    stream = worker.connection.stream
    spy = ReadRequest(stream=rec.activity_stream(queue), group="spy", consumer="spy", count=1, block=timedelta(seconds=5))
    (seen,) = await stream.read(spy)  # a fresh group starts at the beginning (Stream rule 2)
    first = Delivery("copy-1", seen.message, 7, rec.GROUP)
    second = Delivery("copy-2", seen.message, 7, rec.GROUP)
    lost = WorkerLostError("killed every worker that took it")

    assert await worker._activity_task_dead(first, lost) is False  # decides the outcome: dead-letter it
    assert await worker._activity_task_dead(second, lost) is True  # a copy of a settled task: ack it
    # The same delivery again (it wrote the failure, then crashed before dead-lettering): still a dead letter.
    assert await worker._activity_task_dead(first, lost) is False
    with pytest.raises(WorkflowFailed, match="WorkerLostError"):
        await handle.result(timeout=30)
    await worker.shutdown(grace=0.1)


async def test_run_requests_of_a_poison_workflow_leave_one_failure_and_one_dead_letter() -> None:
    queue, worker, handle = await _stalled_workflow()
    request = rec.run_message(queue, handle.workflow_id)  # e.g. two events' wake-ups in flight at once
    first = Delivery("run-1", request, 7, rec.GROUP)
    second = Delivery("run-2", request, 7, rec.GROUP)
    lost = WorkerLostError("its replay killed every worker that took it")

    assert await worker._workflow_task_dead(first, lost) is False  # fails the workflow: dead-letter it
    assert await worker._workflow_task_dead(second, lost) is True  # the workflow already ended: ack it
    assert await worker._workflow_task_dead(first, lost) is False  # its own failure, after a crash
    with pytest.raises(WorkflowFailed, match="WorkerLostError"):
        await handle.result(timeout=30)
    await worker.shutdown(grace=0.1)
