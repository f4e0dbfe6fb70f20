"""MeshFlow on a private Redis (AOF, appendfsync always) killed and restarted mid-run.

Workflows run in a worker *process* (the kit's ``hotmesh_conformance._meshflow_worker``); the
test process starts them, SIGKILLs the server, restarts it on the same directory (the AOF
replays) and checks: every workflow completes once with the right result, every activity ran at
least once (the kit's ledger), the worker did not die, and no delivery is left pending.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from hotmesh import Connection, MeshFlow, load_config
from hotmesh._runtime import runtime
from hotmesh.errors import ProviderError
from hotmesh.meshflow.client import WorkflowHandle
from hotmesh_conformance import _flows

from .conftest import PrivateRedis

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

QUEUE = "redisfaults"
ACTIVITIES_PER_FLOW = 3


def _shape(i: int) -> list[Any]:
    return [["act", i], ["act", 1000 + i], ["sleep", 0.2], ["act", 2000 + i]]


class _Worker:
    def __init__(self, url: str, namespace: str, ledger: Path) -> None:
        self.ledger = ledger
        command = [
            sys.executable, "-m", "hotmesh_conformance._meshflow_worker",
            "--store", url, "--stream", url, "--sub", url, "--namespace", namespace,
            "--queue", QUEUE, "--ledger", str(ledger), "--visibility", "3",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def runs(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[MeshFlow.Client]:
    config = load_config(url=private_redis.url, namespace="mfredis", timer_lease=5, environ={})
    connection = Connection(config)  # ours, so the test closes exactly what it opened
    try:
        yield MeshFlow.Client(connection=connection)
    finally:
        engine = runtime.engines.pop(id(connection), None)
        with contextlib.suppress(Exception):
            if engine is not None:
                await engine.stop(1.0)
        with contextlib.suppress(Exception):
            await connection.aclose()


async def _result(handle: WorkflowHandle) -> Any:
    """The result; the test process's own connections are broken by the crash too."""
    deadline = time.monotonic() + 90
    while True:
        try:
            return await handle.result(timeout=max(1.0, deadline - time.monotonic()))
        except ProviderError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def _pending(url: str) -> int:
    """Deliveries not yet acked in any consumer group of the namespace's streams."""
    r = aioredis.from_url(url, decode_responses=True)
    try:
        total = 0
        async for key in r.scan_iter(match="*mfredis*", count=500):
            if await r.type(key) == "stream":
                for group in await r.xinfo_groups(key):
                    total += int(group["pending"])
        return total
    finally:
        await r.aclose()


async def test_server_killed_and_restarted_mid_workflows_each_completes_once(
    private_redis: PrivateRedis, client: MeshFlow.Client, tmp_path: Path
) -> None:
    """100 workflows (3 activities + a sleep each); Redis is SIGKILLed mid-run and restarted on
    its AOF: all complete, one outcome per call, activities at least once, nothing pending."""
    worker = _Worker(private_redis.url, "mfredis", tmp_path / "ledger.txt")
    try:
        handles: list[WorkflowHandle] = []
        for first in range(0, 100, 25):
            handles += await asyncio.gather(
                *(
                    client.workflow.start(_flows.run_shape, args=[_shape(i)], task_queue=QUEUE, workflow_id=f"wf-{i}")
                    for i in range(first, first + 25)
                )
            )
        total = ACTIVITIES_PER_FLOW * len(handles)
        deadline = time.monotonic() + 30
        while len(worker.runs()) < total // 4:
            assert time.monotonic() < deadline, "the workflows made no progress"
            await asyncio.sleep(0.02)
        await asyncio.to_thread(private_redis.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_redis.start)
        assert len({r[2] for r in worker.runs()}) < total, "the crash must land mid-run"
        results = await asyncio.gather(*(_result(h) for h in handles))
        for i, result in enumerate(results):
            assert result == _flows.evaluate(_shape(i), {}), f"wf-{i}"
        for handle in handles:
            events = await handle.history()
            assert [e["status"] for e in events] == ["completed"] * len(_shape(0)), (handle.workflow_id, events)
        runs = collections.Counter(r[2] for r in worker.runs())
        assert len(runs) == total, "every activity ran at least once"
        deadline = time.monotonic() + 15
        while (left := await _pending(private_redis.url)) != 0:
            assert time.monotonic() < deadline, f"{left} deliveries left pending"
            await asyncio.sleep(0.2)
        assert worker.process.poll() is None, "the worker process died"
    finally:
        worker.stop()
