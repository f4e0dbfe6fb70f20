"""Orchestrate unpredictable activities (seed README: MeshFlow "Proxy Activities").

Run ``python examples/meshflow_proxy_activities.py``: it starts a worker process that serves the
``example`` workflow and its activities, then starts the workflow from this process (the client)
and prints the result. Both activities fail at random half the time, yet the workflow always
succeeds: each failed attempt is recorded and retried by the worker. With no configuration both
processes share the embedded SQLite file; set HOTMESH_URL (e.g. redis://127.0.0.1:6379) to run
the same code on a server backend.

The seed's defaults retry after 1 s, 2 s, 4 s...; this demo passes a retry policy with short
intervals so that it finishes quickly.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from datetime import timedelta

from hotmesh import MeshFlow, RetryPolicy, workflow

TASK_QUEUE = "meshflow-proxy-activities"  # this example's own queue (the seed uses "default")


# activities: plain functions that may fail; a worker runs them with retries
async def greet(name: str) -> str:
    if random.random() > 0.5:
        raise RuntimeError("Random error")
    return f"Hello, {name}!"


async def saludar(nombre: str) -> str:
    if random.random() > 0.5:
        raise RuntimeError("Random error")
    return f"¡Hola, {nombre}!"


# workflow: ordinary Python; the proxied calls are durable (recorded, retried, never re-run on replay)
acts = workflow.proxy_activities(
    [greet, saludar],
    retry=RetryPolicy(
        max_attempts=50,
        initial_interval=timedelta(milliseconds=50),
        maximum_interval=timedelta(milliseconds=200),
    ),
)


async def example(name: str) -> list[str]:
    return list(await asyncio.gather(acts.greet(name), acts.saludar(name)))


async def worker() -> None:
    flow_worker = await MeshFlow.Worker.create(task_queue=TASK_QUEUE, workflow=example)
    print("worker: serving workflow 'example' and activities greet, saludar", flush=True)
    await flow_worker.run()  # until SIGTERM/SIGINT, then a graceful shutdown


async def client() -> None:
    handle = await MeshFlow.Client().workflow.start(
        example,  # or workflow_name="example": the client needs no code of the workflow
        args=["HotMesh"],
        task_queue=TASK_QUEUE,
        workflow_id=f"greeting-{uuid.uuid4().hex}",
    )
    result = await handle.result(timeout=60)
    print(f"client: {result}")
    assert result == ["Hello, HotMesh!", "¡Hola, HotMesh!"]
    for event in await handle.history():  # each durable call, with the attempts that failed
        failures = event["failed_attempts"]
        count = len(failures) if isinstance(failures, list) else 0
        print(f"client: {event['key']} succeeded after {count} failed attempt(s)")
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
