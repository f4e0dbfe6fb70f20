"""Pause a workflow until a signal arrives (seed README: MeshFlow "Wait for Signal").

Run ``python examples/meshflow_wait_for_signal.py``: it starts a worker process that serves the
``wait_for_example`` workflow; this process (the client) starts the workflow, which pauses, then
awakens it with a signal and prints the workflow's result: the signal's payload. With no
configuration both processes share the embedded SQLite file; set HOTMESH_URL to run the same
code on a server backend.

Signal ids are global to the backend (any workflow may wait for any id), so where the seed uses
the fixed ``myWorkflow123`` and ``my-sig-nal``, this demo suffixes both with a fresh run id:
re-runs and concurrent runs against a shared server never wake each other's workflows.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from typing import Any

from hotmesh import MeshFlow, workflow

TASK_QUEUE = "meshflow-wait-for-signal"  # this example's own queue (the seed uses "default")


async def wait_for_example(signal_id: str) -> Any:
    return await workflow.wait_for(signal_id)  # resumes with the signal's payload
    # continue processing, use the payload, etc...


async def worker() -> None:
    flow_worker = await MeshFlow.Worker.create(task_queue=TASK_QUEUE, workflow=wait_for_example)
    print("worker: serving workflow 'wait_for_example'", flush=True)
    await flow_worker.run()  # until SIGTERM/SIGINT, then a graceful shutdown


async def client() -> None:
    run = uuid.uuid4().hex[:12]
    workflow_id, signal_id = f"myWorkflow123-{run}", f"my-sig-nal-{run}"
    client = MeshFlow.Client()

    # start a workflow; it will immediately pause
    started = await client.workflow.start(
        workflow_name="wait_for_example",
        args=[signal_id],
        task_queue=TASK_QUEUE,
        workflow_id=workflow_id,
        await_=False,
    )
    print(f"client: started {workflow_id}, {await started.status()}")

    # awaken the workflow by sending a signal (buffered if it has not reached wait_for yet)
    await client.signal(signal_id, {"hello": "world"})

    # get the workflow handle and await the result
    handle = client.workflow.get_handle(task_queue=TASK_QUEUE, workflow_id=workflow_id)
    result = await handle.result(timeout=30)
    print(f"client: {workflow_id} returned {result}")
    assert result == {"hello": "world"}
    await MeshFlow.shutdown()


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        asyncio.run(worker())
        return
    process = subprocess.Popen([sys.executable, __file__, "--worker"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().strip()  # wait until the worker serves the queue
        if not ready:
            sys.exit("the worker process failed to start")
        print(ready)
        asyncio.run(client())
    finally:
        process.terminate()  # SIGTERM: the worker shuts down gracefully
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()  # fail, but never leave a worker behind
            raise


if __name__ == "__main__":
    main()
