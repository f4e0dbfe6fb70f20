"""System-level conformance for MeshFlow, written against backend URLs only.

Replay correctness is a property: hypothesis generates workflow shapes (sequences, gathers,
children, signals in random order, sleeps, activities failing then succeeding) and the workflow's
result must equal a direct in-process evaluation of the same shape. Crash tests start real worker
processes and SIGKILL them mid-activity and right after a dispatch (before the ack).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotmesh import MeshFlow, errors, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.providers import Capability, Message, Role, Timer
from hotmesh_conformance import _flows
from hotmesh_conformance._workers import FlowWorkers
from hotmesh_conformance.ledger import Figures, backend_label, check

pytestmark = pytest.mark.anyio

QUEUE = "kitflow"


@pytest.fixture
async def flow_config(make_provider: Any, hotmesh_urls: dict[Role, str], hotmesh_namespace: str) -> AsyncIterator[HotMeshConfig]:
    """A config for this test's namespace; the providers opened here purge it at teardown."""
    for role in (Role.STORE, Role.STREAM, Role.SUB):
        await make_provider(role)
    yield load_config(
        url=hotmesh_urls[Role.STORE],
        store=hotmesh_urls[Role.STORE],
        stream=hotmesh_urls[Role.STREAM],
        sub=hotmesh_urls[Role.SUB],
        namespace=hotmesh_namespace,
        timer_lease=5,
        environ={},
    )
    await MeshFlow.shutdown(grace=1.0)


@pytest.fixture
async def client(flow_config: HotMeshConfig) -> MeshFlow.Client:
    """A client plus an in-process worker serving the kit's workflows."""
    await MeshFlow.Worker.create(connection=flow_config, task_queue=QUEUE, workflow=_flows.ALL)
    return MeshFlow.Client(connection=flow_config)


async def test_gathered_activities_return_in_order_with_history(client: MeshFlow.Client) -> None:
    """MeshFlow: asyncio.gather of activities collates; history() is a JSON event list."""
    handle = await client.workflow.start(_flows.run_shape, args=[[["gather", [1, 2, 3]], ["act", 5]]], task_queue=QUEUE)
    assert await handle.result(timeout=30) == [[3, 5, 7], 11]
    assert await handle.status() == "completed"
    events = await handle.history()
    assert [e["type"] for e in events] == ["activity"] * 4
    assert all(e["status"] == "completed" for e in events)
    assert [e["result"] for e in events] == [3, 5, 7, 11]


_leaf = st.one_of(
    st.tuples(st.just("act"), st.integers(-50, 50)).map(list),
    st.tuples(st.just("flaky"), st.integers(-50, 50), st.integers(0, 2)).map(list),
    st.tuples(st.just("gather"), st.lists(st.integers(-50, 50), min_size=1, max_size=5)).map(list),
    st.tuples(st.just("sleep"), st.sampled_from([0, 0.05, 0.2])).map(list),
    st.tuples(st.just("signal"), st.just("")).map(list),
    st.tuples(st.just("signals"), st.integers(2, 4)).map(list),
)
_shapes = st.recursive(
    st.lists(_leaf, min_size=1, max_size=4),
    lambda inner: st.lists(st.one_of(_leaf, st.tuples(st.just("child"), inner).map(list)), min_size=1, max_size=4),
    max_leaves=8,
)


def _name_signals(shape: list[Any], prefix: str, counter: list[int]) -> list[Any]:
    """Give every signal step unique ids (the strategy only marks where signals go)."""
    named: list[Any] = []
    for step in shape:
        if step[0] == "signal":
            counter[0] += 1
            named.append(["signal", f"{prefix}-{counter[0]}"])
        elif step[0] == "signals":
            ids = []
            for _ in range(step[1]):
                counter[0] += 1
                ids.append(f"{prefix}-{counter[0]}")
            named.append(["signals", ids])
        elif step[0] == "child":
            named.append(["child", _name_signals(step[1], prefix, counter)])
        else:
            named.append(step)
    return named


@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=12)
@given(shape=_shapes, data=st.data())
async def test_replay_equals_direct_evaluation(client: MeshFlow.Client, shape: list[Any], data: st.DataObject) -> None:
    """MeshFlow replay: a generated workflow's result equals evaluating its shape directly,
    whatever order its signals arrive in (some before the workflow waits for them)."""
    prefix = uuid.uuid4().hex[:10]
    shape = _name_signals(shape, prefix, [0])
    ids = _flows.signal_ids(shape)
    values = {sid: data.draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans()), label=sid) for sid in ids}
    order = data.draw(st.permutations(ids), label="signal order")
    early = data.draw(st.integers(0, len(order)), label="signals sent before start")
    for sid in order[:early]:
        await client.signal(sid, values[sid])
    handle = await client.workflow.start(_flows.run_shape, args=[shape], task_queue=QUEUE)
    for sid in order[early:]:
        await asyncio.sleep(0.01)
        await client.signal(sid, values[sid])
    assert await handle.result(timeout=60) == _flows.evaluate(shape, values)


async def test_signal_sent_before_the_waiter_exists_is_buffered(client: MeshFlow.Client) -> None:
    """MeshFlow signals (C5): a signal sent before any workflow waits is buffered, then consumed once."""
    sid = f"early-{uuid.uuid4().hex[:8]}"
    assert await client.signal(sid, {"hello": "world"}) == 0  # nobody waits yet: buffered
    first = await client.workflow.start(_flows.waiter, args=[sid], task_queue=QUEUE)
    assert await first.result(timeout=30) == {"hello": "world"}
    second = await client.workflow.start(_flows.waiter, args=[sid], task_queue=QUEUE)
    with pytest.raises(errors.TimeoutError):
        await second.result(timeout=1.0)  # consumed once: the second waiter waits for a new one
    await client.signal(sid, 2)
    assert await second.result(timeout=30) == 2


async def test_thirty_signals_collate_into_one_wakeup(client: MeshFlow.Client) -> None:
    """MeshFlow collation: more than the original's 25 concurrent signals, in any order."""
    prefix = uuid.uuid4().hex[:8]
    ids = [f"{prefix}-{i}" for i in range(30)]
    handle = await client.workflow.start(_flows.run_shape, args=[[["signals", ids]]], task_queue=QUEUE)
    for i in random.sample(range(30), 30):
        await client.signal(ids[i], i)
    assert await handle.result(timeout=60) == [list(range(30))]


async def test_child_workflows_and_start_child(client: MeshFlow.Client) -> None:
    """MeshFlow children: exec_child returns the child's result; start_child returns its id."""
    handle = await client.workflow.start(_flows.run_shape, args=[[["child", [["act", 1]]], ["act", 2]]], task_queue=QUEUE)
    assert await handle.result(timeout=30) == [[3], 5]
    child_id = f"child-{uuid.uuid4().hex[:8]}"
    parent = await client.workflow.start(_flows.parent_of_starter, args=[child_id], task_queue=QUEUE)
    assert await parent.result(timeout=30) == child_id
    assert await client.workflow.get_handle(workflow_id=child_id).result(timeout=30) == 0.0


async def test_signal_from_inside_a_workflow(client: MeshFlow.Client) -> None:
    """MeshFlow: workflow.signal wakes another workflow's wait_for."""
    sid = f"inner-{uuid.uuid4().hex[:8]}"
    waiting = await client.workflow.start(_flows.waiter, args=[sid], task_queue=QUEUE)
    emitter = await client.workflow.start(_flows.signals_emitter, args=[sid], task_queue=QUEUE)
    assert await emitter.result(timeout=30) is True
    assert await waiting.result(timeout=30) == {"from": emitter.workflow_id}


async def test_activity_that_always_fails_fails_the_workflow_with_every_attempt(client: MeshFlow.Client) -> None:
    """MeshFlow retries: after the policy's 4 attempts, WorkflowFailed; history keeps each error."""
    handle = await client.workflow.start(_flows.failing, task_queue=QUEUE)
    with pytest.raises(errors.WorkflowFailed) as failure:
        await handle.result(timeout=60)
    assert failure.value.remote_type == "hotmesh.errors.ActivityFailed"
    assert "always_fails(1)" in failure.value.remote_message
    assert "Traceback" in failure.value.remote_traceback
    (event,) = await handle.history()
    assert event["status"] == "failed"
    attempts = event["failed_attempts"]
    assert isinstance(attempts, list) and len(attempts) == 4
    assert all(a["type"] == "ValueError" for a in attempts)  # type: ignore[index]


async def test_non_retryable_error_stops_at_the_first_attempt(client: MeshFlow.Client) -> None:
    """MeshFlow retries: an error type named non-retryable is not retried."""
    handle = await client.workflow.start(_flows.fatal_flow, task_queue=QUEUE)
    with pytest.raises(errors.WorkflowFailed):
        await handle.result(timeout=30)
    (event,) = await handle.history()
    assert len(event["failed_attempts"]) == 1  # type: ignore[arg-type]


async def test_continue_as_new_keeps_history_bounded(client: MeshFlow.Client) -> None:
    """MeshFlow continue_as_new: each run starts with an empty history."""
    handle = await client.workflow.start(_flows.counter, args=[0, 5], task_queue=QUEUE)
    assert await handle.result(timeout=60) == 5
    assert len(await handle.history()) == 1


async def test_random_uuid_and_now_are_deterministic(client: MeshFlow.Client) -> None:
    """MeshFlow determinism: random(), uuid() and now() give the same values on every replay."""
    handle = await client.workflow.start(_flows.deterministic, task_queue=QUEUE)
    before, after, replaying = await handle.result(timeout=30)
    assert len(before) == 3 and len(after) == 2
    assert before[0] != after[0] and before[1] != after[1]
    assert replaying is False  # the final replay ran past its last recorded call


async def test_changed_code_raises_non_determinism_naming_both_calls(client: MeshFlow.Client) -> None:
    """MeshFlow replay: code whose durable calls differ from history fails with NonDeterminismError."""
    _flows.CHANGING["first"] = "double"
    handle = await client.workflow.start(_flows.changing, task_queue=QUEUE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(await handle.history()) < 2:
        await asyncio.sleep(0.05)
    _flows.CHANGING["first"] = "flaky"  # "deploy" different code under the running workflow
    try:
        await client.signal(f"{handle.workflow_id}-go", 1)
        with pytest.raises(errors.WorkflowFailed) as failure:
            await handle.result(timeout=30)
    finally:
        _flows.CHANGING["first"] = "double"
    assert failure.value.remote_type == "hotmesh.errors.NonDeterminismError"
    message = failure.value.remote_message
    assert "#1" in message and "'flaky'" in message and "'double'" in message


@pytest.mark.parametrize(
    ("workflow", "alternative"),
    [(_flows.uses_asyncio_sleep, "sleep_for"), (_flows.opens_a_file, "activity")],
)
async def test_io_and_asyncio_sleep_are_refused_in_workflow_code(
    client: MeshFlow.Client, workflow: Any, alternative: str
) -> None:
    """MeshFlow sandbox: asyncio.sleep and file I/O in workflow code fail with an error naming the durable way."""
    handle = await client.workflow.start(workflow, task_queue=QUEUE)
    with pytest.raises(errors.WorkflowFailed) as failure:
        await handle.result(timeout=30)
    assert failure.value.remote_type == "hotmesh.errors.WorkflowSandboxError"
    assert alternative in failure.value.remote_message


async def test_interrupt_sleeping_waiting_and_running_workflows(client: MeshFlow.Client) -> None:
    """MeshFlow interrupt: a sleeping, a waiting and a running workflow stop; handles report it."""
    sleeping = await client.workflow.start(_flows.sleeper, args=[3600], task_queue=QUEUE)
    waiting = await client.workflow.start(_flows.waiter, args=[f"never-{uuid.uuid4().hex}"], task_queue=QUEUE)
    running = await client.workflow.start(_flows.one_slow_call, args=[1.5], task_queue=QUEUE)
    for handle in (sleeping, waiting, running):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not await handle.history():
            await asyncio.sleep(0.05)
    for handle in (sleeping, waiting, running):
        assert await handle.interrupt() is True
        assert await handle.interrupt() is False  # once
        assert await handle.status() == "interrupted"
        with pytest.raises(errors.InterruptedError):
            await handle.result(timeout=10)
    await asyncio.sleep(2.0)  # the running activity finishes: its outcome must not revive the workflow
    assert await running.status() == "interrupted"
    with pytest.raises(errors.WorkflowNotFoundError):
        await client.workflow.get_handle(workflow_id=f"missing-{uuid.uuid4().hex}").interrupt()


async def test_duplicate_and_unknown_and_bad_input(client: MeshFlow.Client, flow_config: HotMeshConfig) -> None:
    """MeshFlow bad input: duplicate ids, unknown names and non-JSON args are typed errors before any write."""
    wid = f"dup-{uuid.uuid4().hex[:8]}"
    first = await client.workflow.start(_flows.sleeper, args=[0], workflow_id=wid, task_queue=QUEUE)
    with pytest.raises(errors.DuplicateWorkflowError):
        await client.workflow.start(_flows.sleeper, args=[0], workflow_id=wid, task_queue=QUEUE)
    same = await client.workflow.start(_flows.sleeper, args=[0], workflow_id=wid, task_queue=QUEUE, on_duplicate="use_existing")
    assert same.workflow_id == first.workflow_id
    with pytest.raises(errors.WorkflowNotFoundError, match="sleeper"):
        await client.workflow.start("no_such_workflow", task_queue=QUEUE)
    with pytest.raises(errors.SerializationError, match=r"args\[0\]"):
        await client.workflow.start(_flows.sleeper, args=[object()], workflow_id="never-written", task_queue=QUEUE)
    for not_workflows in (None, 5, "sleeper"):
        with pytest.raises(errors.ValidationError, match="async def"):
            await MeshFlow.Worker.create(connection=flow_config, task_queue=QUEUE, workflow=not_workflows)  # type: ignore[arg-type]
    for not_a_list in (5, "abc", {"x": 1}):  # named, not a TypeError, nor split into characters or keys
        with pytest.raises(errors.SerializationError, match="must be a list"):
            await client.workflow.start(_flows.sleeper, args=not_a_list, workflow_id="never-written", task_queue=QUEUE)
    with pytest.raises(errors.WorkflowNotFoundError):
        await client.workflow.get_handle(workflow_id="never-written").status()


async def test_execute_starts_and_returns_the_outcome(client: MeshFlow.Client) -> None:
    """MeshFlow client: ``execute`` is start + result in one call (it listens before the start is
    written); duplicates and failures behave as with ``start`` and ``result``."""
    wid = f"exec-{uuid.uuid4().hex[:8]}"
    assert await client.workflow.execute(_flows.sleeper, args=[0], workflow_id=wid, task_queue=QUEUE, timeout=60) == 0
    with pytest.raises(errors.DuplicateWorkflowError):
        await client.workflow.execute(_flows.sleeper, args=[0], workflow_id=wid, task_queue=QUEUE)
    again = await client.workflow.execute(
        _flows.sleeper, args=[5], workflow_id=wid, task_queue=QUEUE, on_duplicate="use_existing", timeout=60
    )
    assert again == 0, "use_existing must return the finished workflow's outcome"
    with pytest.raises(errors.WorkflowFailed):
        await client.workflow.execute(_flows.failing, task_queue=QUEUE, timeout=60)
    with pytest.raises(errors.SerializationError):
        await client.workflow.execute(_flows.sleeper, args=[object()], task_queue=QUEUE)


async def test_a_thousand_sleeping_workflows_wake_on_time(client: MeshFlow.Client) -> None:
    """MeshFlow timers: 1,000 concurrently sleeping workflows, due over a 20 s window (50 wake-ups
    a second, on a small shared CI machine), each wake within 1 s of their due time, never early."""
    first_due = time.time() + 12.0
    dues = [first_due + 20.0 * i / 1000 for i in range(1000)]
    handles = []
    for start in range(0, 1000, 100):
        handles += await asyncio.gather(
            *(client.workflow.start(_flows.sleep_until, args=[due], task_queue=QUEUE) for due in dues[start : start + 100])
        )
    assert time.time() < first_due, "starting 1,000 workflows took longer than the test allows"
    await asyncio.sleep(dues[-1] + 1.0 - time.time())  # no extra load while they wake
    results = [await h.result(timeout=120) for h in handles]  # one subscription at a time
    assert all(isinstance(r, float) for r in results)
    lateness = []
    for handle in handles:
        (event,) = await handle.history()
        command = event["command"]
        assert isinstance(command, dict)
        # The timer's due time is fixed when the sleep is dispatched (store clock + seconds).
        lateness.append(float(event["completed_at"]) - float(command["due"]))  # type: ignore[arg-type]
    assert min(lateness) >= -0.05, "a timer fired early"
    ordered = sorted(lateness)
    assert ordered[-1] < 1.0, f"worst wake-up {ordered[-1]:.2f}s after due (median {ordered[500]:.3f}s)"


async def test_timers_added_while_the_scheduler_looks_are_not_slept_through(
    client: MeshFlow.Client, make_provider: Any
) -> None:
    """MeshFlow timers (no lost wake-up): six sequential 0.3 s sleeps end in seconds, not after the
    scheduler's 5 s safety sleep each (a timer announced during a claim must cut the sleep short).
    Far-future timers make the scheduler's look at the store take a while, as in production."""
    store = await make_provider(Role.STORE)
    far = await store.now() + timedelta(days=1)
    await asyncio.gather(*(store.add_timer(Timer(f"far-{i}", far, Message("kit.nowhere"))) for i in range(300)))
    started = time.monotonic()
    handle = await client.workflow.start(_flows.run_shape, args=[[["sleep", 0.3]] * 6], task_queue=QUEUE)
    assert await handle.result(timeout=60) == [0.3] * 6
    assert time.monotonic() - started < 12.0, "timer wake-ups were lost (each sleep waited for the safety poll)"


# -- crash tests: real worker processes --------------------------------------------------------


@pytest.fixture
def flow_workers(flow_config: HotMeshConfig, make_provider: Any, tmp_path: Path) -> Iterator[FlowWorkers]:
    group = FlowWorkers(flow_config, tmp_path / "ledger.txt")
    yield group
    group.stop()


@pytest.fixture
async def multi_process(make_provider: Any) -> None:
    for role in (Role.STORE, Role.STREAM):
        provider = await make_provider(role)
        if Capability.MULTI_PROCESS not in provider.capabilities:
            pytest.skip(f"{provider.name} does not declare {Capability.MULTI_PROCESS}: one process only")


async def _check(
    name: str, make_provider: Any, config: HotMeshConfig, workers: FlowWorkers, started: list[tuple[Any, Any]],
    calls: list[int], **faults: Any,
) -> None:  # fmt: skip
    """The fault suite's checker (one outcome per workflow and call, activities at least once,
    nothing pending), with this test's row for the fault report."""
    urls = [config.url_for(r) for r in (Role.STORE, Role.STREAM, Role.SUB)]
    figures = Figures(name, backend_label(urls), faults=1)
    store, stream = await make_provider(Role.STORE), await make_provider(Role.STREAM)
    await check(started, workers.book, figures, store=store, stream=stream, queue=QUEUE, calls=calls, **faults)


async def test_worker_killed_mid_activity_the_workflow_completes(
    flow_config: HotMeshConfig, multi_process: None, flow_workers: FlowWorkers, make_provider: Any
) -> None:
    """MeshFlow crash (C2, C3): SIGKILL the worker running an activity -> another worker reruns it;
    the activity ran at least once with the same idempotency key, the result is written once."""
    doomed = flow_workers.start()
    client = MeshFlow.Client(connection=flow_config)
    handle = await client.workflow.start(_flows.one_slow_call, args=[1.5], task_queue=QUEUE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not flow_workers.runs("slow"):
        await asyncio.sleep(0.05)
    assert flow_workers.runs("slow"), "the activity never started"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    killed_at = time.monotonic()
    rescuer = flow_workers.start()
    started = [(handle, "slow-done:41")]
    await _check("worker_killed_mid_activity", make_provider, flow_config, flow_workers, started, [2], kills=[killed_at])
    slow_runs = flow_workers.runs("slow")
    # The doomed worker ran it first, then the rescuer (again if a loaded machine kept a run past
    # the 2 s visibility timeout: at least once, C3); its result was written once (the check).
    pids = [r[0] for r in slow_runs]
    assert pids[0] == str(doomed.pid) and len(pids) >= 2 and set(pids[1:]) == {str(rescuer.pid)}, pids
    assert len({r[2] for r in slow_runs}) == 1, "the idempotency key changed between runs"


async def test_an_activity_longer_than_its_visibility_timeout_runs_once(
    flow_config: HotMeshConfig, multi_process: None, flow_workers: FlowWorkers, make_provider: Any
) -> None:
    """Stream rule 11 at work (C3 without waste): where the stream renews leases, a 5 s activity
    on workers whose visibility timeout is 2 s keeps its delivery and runs once, though a second
    worker is idle and would take it; a dead worker's task still comes back after 2 s (above)."""
    stream = await make_provider(Role.STREAM)
    if Capability.STREAM_EXTEND not in stream.capabilities:
        pytest.skip(f"{stream.name} does not declare {Capability.STREAM_EXTEND}: long tasks are redelivered")
    flow_workers.start()
    flow_workers.start()
    client = MeshFlow.Client(connection=flow_config)
    handle = await client.workflow.start(_flows.one_slow_call, args=[5.0], task_queue=QUEUE)
    assert await handle.result(timeout=60) == "slow-done:41"
    slow_runs = flow_workers.runs("slow")
    assert len(slow_runs) == 1, f"a renewed activity ran again: {slow_runs}"


async def test_worker_killed_after_dispatch_before_ack_the_workflow_completes(
    flow_config: HotMeshConfig, multi_process: None, flow_workers: FlowWorkers, make_provider: Any
) -> None:
    """MeshFlow crash mid-replay: the dispatch committed, the process died before publishing side
    effects and acking -> the redelivered task redoes them; the workflow completes once."""
    doomed = flow_workers.start("--die-after-dispatch")
    client = MeshFlow.Client(connection=flow_config)
    sid = f"crash-{uuid.uuid4().hex[:8]}"
    handle = await client.workflow.start(
        _flows.run_shape, args=[[["sleep", 0.2], ["act", 4], ["signal", sid]]], task_queue=QUEUE
    )
    assert doomed.wait(timeout=30) == 9, "the crash point was never reached"
    killed_at = time.monotonic()
    flow_workers.start()
    await client.signal(sid, "go")
    started = [(handle, [0.2, 9, "go"])]
    await _check("worker_killed_after_dispatch", make_provider, flow_config, flow_workers, started, [3], kills=[killed_at])


async def test_payloads_over_the_limit_fail_at_the_call_site(client: MeshFlow.Client) -> None:
    """C7 payload limits: arguments and signals over max_payload_bytes raise PayloadTooLargeError
    naming the limit, before anything is written; an activity result over it fails the call."""
    big = "x" * 1_100_000
    with pytest.raises(errors.PayloadTooLargeError, match=r"over the limit of [\d,]+ bytes \("):
        await client.workflow.start(_flows.waiter, args=[big], task_queue=QUEUE, workflow_id="too-big")
    with pytest.raises(errors.WorkflowNotFoundError):
        await client.workflow.get_handle(workflow_id="too-big").status()
    with pytest.raises(errors.PayloadTooLargeError, match="signal data"):
        await client.signal("never-sent", {"blob": big})
