"""A recurring, cyclical workflow, then interrupt it (seed README: MeshFlow "Cyclical Workflow").

The workflow calls an activity, sleeps durably, and repeats until it is interrupted. The seed's
workflow sleeps "1 week" (the timer lives in the backend, so restarts do not matter); this demo
sleeps "1 second" so that it finishes quickly. To stay short, it runs the worker and the client
in one process; they cooperate only through the backend, exactly as they would in two (see
meshflow_proxy_activities.py). Set HOTMESH_URL to run it on a server backend.
"""

from __future__ import annotations

import asyncio
import uuid

from hotmesh import MeshFlow, errors, workflow
from hotmesh.meshflow import WorkflowHandle

TASK_QUEUE = "meshflow-cyclical"  # this example's own queue (the seed uses "default")


async def status_diagnostic(some_value: int) -> str:
    """A legacy function to call once a week (here: once a second)."""
    info = MeshFlow.activity_info()  # which workflow this call serves
    print(f"status_diagnostic({some_value}) for {info.workflow_id}", flush=True)
    return "ok"


acts = workflow.proxy_activities([status_diagnostic])


async def recurring_example(some_value: int) -> None:
    await acts.status_diagnostic(some_value)
    while await workflow.sleep_for("1 second"):
        await acts.status_diagnostic(some_value)


async def cycles(handle: WorkflowHandle) -> int:
    """Completed cycles, read from the workflow's durable history (any process can read it)."""
    return sum(1 for e in await handle.history() if e["type"] == "activity" and e["status"] == "completed")


async def main() -> None:
    await MeshFlow.Worker.create(task_queue=TASK_QUEUE, workflow=recurring_example)
    client = MeshFlow.Client()
    workflow_id = f"myRecurring123-{uuid.uuid4().hex[:12]}"

    # start the workflow; it runs until interrupted
    await client.workflow.start(
        recurring_example, args=[55], task_queue=TASK_QUEUE, workflow_id=workflow_id, await_=False
    )
    await asyncio.sleep(2.5)  # let it run a few cycles

    # get the workflow handle and interrupt it
    handle = client.workflow.get_handle(task_queue=TASK_QUEUE, workflow_id=workflow_id)
    interrupted = await handle.interrupt()
    seen = await cycles(handle)
    try:
        await handle.result(timeout=10)
        raise AssertionError("an interrupted workflow has no result")
    except errors.InterruptedError as exc:
        print(f"interrupted={interrupted} after {seen} cycles; result() raised InterruptedError: {exc}")
    await asyncio.sleep(1.2)  # longer than a cycle: none runs after the interrupt
    after = await cycles(handle) - seen
    print(f"status: {await handle.status()}; {after} cycles after the interrupt")
    assert interrupted and seen >= 2 and after == 0
    await MeshFlow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
