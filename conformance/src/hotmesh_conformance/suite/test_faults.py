"""The fault suite: promises C1-C8 under crashes at every crash point and under faulty providers.

Cites the promises of docs/promises.md (C1 durable idempotent start, C2 exactly-once outcome, C3
activities at least once with a stable key, C4 no lost or early timers, C5 signals never lost,
C8 recovery without an operator) and the reliability catalogue (W-2 crash points, W-3 zombie
worker, M-1 duplicate delivery, B-5 ambiguous commit, L-1 concurrent duplicate starts, T-1 clock
skew, T-3 many timers with a worker killed). Every test ends with the same checker
(:func:`hotmesh_conformance.ledger.check`): one outcome per workflow, one per durable call, no
transition applied twice, every activity at least once, nothing left pending.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotmesh import Connection, MeshFlow, errors, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.engine.crashpoints import CRASHPOINTS
from hotmesh.meshflow import _records as rec
from hotmesh.providers import Capability, Message, Role, Timer
from hotmesh_conformance import _flows
from hotmesh_conformance._skew import SKEW_ENV
from hotmesh_conformance._workers import QUEUE, CallWorkers, FlowWorkers, replace_while_dying
from hotmesh_conformance.faults import AmbiguousCommitStore, DuplicatingStream
from hotmesh_conformance.ledger import (
    LEDGER_ENV,
    Figures,
    Ledger,
    RecordingStore,
    backend_label,
    check,
    check_commits,
    check_nothing_pending,
    finish,
)

pytestmark = pytest.mark.anyio

TIMERS = {"dev": 1_000, "ci": 1_000, "nightly": 10_000}
"""T-3 size per profile: 10,000 sleeping workflows when asked for (``--hotmesh-profile nightly``);
CI runs 1,000 to stay within its time budget on a 2-core machine."""
SPREAD = {"dev": 10.0, "ci": 10.0, "nightly": 30.0}
"""T-3 sleeps last 2 s to 2 + SPREAD s (about 100 wake-ups a second in CI, 330 at night)."""
BATCH = 10
WORKER_CONCURRENCY = 5
"""Concurrent calls from the test process and tasks per T-3 worker: connection pools grow with
concurrency, and a shared server's connection limit is not ours to exhaust."""


@pytest.fixture
async def roles(make_provider: Any) -> dict[Role, Any]:
    """Providers of the test's namespace (unwrapped), for the checker."""
    return {role: await make_provider(role) for role in (Role.STORE, Role.STREAM, Role.SUB)}


@pytest.fixture
def figures(request: pytest.FixtureRequest, hotmesh_urls: dict[Role, str]) -> Figures:
    """This test's row of the fault report."""
    name = request.node.name.removeprefix("test_")
    return Figures(name, backend_label(hotmesh_urls[r] for r in (Role.STORE, Role.STREAM, Role.SUB)))


@pytest.fixture
async def fault_config(
    roles: dict[Role, Any], hotmesh_urls: dict[Role, str], hotmesh_namespace: str
) -> AsyncIterator[HotMeshConfig]:
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


async def _check(
    figures: Figures, roles: dict[Role, Any], ledger: Ledger, started: list[tuple[Any, Any]],
    calls: list[int | None] | None = None, **faults: Any,
) -> Figures:  # fmt: skip
    return await check(
        started, ledger, figures, store=roles[Role.STORE], stream=roles[Role.STREAM], queue=QUEUE, calls=calls, **faults
    )


@pytest.mark.parametrize("point", sorted(CRASHPOINTS))
async def test_a_worker_killed_at_each_crash_point_loses_nothing(
    point: str, fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers,
    roles: dict[Role, Any], figures: Figures,
) -> None:  # fmt: skip
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
    killed_at = time.monotonic()
    assert code == 137, f"the worker exited with {code}, not at the crash point"
    figures.faults += 1
    fault_workers.start()  # the rescuer: no crash point
    expected = _flows.evaluate(shape, {sid: "buffered"})
    await _check(figures, roles, fault_workers.book, [(handle, expected)], [_flows.call_count(shape)], kills=[killed_at])
    keys = collections.Counter(run.key for run in fault_workers.book.runs("double"))
    assert len(keys) == 4 and all(n >= 1 for n in keys.values()), f"C3: activities ran {dict(keys)}"


async def test_a_paused_worker_resumed_after_its_lease_is_fenced(
    fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers, roles: dict[Role, Any],
    figures: Figures,
) -> None:  # fmt: skip
    """W-3 zombie (C2): SIGSTOP a worker mid-activity past its lease; another worker finishes the
    workflow; after SIGCONT the zombie's late outcome changes nothing."""
    zombie = fault_workers.start()
    client = MeshFlow.Client(connection=fault_config)
    handle = await client.workflow.start(_flows.one_slow_call, args=[1.5], task_queue=QUEUE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not fault_workers.runs("slow"):
        await asyncio.sleep(0.05)
    os.kill(zombie.pid, signal.SIGSTOP)
    figures.faults += 1
    try:
        fault_workers.start()
        assert await handle.result(timeout=60) == "slow-done:41"
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
    await asyncio.sleep(3.0)  # the zombie finishes its activity and tries to record it
    await _check(figures, roles, fault_workers.book, [(handle, "slow-done:41")], [2])
    assert len(fault_workers.runs("slow")) == 2  # ran twice (C3 allows it), recorded once (C2)


async def _run_with(
    conn: Connection, shapes: list[list[Any]], signals: dict[str, Any], figures: Figures, roles: dict[Role, Any],
    ledger: Ledger, injected: Callable[[], int],
) -> None:  # fmt: skip
    await MeshFlow.Worker.create(connection=conn, task_queue=QUEUE, workflow=_flows.ALL)
    client = MeshFlow.Client(connection=conn)
    for sid, value in signals.items():
        await client.signal(sid, value)
    handles = [await client.workflow.start(_flows.run_shape, args=[s], task_queue=QUEUE) for s in shapes]
    started = [(h, _flows.evaluate(s, signals)) for h, s in zip(handles, shapes, strict=True)]
    await _check(figures, roles, ledger, started, [_flows.call_count(s) for s in shapes], injected=injected)


@pytest.fixture
def in_process_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """The ledger of workers running in this process (their activities read the env var)."""
    monkeypatch.setenv(LEDGER_ENV, str(tmp_path / "ledger.txt"))
    return Ledger(tmp_path / "ledger.txt")


async def test_every_message_delivered_twice_changes_nothing(
    fault_config: HotMeshConfig, make_provider: Any, roles: dict[Role, Any], figures: Figures,
    in_process_ledger: Ledger,
) -> None:  # fmt: skip
    """M-1 duplicate delivery (C2): every message published twice; results and histories unchanged."""
    stream = DuplicatingStream(await make_provider(Role.STREAM))
    conn = await Connection(
        fault_config,
        store=RecordingStore(await make_provider(Role.STORE), in_process_ledger.commits_path),  # type: ignore[arg-type]
        stream=stream,  # type: ignore[arg-type]
        sub=await make_provider(Role.SUB),
    ).open()
    sids = [f"dup-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    await _run_with(conn, [_shape(sid) for sid in sids], {sid: i for i, sid in enumerate(sids)}, figures, roles,
                    in_process_ledger, lambda: stream.duplicated)  # fmt: skip
    assert stream.duplicated > 0


async def test_ambiguous_commits_are_retried_harmlessly(
    fault_config: HotMeshConfig, make_provider: Any, roles: dict[Role, Any], figures: Figures,
    in_process_ledger: Ledger,
) -> None:  # fmt: skip
    """B-5 ambiguous commit (C2): transitions commit but report failure 30% of the time; the engine
    retries and every workflow still has exactly one outcome per call."""
    store = AmbiguousCommitStore(await make_provider(Role.STORE), rate=0.3, seed=7)
    conn = await Connection(
        fault_config,
        store=RecordingStore(store, in_process_ledger.commits_path),  # type: ignore[arg-type]
        stream=await make_provider(Role.STREAM),
        sub=await make_provider(Role.SUB),
    ).open()
    sids = [f"amb-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    await _run_with(conn, [_shape(sid) for sid in sids], {sid: i for i, sid in enumerate(sids)}, figures, roles,
                    in_process_ledger, lambda: store.injected)  # fmt: skip
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


async def test_concurrent_starts_of_one_id_make_one_run(
    fault_config: HotMeshConfig, multi_process: None, roles: dict[Role, Any], figures: Figures,
    in_process_ledger: Ledger,
) -> None:  # fmt: skip
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
    await _check(figures, roles, in_process_ledger, [(handle, 0.0)], [1])
    with pytest.raises(errors.DuplicateWorkflowError):
        await MeshFlow.Client(fault_config).workflow.start("sleeper", args=[0.0], task_queue=QUEUE, workflow_id=wid)


# -- T-1: clock skew between workers -------------------------------------------------------------

SKEW_SLEEP = 3.0


async def _histories_reach(handles: list[Any], calls: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for handle in handles:
        while len(await handle.history()) < calls:
            assert time.monotonic() < deadline, f"{handle.workflow_id} made no progress"
            await asyncio.sleep(0.05)


@pytest.fixture
def store_clock(roles: dict[Role, Any]) -> None:
    """T-1 runs where the store declares STORE_CLOCK (its streams are then judged by a server too)."""
    store = roles[Role.STORE]
    if Capability.STORE_CLOCK not in store.capabilities:
        pytest.skip(
            f"{store.name} declares no {Capability.STORE_CLOCK.value}: due times, leases and firing follow"
            " the host's clock. That is one clock for every process of a file or in-process backend; across"
            " hosts it needs clocks that agree (NTP), and a skewed worker would fire timers early by its"
            " skew (docs/promises.md, C4)"
        )


async def test_worker_clocks_skewed_30s_either_way_never_fire_a_timer_early(
    fault_config: HotMeshConfig, multi_process: None, store_clock: None, fault_workers: FlowWorkers,
    roles: dict[Role, Any], figures: Figures,
) -> None:  # fmt: skip
    """T-1 (C4): sleeps dispatched by a worker whose wall clock runs 30 s behind are fired by one
    whose clock runs 30 s ahead, and the other way round; none fires early, as measured on the
    host's monotonic clock, because due times and firing follow the store's clock. Runs where
    the store declares STORE_CLOCK; elsewhere timers follow each host's clock and HotMesh
    requires hosts whose clocks agree (NTP): docs/promises.md, C4."""
    client = MeshFlow.Client(connection=fault_config)

    def shape(i: int) -> list[Any]:
        return [["act", i], ["sleep", SKEW_SLEEP], ["act", 100 + i]]

    async def phase(dispatcher: str, firer: str, numbers: range) -> list[Any]:
        """One worker (clock ``dispatcher``) dispatches the sleeps and stops; another (clock
        ``firer``) alone fires them: each phase has one live worker at a time."""
        first = fault_workers.start(env={SKEW_ENV: dispatcher})
        handles = [await client.workflow.start(_flows.run_shape, args=[shape(i)], task_queue=QUEUE) for i in numbers]
        await _histories_reach(handles, 2)
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 15)
        second = fault_workers.start(env={SKEW_ENV: firer})
        for handle in handles:
            await handle.result(timeout=60)
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 15)
        return handles

    behind_then_ahead = await phase("-30", "30", range(6))
    ahead_then_behind = await phase("30", "-30", range(6, 12))
    figures.faults += 2
    started = [(h, _flows.evaluate(shape(i), {})) for i, h in enumerate(behind_then_ahead + ahead_then_behind)]
    await _check(figures, roles, fault_workers.book, started, [3] * len(started))
    # The skew was real: the wall-clock stamps each worker wrote in the histories are 30 s off.
    now = time.time()
    for handles, sign in ((behind_then_ahead, -1), (ahead_then_behind, 1)):
        for handle in handles:
            first_call, sleep = (float(e["completed_at"]) - now for e in (await handle.history())[:2])  # type: ignore[arg-type]
            assert sign * first_call > 20 and -sign * sleep > 20, (handle.workflow_id, first_call, sleep)
    # None early: on the host's monotonic clock (shared by every process, unaffected by skew), the
    # activity after each sleep ran at least SKEW_SLEEP after the activity before it.
    runs: dict[tuple[str, int], list[float]] = collections.defaultdict(list)
    for run in fault_workers.book.runs("double"):
        runs[(run.workflow_id, run.seq)].append(run.mono)
    for handle, _ in started:
        gap = min(runs[(handle.workflow_id, 3)]) - min(runs[(handle.workflow_id, 1)])
        assert gap >= SKEW_SLEEP - 0.02, f"{handle.workflow_id}: a {SKEW_SLEEP:g} s sleep ended after {gap:.3f} s"


LEASE = 3.0
"""Seconds of the leases T-1 takes over (a timer claim, a stream delivery's visibility)."""


def _lease_probe(config: HotMeshConfig, what: str, topic: str, skew: str) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "hotmesh_conformance._lease_probe", what,
        "--store", config.url_for(Role.STORE), "--stream", config.url_for(Role.STREAM),
        "--namespace", config.namespace, "--topic", topic, "--lease", str(LEASE),
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, SKEW_ENV: skew}
    )


async def _lease_taken(probe: subprocess.Popen[str]) -> tuple[str, int, float]:
    """(id, delivery count, monotonic time) of what the probe took before dying with it."""
    out, _ = await asyncio.to_thread(probe.communicate, "go\n", 150)
    fields = out.split()
    assert probe.returncode == 0 and len(fields) == 4, f"the lease probe ended with {out!r}"
    return fields[1], int(fields[2]), float(fields[3])


async def test_worker_clocks_skewed_30s_either_way_never_take_over_a_lease_early(
    fault_config: HotMeshConfig, multi_process: None, store_clock: None, roles: dict[Role, Any],
    figures: Figures,
) -> None:  # fmt: skip
    """T-1 (C4, C8): a process whose wall clock runs 30 s behind claims a due timer and reads a
    stream message, each with a 3 s lease, and dies holding them; a process whose clock runs 30 s
    ahead takes each over no sooner than 3 s later, and soon after (then the other way round).
    Leases are judged by the store's and the stream server's clock: judged by each host's clock,
    the ahead process would take the behind one's lease at once and the behind one would wait
    over a minute for the ahead one's."""
    store, stream = roles[Role.STORE], roles[Role.STREAM]
    topic = f"kit.lease.{uuid.uuid4().hex[:8]}"
    for holder, taker in (("-30", "30"), ("30", "-30")):
        timer_id = f"lease-{uuid.uuid4().hex[:8]}"
        await store.add_timer(Timer(timer_id, await store.now(), Message(stream=topic, body={}, headers={})))
        (message_id,) = await stream.publish([Message(stream=topic, body={"holder": holder}, headers={})])
        for what, expected in (("timer", timer_id), ("delivery", message_id)):
            # Both processes start now; the taker begins only once the holder holds the lease
            # (it waits for a line on stdin), so its start-up time is not part of the measure.
            first, second = _lease_probe(fault_config, what, topic, holder), _lease_probe(fault_config, what, topic, taker)
            held_id, held_count, held_at = await _lease_taken(first)
            taken_id, taken_count, taken_at = await _lease_taken(second)
            figures.faults += 1
            assert held_id == taken_id == expected, (what, held_id, taken_id, expected)
            if what == "delivery":
                assert taken_count == held_count + 1, f"delivery counts {held_count} then {taken_count}"
            held = taken_at - held_at
            if held < LEASE - 0.05:
                figures.problems.append(f"{what} lease of {LEASE:g} s taken over after {held:.3f} s ({holder} s -> {taker} s)")
            elif held > LEASE + 10:
                figures.problems.append(f"{what} lease of {LEASE:g} s taken over only after {held:.3f} s ({holder} s -> {taker} s)")
            else:
                figures.recovery_worker_kill.append(held)
        assert await store.cancel_timer(timer_id)
        assert await stream.ack(topic, "probe", [message_id]) == 1
    finish(figures)


async def test_worker_clocks_skewed_30s_either_way_run_each_cron_cycle_once_never_early(
    fault_config: HotMeshConfig, multi_process: None, store_clock: None, figures: Figures, tmp_path: Path,
) -> None:  # fmt: skip
    """T-1 (C4): two processes serve one MeshCall cron (1 s interval, 6 cycles), one with its wall
    clock 30 s behind, the other 30 s ahead. Each cycle runs once and none early: on the host's
    monotonic clock every tick follows the one before by at least the interval, because each
    next cycle is due at the store's clock plus the interval, whichever process computed it."""
    workers = CallWorkers(fault_config, tmp_path / "calls.txt")
    cron = ("--cron-id", "skew", "--interval", "1", "--max-cycles", "6")
    try:
        behind = workers.start("kit.skewcron", *cron, env={SKEW_ENV: "-30"})
        ahead = workers.start("kit.skewcron", *cron, env={SKEW_ENV: "30"})
        answers = sorted(await asyncio.gather(*(asyncio.to_thread(workers.first_line, p) for p in (behind, ahead))))
        assert answers == ["started False", "started True"]

        def ticks() -> list[list[str]]:
            return [line for line in workers.lines() if line[1] == "tick"]

        deadline = time.monotonic() + 60
        while len(ticks()) < 6:
            assert time.monotonic() < deadline, f"only {len(ticks())} of 6 cron cycles ran in 60 s"
            await asyncio.sleep(0.1)
        await asyncio.sleep(2.0)  # a seventh cycle, or a cycle run twice, would show up by now
    finally:
        workers.stop()
    figures.faults += 2
    stamps = sorted(float(line[2]) for line in ticks())
    if len(stamps) != 6:
        figures.problems.append(f"{len(stamps)} cron ticks for 6 cycles")
    gaps = [later - earlier for earlier, later in zip(stamps, stamps[1:], strict=False)]
    if gaps and min(gaps) < 1.0 - 0.05:
        figures.problems.append(f"a cron cycle ran {min(gaps):.3f} s after the one before (interval 1 s)")
    print(f"T-1 cron: ticks by {sorted(collections.Counter(line[0] for line in ticks()).values())} processes;"
          f" gaps {', '.join(f'{g:.2f}' for g in gaps)} s")  # fmt: skip
    finish(figures)


# -- W-1: workers killed mid-activity, again and again ------------------------------------------

KILLED_WORKFLOWS = {"dev": 100, "ci": 100, "nightly": 200}
"""W-1 size per profile (the catalogue's 200 with ``--hotmesh-profile nightly``)."""
KILLS = 5


async def test_workers_killed_mid_activity_five_times_lose_nothing(
    fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers, roles: dict[Role, Any],
    figures: Figures, hotmesh_profile: str,
) -> None:  # fmt: skip
    """W-1 (C2, C3, C8): two worker processes run workflows of three activities lasting 50-500 ms
    each; five times, at a random moment (seeded, printed), one of them is SIGKILLed and a fresh
    one started. Every workflow completes with the fault-free result, one outcome per call, every
    activity at least once under one idempotency key, nothing pending."""
    seed = int(os.environ.get("HOTMESH_KIT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    print(f"W-1 seed {seed} (HOTMESH_KIT_SEED={seed} repeats this run)")
    count = KILLED_WORKFLOWS.get(hotmesh_profile, KILLED_WORKFLOWS["ci"])
    shapes = [[["nap", 1000 * k + i, rng.randrange(50, 501)] for k in range(3)] for i in range(count)]
    alive = [fault_workers.start(concurrency=10) for _ in range(2)]
    client = MeshFlow.Client(connection=fault_config)
    handles = []
    for first in range(0, count, BATCH):
        handles += await asyncio.gather(
            *(client.workflow.start(_flows.run_shape, args=[shapes[i]], task_queue=QUEUE) for i in range(first, min(first + BATCH, count)))
        )  # fmt: skip
    kills: list[float] = []
    for k in range(1, KILLS + 1):
        deadline = time.monotonic() + 120
        while len(fault_workers.book.runs("nap")) < 3 * count * k // (KILLS + 2):
            assert time.monotonic() < deadline, f"no progress before kill {k}"
            await asyncio.sleep(0.02)
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        victim = alive.pop(rng.randrange(len(alive)))
        victim.kill()
        await asyncio.to_thread(victim.wait, 10)
        kills.append(time.monotonic())
        alive.append(fault_workers.start(concurrency=10))
    assert len({r.key for r in fault_workers.book.runs("nap")}) < 3 * count, "every activity ran before the last kill"
    figures.faults += KILLS
    started = [(h, _flows.evaluate(shape, {})) for h, shape in zip(handles, shapes, strict=True)]
    await _check(figures, roles, fault_workers.book, started, [3] * count, kills=kills)


# -- M-3: a poison message that kills every worker -----------------------------------------------


async def test_a_message_that_kills_every_worker_is_dead_lettered_and_fails_its_workflow(
    fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers, roles: dict[Role, Any],
    figures: Figures,
) -> None:  # fmt: skip
    """M-3 (C6, C8): an activity kills the worker process running it, every time. One worker runs
    at a time, replaced whenever the poison kills it. After a bounded number of deliveries the
    poison message is dead-lettered and its workflow fails naming why, while 20 other workflows
    on the same queue complete (no head-of-line blocking, no endless crash loop)."""
    client = MeshFlow.Client(connection=fault_config)
    poison = await client.workflow.start(_flows.poisoned, task_queue=QUEUE)
    healthy = [
        await client.workflow.start(_flows.run_shape, args=[[["act", i], ["act", 100 + i]]], task_queue=QUEUE)
        for i in range(20)
    ]

    async def finished() -> bool:
        return await poison.status() != rec.RUNNING and all([await h.status() != rec.RUNNING for h in healthy])

    def start() -> subprocess.Popen[str]:
        return fault_workers.start(concurrency=5)

    crashes = await replace_while_dying(start, finished, first=start(), exit_code=77, max_deaths=20, timeout=150)
    figures.faults += len(crashes)
    runs = fault_workers.book.runs("crash_worker")
    assert len(runs) == len(crashes) >= 1, (len(runs), len(crashes))
    started = [(h, _flows.evaluate([["act", i], ["act", 100 + i]], {})) for i, h in enumerate(healthy)]
    await _check(figures, roles, fault_workers.book, started, [2] * len(healthy), kills=crashes,
                 failing=[(poison, "WorkerLostError")])  # fmt: skip
    dead = await roles[Role.STREAM].dead_letters(rec.activity_stream(QUEUE), rec.GROUP)
    assert [d.message.body.get("workflow_id") for d in dead] == [poison.workflow_id]
    print(f"M-3: the poison killed {len(crashes)} workers; dead letter: {dead[0].error.splitlines()[-1]}")


# -- L-4: a stress mix, every workflow counted --------------------------------------------------

STRESS = {"dev": 300, "ci": 300, "nightly": 3000}
"""L-4 workflows per profile."""


def _stress_shape(i: int) -> list[Any]:
    return [
        [["act", i], ["act", i + 1]],
        [["gather", [i, i + 1, i + 2]]],
        [["sleep", 0.1], ["act", i]],
        [["child", [["act", i]]], ["signal", f"stress-{i}"]],
    ][i % 4]


async def test_a_stress_mix_completes_every_workflow_and_the_counts_agree(
    fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers, roles: dict[Role, Any],
    figures: Figures, hotmesh_profile: str,
) -> None:  # fmt: skip
    """L-4 (C1, C2, C8): workflows of every kind (activities, a gather, a timer, a child and a
    signal, continue-as-new) started as fast as the driver can by 10 concurrent starters, served
    by two worker processes: every one completes with its expected result, the number the driver
    saw complete equals the number the store holds as completed, and nothing is pending. The
    rate and latency are printed, not asserted (benchmarks/ measures speed)."""
    count = STRESS.get(hotmesh_profile, STRESS["ci"])
    for _ in range(2):
        fault_workers.start(concurrency=20)
    client = MeshFlow.Client(connection=fault_config)
    latencies: list[float] = []
    started: list[tuple[Any, Any]] = []
    calls: list[int | None] = []

    async def one(i: int) -> None:
        began = time.monotonic()
        if i % 25 == 24:  # continue-as-new three times
            handle = await client.workflow.start(_flows.counter, args=[0, 3], task_queue=QUEUE)
            started.append((handle, 3))
            calls.append(1)
        else:
            shape = _stress_shape(i)
            handle = await client.workflow.start(_flows.run_shape, args=[shape], task_queue=QUEUE)
            signals = {sid: {"n": i} for sid in _flows.signal_ids(shape)}
            for sid, data in signals.items():
                await handle.signal(sid, data)
            started.append((handle, _flows.evaluate(shape, signals)))
            calls.append(_flows.call_count(shape))
        await handle.result(timeout=120)
        latencies.append(time.monotonic() - began)

    began = time.monotonic()
    queue = iter(range(count))

    async def starter() -> None:
        for i in queue:
            await one(i)

    await asyncio.gather(*(starter() for _ in range(10)))
    elapsed = time.monotonic() - began
    completed = 0
    for first in range(0, count, BATCH):
        jobs = await asyncio.gather(*(roles[Role.STORE].get_job(rec.job_id(h.workflow_id), ["status"])
                                      for h, _ in started[first : first + BATCH]))  # fmt: skip
        completed += sum(1 for job in jobs if job and job.get("status") == rec.COMPLETED)
    if not (len(latencies) == completed == count):
        figures.problems.append(f"the driver saw {len(latencies)} complete, the store holds {completed}, of {count} started")
    await _check(figures, roles, fault_workers.book, started, calls)
    latencies.sort()
    print(f"L-4: {count} workflows in {elapsed:.1f} s ({count / elapsed:.0f} wf/s with 10 starters);"
          f" start-to-result p50 {latencies[len(latencies) // 2] * 1000:.0f} ms,"
          f" p99 {latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms")  # fmt: skip


# -- T-3: many timers, a worker killed mid-run ---------------------------------------------------


async def test_thousands_of_timers_with_a_worker_killed_each_fire_once_never_early(
    fault_config: HotMeshConfig, multi_process: None, fault_workers: FlowWorkers, roles: dict[Role, Any],
    figures: Figures, hotmesh_profile: str,
) -> None:  # fmt: skip
    """T-3 (C4, C8): 1,000 sleeping workflows in CI (10,000 with ``--hotmesh-profile nightly``),
    each sleep 2-12 s (2-32 s at night), two worker processes; one is SIGKILLed when a third have woken and a
    fresh one started. Every sleep completes once (one applied outcome per workflow), none
    before its due time, nothing pending at the end."""
    count = TIMERS.get(hotmesh_profile, TIMERS["ci"])
    store, stream = roles[Role.STORE], roles[Role.STREAM]
    doomed = fault_workers.start(concurrency=WORKER_CONCURRENCY)
    fault_workers.start(concurrency=WORKER_CONCURRENCY)
    client = MeshFlow.Client(connection=fault_config)
    prefix = uuid.uuid4().hex[:8]
    spread = SPREAD.get(hotmesh_profile, SPREAD["ci"])
    seconds = [round(2.0 + spread * (i % 97) / 97, 3) for i in range(count)]
    ids = [f"t3-{prefix}-{i}" for i in range(count)]
    began = time.monotonic()
    for first in range(0, count, BATCH):  # batches: a shared server's connection limit is not ours
        await asyncio.gather(
            *(client.workflow.start(_flows.sleeper, args=[seconds[i]], task_queue=QUEUE, workflow_id=ids[i])
              for i in range(first, min(first + BATCH, count)))
        )  # fmt: skip
    started_in = time.monotonic() - began

    def woken() -> int:
        return sum(1 for c in fault_workers.book.commits() if c.step == "h:1:1")

    deadline = time.monotonic() + 120
    while woken() < count // 3:
        assert time.monotonic() < deadline, f"only {woken()} of {count} sleeps ended in 120 s"
        await asyncio.sleep(0.1)
    doomed.kill()
    await asyncio.to_thread(doomed.wait, 10)
    figures.faults += 1
    assert woken() < count, "every timer fired before the kill"
    fault_workers.start(concurrency=WORKER_CONCURRENCY)
    jobs: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 180 + count / 100
    while len(jobs) < count:
        assert time.monotonic() < deadline, f"{count - len(jobs)} sleeping workflows never completed"
        left = [i for i in ids if i not in jobs]
        for first in range(0, len(left), BATCH):
            batch = left[first : first + BATCH]
            found = await asyncio.gather(*(store.get_job(rec.job_id(i)) for i in batch))
            jobs.update({i: j for i, j in zip(batch, found, strict=True) if j and j.get("status") in rec.FINAL})
        if len(jobs) < count:
            await asyncio.sleep(0.5)
    figures.workflows = count
    lateness = []
    for i, workflow_id in enumerate(ids):
        job = jobs[workflow_id]
        events = rec.history_events(job)
        if job.get("status") != rec.COMPLETED or job.get("result") != seconds[i] or len(events) != 1:
            figures.lost += 1
            figures.problems.append(f"{workflow_id}: {job.get('status')} {job.get('result')!r} {events}")
            continue
        (event,) = events
        lateness.append(float(event["completed_at"]) - float(event["command"]["due"]))  # type: ignore[arg-type,index,call-overload]
    if lateness and min(lateness) < -0.05:
        figures.problems.append(f"{sum(x < -0.05 for x in lateness)} timers fired early (earliest {min(lateness):.3f} s)")
    check_commits(fault_workers.book, figures)
    await check_nothing_pending(store, stream, QUEUE, figures)
    lateness.sort()
    print(f"T-3: {count} sleepers started in {started_in:.1f} s; lateness p50 {lateness[len(lateness) // 2]:.3f} s,"
          f" p99 {lateness[int(len(lateness) * 0.99)]:.3f} s, max {lateness[-1]:.3f} s")  # fmt: skip
    finish(figures)
