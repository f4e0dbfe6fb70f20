"""Wait for several signals at once (seed README: MeshFlow "Collate Multiple Signals").

The workflow awaits two signals with ``asyncio.gather``: it awakens only once BOTH have arrived,
in any order. To stay short, this demo runs the worker and the client in one process; they
cooperate only through the backend, exactly as they would in two (see
meshflow_wait_for_signal.py). Set HOTMESH_URL to run it on a server backend.

Signal ids are global to the backend, so where the seed uses the fixed ``myWorkflow123``,
``my-sig-nal-1`` and ``my-sig-nal-2``, this demo suffixes them with a fresh run id.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hotmesh import MeshFlow, workflow

TASK_QUEUE = "meshflow-collate-signals"  # this example's own queue (the seed uses "default")


async def wait_for_example(run: str) -> list[Any]:
    s1, s2 = await asyncio.gather(
        workflow.wait_for(f"my-sig-nal-1-{run}"),
        workflow.wait_for(f"my-sig-nal-2-{run}"),
    )
    # do something with the signal payloads (s1, s2)
    return [s1, s2]


async def main() -> None:
    await MeshFlow.Worker.create(task_queue=TASK_QUEUE, workflow=wait_for_example)
    client = MeshFlow.Client()
    run = uuid.uuid4().hex[:12]
    workflow_id = f"myWorkflow123-{run}"
    await client.workflow.start(
        wait_for_example, args=[run], task_queue=TASK_QUEUE, workflow_id=workflow_id, await_=False
    )
    handle = client.workflow.get_handle(task_queue=TASK_QUEUE, workflow_id=workflow_id)

    # send 2 signals to awaken the workflow; order is unimportant
    await client.signal(f"my-sig-nal-2-{run}", 12345)
    await asyncio.sleep(0.5)
    print(f"after my-sig-nal-2: {await handle.status()}")  # still waiting for my-sig-nal-1
    assert await handle.status() == "running"
    await client.signal(f"my-sig-nal-1-{run}", True)

    # await the collated result
    result = await handle.result(timeout=30)
    print(f"after my-sig-nal-1: {await handle.status()}, result {result}")
    assert result == [True, 12345]
    await MeshFlow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
