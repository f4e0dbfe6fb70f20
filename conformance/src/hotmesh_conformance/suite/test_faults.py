"""The fault suite: promises C1-C8 under crashes at every crash point and under faulty providers.

Cites the promises of docs/promises.md (C1 durable idempotent start, C2 exactly-once outcome, C3
activities at least once with a stable key, C4 no lost or early timers, C5 signals never lost,
C8 recovery without an operator) and the reliability catalogue (W-2 crash points, W-3 zombie
worker, M-1 duplicate delivery, B-5 ambiguous commit, L-1 concurrent duplicate starts).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotmesh import Connection, MeshFlow, errors, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.engine.crashpoints import CRASHPOINTS
from hotmesh.providers import Capability, Role
from hotmesh_conformance import _flows
from hotmesh_conformance._workers import QUEUE, FlowWorkers
from hotmesh_conformance.faults import AmbiguousCommitStore, DuplicatingStream

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fault_config(make_provider: Any, hotmesh_urls: dict[Role, str], hotmesh_namespace: str) -> AsyncIterator[HotMeshConfig]:
    for role in (Role.STORE, Role.STREAM, Role.SUB):
        await make_provider(role)
    yield load_config(
        url=hotmesh_urls[Role.STORE],
        store=hotmesh_urls[Role.STORE],
        stream=hotmesh_urls[Role.STREAM],
        sub=hotmesh_urls[Role.SUB],
        namespace=hotmesh_namespace,
        timer_lease=2,
        environ={},
    )
    await MeshFlow.shutdown(grace=1.0)


@pytest.fixture
async def multi_process(make_provider: Any) -> None:
    for role in (Role.STORE, Role.STREAM):
        provider = await make_provider(role)
        if Capability.MULTI_PROCESS not in provider.capabilities:
            pytest.skip(f"{provider.name} does not declare {Capability.MULTI_PROCESS}: one process only")


@pytest.fixture
def fault_workers(fault_config: HotMeshConfig, tmp_path: Path) -> Iterator[FlowWorkers]:
    group = FlowWorkers(fault_config, tmp_path / "ledger.txt")
    yield group
    group.stop()


def _shape(sid: str) -> list[Any]:
    """Touches every crash point: activities, a retried one, a timer, a signal, a gather, a child."""
    return [["act", 1], ["flaky", 2, 1], ["sleep", 0.1], ["signal", sid], ["gather", [3, 4]], ["child", [["act", 5]]]]


async def _check_one_outcome(client: MeshFlow.Client, handle: Any, expected: Any) -> None:
    """C2: the result is the expected one and each durable call has exactly one recorded outcome."""
    assert await handle.result(timeout=90) == expected
    assert await handle.status() == "completed"
    events = await handle.history()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), "a durable call was lost or doubled"
    assert all(e["status"] == "completed" for e in events), events


@pytest.mark.parametrize("point", sorted(CRASHPOINTS))
async def test_a_worker_killed_at_each_crash_point_loses_nothing(
    point: str, fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers
) -> None:
    """W-2 (C2, C3, C4, C5, C8): a worker dies at the crash point; a fresh worker finishes every
    workflow with the right result, one outcome per call, every activity run at least once."""
    client = MeshFlow.Client(connection=fault_config)
    sid = f"crash-{uuid.uuid4().hex[:8]}"
    await client.signal(sid, "buffered")  # C5: sent before the waiter exists
    shape = _shape(sid)
    doomed = fault_workers.start(env={"HOTMESH_CRASHPOINT": f"{point}:1"})
    handle = await client.workflow.start(_flows.run_shape, args=[shape], task_queue=QUEUE)
    try:
        code = await asyncio.to_thread(doomed.wait, 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"crash point {point} was never reached (the shape should touch every point)")
    assert code == 137, f"the worker exited with {code}, not at the crash point"
    fault_workers.start()  # the rescuer: no crash point
    await _check_one_outcome(client, handle, _flows.evaluate(shape, {sid: "buffered"}))
    keys = collections.Counter(line[2] for line in fault_workers.runs("double"))
    assert len(keys) == 4 and all(n >= 1 for n in keys.values()), f"C3: activities ran {dict(keys)}"


async def test_a_paused_worker_resumed_after_its_lease_is_fenced(
    fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers
) -> None:
    """W-3 zombie (C2): SIGSTOP a worker mid-activity past its lease; another worker finishes the
    workflow; after SIGCONT the zombie's late outcome changes nothing."""
    zombie = fault_workers.start()
    client = MeshFlow.Client(connection=fault_config)
    handle = await client.workflow.start(_flows.one_slow_call, args=[1.5], task_queue=QUEUE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not fault_workers.runs("slow"):
        await asyncio.sleep(0.05)
    os.kill(zombie.pid, signal.SIGSTOP)
    try:
        fault_workers.start()
        assert await handle.result(timeout=60) == "slow-done:41"
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    await asyncio.sleep(3.0)  # the zombie finishes its activity and tries to record it
    assert await handle.result(timeout=10) == "slow-done:41"
    events = await handle.history()
    assert [e["status"] for e in events] == ["completed", "completed"]
    assert len(fault_workers.runs("slow")) == 2  # ran twice (C3 allows it), recorded once (C2)


async def _run_with(conn: Connection, shapes: list[list[Any]], signals: dict[str, Any]) -> list[Any]:
    await MeshFlow.Worker.create(connection=conn, task_queue=QUEUE, workflow=_flows.ALL)
    client = MeshFlow.Client(connection=conn)
    for sid, value in signals.items():
        await client.signal(sid, value)
    handles = [await client.workflow.start(_flows.run_shape, args=[s], task_queue=QUEUE) for s in shapes]
    for handle, shape in zip(handles, shapes, strict=True):
        await _check_one_outcome(client, handle, _flows.evaluate(shape, signals))
    return handles


async def test_every_message_delivered_twice_changes_nothing(fault_config: HotMeshConfig, make_provider: Any) -> None:
    """M-1 duplicate delivery (C2): every message published twice; results and histories unchanged."""
    stream = DuplicatingStream(await make_provider(Role.STREAM))
    conn = await Connection(
        fault_config,
        store=await make_provider(Role.STORE),
        stream=stream,  # type: ignore[arg-type]
        sub=await make_provider(Role.SUB),
    ).open()
    sids = [f"dup-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    await _run_with(conn, [_shape(sid) for sid in sids], {sid: i for i, sid in enumerate(sids)})
    assert stream.duplicated > 0


async def test_ambiguous_commits_are_retried_harmlessly(fault_config: HotMeshConfig, make_provider: Any) -> None:
    """B-5 ambiguous commit (C2): transitions commit but report failure 30% of the time; the engine
    retries and every workflow still has exactly one outcome per call."""
    store = AmbiguousCommitStore(await make_provider(Role.STORE), rate=0.3, seed=7)
    conn = await Connection(
        fault_config,
        store=store,  # type: ignore[arg-type]
        stream=await make_provider(Role.STREAM),
        sub=await make_provider(Role.SUB),
    ).open()
    sids = [f"amb-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    await _run_with(conn, [_shape(sid) for sid in sids], {sid: i for i, sid in enumerate(sids)})
    assert store.injected > 0


_STARTER = """
import asyncio, sys
from hotmesh import Connection, MeshFlow, errors, load_config
async def main():
    cfg = load_config(store=sys.argv[1], stream=sys.argv[2], sub=sys.argv[3], url=sys.argv[1],
                      namespace=sys.argv[4], environ={})
    client = MeshFlow.Client(cfg)
    async def one():
        try:
            await client.workflow.start("sleeper", args=[0.0], task_queue=sys.argv[5], workflow_id=sys.argv[6])
            return 1
        except errors.DuplicateWorkflowError:
            return 0
    print(sum(await asyncio.gather(*(one() for _ in range(50)))), flush=True)
    await MeshFlow.shutdown()
asyncio.run(main())
"""


async def test_concurrent_starts_of_one_id_make_one_run(fault_config: HotMeshConfig, multi_process: None) -> None:
    """L-1 (C1): 4 processes x 50 concurrent starts of the same workflow id -> exactly one run."""
    wid = f"once-{uuid.uuid4().hex[:8]}"
    args = [fault_config.url_for(r) for r in (Role.STORE, Role.STREAM, Role.SUB)]
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - starting them is instant; waiting is done off-loop
            [sys.executable, "-c", _STARTER, *args, fault_config.namespace, QUEUE, wid], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outputs = [await asyncio.to_thread(p.communicate, timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(int(out.strip()) for out, _ in outputs) == 1, "C1: more or fewer than one start won"
    await MeshFlow.Worker.create(connection=fault_config, task_queue=QUEUE, workflow=_flows.ALL)
    handle = MeshFlow.Client(fault_config).workflow.get_handle(workflow_id=wid)
    assert await handle.result(timeout=30) == 0.0
    with pytest.raises(errors.DuplicateWorkflowError):
        await MeshFlow.Client(fault_config).workflow.start("sleeper", args=[0.0], task_queue=QUEUE, workflow_id=wid)
