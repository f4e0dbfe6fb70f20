"""System-level conformance for MeshCall, written against backend URLs only.

These run the public API (``hotmesh.MeshCall``) on the backend under test; the multi-process tests
need a backend that declares MULTI_PROCESS and start real worker processes.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hotmesh import Connection, MeshCall, errors, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.providers import Capability, Role
from hotmesh_conformance._workers import CallWorkers, replace_while_dying

pytestmark = pytest.mark.anyio


@pytest.fixture
async def mesh(make_provider: Any, hotmesh_urls: dict[Role, str], hotmesh_namespace: str) -> AsyncIterator[HotMeshConfig]:
    """A config for this test's namespace; the providers opened here purge it at teardown."""
    for role in (Role.STORE, Role.STREAM, Role.SUB):
        await make_provider(role)
    config = load_config(
        url=hotmesh_urls[Role.STORE],
        store=hotmesh_urls[Role.STORE],
        stream=hotmesh_urls[Role.STREAM],
        sub=hotmesh_urls[Role.SUB],
        namespace=hotmesh_namespace,
        environ={},
    )
    yield config
    await MeshCall.shutdown(grace=1.0)


@pytest.fixture
async def multi_process(make_provider: Any) -> None:
    store = await make_provider(Role.STORE)
    stream = await make_provider(Role.STREAM)
    for provider in (store, stream):
        if Capability.MULTI_PROCESS not in provider.capabilities:
            pytest.skip(f"{provider.name} does not declare {Capability.MULTI_PROCESS}: one process only")


@pytest.fixture
def workers(mesh: HotMeshConfig, tmp_path: Path) -> Iterator[CallWorkers]:
    group = CallWorkers(mesh, tmp_path / "ledger.txt")
    yield group
    group.stop()


async def test_exec_returns_the_result_and_caches_by_id(mesh: HotMeshConfig) -> None:
    """MeshCall: exec returns the JSON result; with id+ttl the callback runs once until flush."""
    runs: list[str] = []

    async def greet(name: str) -> dict[str, str]:
        runs.append(name)
        return {"hello": name}

    await MeshCall.connect("kit.greet", greet, connection=mesh)
    assert await MeshCall.exec("kit.greet", ["a"], connection=mesh) == {"hello": "a"}
    assert await MeshCall.exec("kit.greet", ["b"], connection=mesh, id="x", ttl="1 minute") == {"hello": "b"}
    assert await MeshCall.exec("kit.greet", ["c"], connection=mesh, id="x", ttl="1 minute") == {"hello": "b"}
    assert runs == ["a", "b"]
    assert await MeshCall.flush("kit.greet", id="x", connection=mesh) is True
    assert await MeshCall.exec("kit.greet", ["d"], connection=mesh, id="x", ttl="1 minute") == {"hello": "d"}
    assert runs == ["a", "b", "d"]


class _SlowCacheStore:
    """Forwards to a store; each cache write waits first (a slow network or a busy server)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self._inner, self._delay = inner, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def set_cached(self, key: str, value: Any, *, ttl: Any) -> None:
        await asyncio.sleep(self._delay)
        await self._inner.set_cached(key, value, ttl=ttl)


async def test_a_flush_after_exec_returned_always_drops_the_cached_result(
    mesh: HotMeshConfig, make_provider: Any
) -> None:
    """MeshCall: the caller learns the result only once it is cached, so a flush right after
    exec returns finds it (CI once saw flush return False: the result was announced first and
    the cache entry written after it, so the flush ran before, and the entry outlived it)."""
    runs: list[str] = []

    async def greet(name: str) -> dict[str, str]:
        runs.append(name)
        return {"hello": name}

    conn = await Connection(
        mesh,
        store=_SlowCacheStore(await make_provider(Role.STORE), 0.3),  # type: ignore[arg-type]
        stream=await make_provider(Role.STREAM),
        sub=await make_provider(Role.SUB),
    ).open()
    await MeshCall.connect("kit.slowcache", greet, connection=conn)
    for name in ("a", "b", "c"):
        assert await MeshCall.exec("kit.slowcache", [name], connection=conn, id="y", ttl="1 minute") == {"hello": name}
        assert await MeshCall.flush("kit.slowcache", id="y", connection=conn) is True
    await asyncio.sleep(0.5)  # a late cache write would land now
    assert await MeshCall.exec("kit.slowcache", ["d"], connection=conn, id="y", ttl="1 minute") == {"hello": "d"}
    assert runs == ["a", "b", "c", "d"]


async def test_remote_exception_reaches_the_caller_typed(mesh: HotMeshConfig) -> None:
    """MeshCall: the callback's exception arrives as RemoteError with type, message, traceback."""

    async def fail(value: int) -> None:
        raise KeyError(f"missing {value}")

    await MeshCall.connect("kit.fail", fail, connection=mesh)
    with pytest.raises(errors.RemoteError) as info:
        await MeshCall.exec("kit.fail", [7], connection=mesh)
    assert info.value.remote_type == "KeyError"
    assert "missing 7" in info.value.remote_message
    assert "Traceback" in info.value.remote_traceback and "fail" in info.value.remote_traceback


async def test_exec_without_a_worker_times_out(mesh: HotMeshConfig) -> None:
    """MeshCall: exec with no connected function waits until its timeout, then TimeoutError."""
    started = time.monotonic()
    with pytest.raises(errors.TimeoutError):
        await MeshCall.exec("kit.nobody", [], connection=mesh, timeout=0.5)
    assert time.monotonic() - started >= 0.5


async def test_hanging_callback_times_out_and_frees_the_slot(mesh: HotMeshConfig) -> None:
    """MeshCall: a callback that never returns -> caller's TimeoutError; the worker slot is freed."""

    async def maybe_hang(hang: bool) -> str:
        if hang:
            await asyncio.sleep(3600)
        return "ok"

    await MeshCall.connect("kit.hang", maybe_hang, connection=mesh, concurrency=1)
    with pytest.raises(errors.TimeoutError):
        await MeshCall.exec("kit.hang", [True], connection=mesh, timeout=0.5)
    assert await MeshCall.exec("kit.hang", [False], connection=mesh, timeout=10) == "ok"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: MeshCall.exec("kit.t", [{"when": object()}], connection=c), errors.SerializationError),
        (lambda c: MeshCall.exec("", [], connection=c), errors.ValidationError),
        (lambda c: MeshCall.exec("kit.t", "abc", connection=c), errors.SerializationError),  # not f("a", "b", "c")
        (lambda c: MeshCall.exec("kit.t", {"x": 1}, connection=c), errors.SerializationError),  # not f("x")
        (lambda c: MeshCall.cron("kit.t", print, args={"x": 1}, id="c", interval="1 minute", connection=c),
         errors.SerializationError),
        (lambda c: MeshCall.exec("bad topic!", [], connection=c), errors.ValidationError),
        (lambda c: MeshCall.exec("kit.t", [], id="i", ttl=-5, connection=c), errors.ValidationError),
        (lambda c: MeshCall.exec("kit.t", [], id="i", ttl="soon", connection=c), errors.ValidationError),
        (lambda c: MeshCall.cron("kit.t", print, id="c", interval="61 * * * *", connection=c), errors.ValidationError),
    ],
)
async def test_bad_input_is_rejected_before_any_write(
    mesh: HotMeshConfig, make_provider: Any, call: Any, error: type[Exception]
) -> None:
    """MeshCall bad input: a typed error naming the value, and nothing written."""
    with pytest.raises(error):
        await call(mesh)
    store = await make_provider(Role.STORE)
    stream = await make_provider(Role.STREAM)
    assert await store.is_empty() and await stream.is_empty()


async def test_serialization_error_names_the_path(mesh: HotMeshConfig) -> None:
    """MeshCall bad input: SerializationError names where in the args the bad value sits."""
    with pytest.raises(errors.SerializationError) as info:
        await MeshCall.exec("kit.t", [1, {"when": {1, 2}}], connection=mesh)
    assert "args[1]['when']" in str(info.value)


async def test_two_workers_serve_each_call_once(mesh: HotMeshConfig, multi_process: None, workers: CallWorkers) -> None:
    """MeshCall multi-process: two worker processes share a topic; each call is served once."""
    for _ in range(2):
        assert workers.first_line(workers.start("kit.shared")) == "ready"
    results = await asyncio.gather(*(MeshCall.exec("kit.shared", [i], connection=mesh) for i in range(40)))
    assert [r["value"] for r in results] == list(range(40))  # type: ignore[index]
    served = collections.Counter(line[2] for line in workers.lines() if line[1] == "call")
    assert served == collections.Counter(str(i) for i in range(40)), "some call ran twice or never"


async def test_cron_with_the_same_id_from_two_processes_runs_once_per_cycle(
    mesh: HotMeshConfig, multi_process: None, workers: CallWorkers
) -> None:
    """MeshCall cron: started from two processes with one id -> one True, one False; one tick per cycle."""
    first = workers.start("kit.cron", "--cron-id", "c1", "--interval", "0.5", "--max-cycles", "4")
    second = workers.start("kit.cron", "--cron-id", "c1", "--interval", "0.5", "--max-cycles", "4")
    answers = sorted([workers.first_line(first), workers.first_line(second)])
    assert answers == ["started False", "started True"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(workers.lines()) < 4:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # a fifth cycle, or a duplicate, would show up by now
    ticks = [line for line in workers.lines() if line[1] == "tick"]
    assert len(ticks) == 4, f"expected 4 cycles once each, got {len(ticks)}"


async def test_worker_killed_mid_call_is_redelivered(mesh: HotMeshConfig, multi_process: None, workers: CallWorkers) -> None:
    """MeshCall crash: SIGKILL the worker running a call -> another worker takes it; caller gets the result."""
    doomed = workers.start("kit.kill", "--hang-on", "13", "--visibility", "2")
    assert workers.first_line(doomed) == "ready"
    call = asyncio.create_task(MeshCall.exec("kit.kill", [13], connection=mesh, timeout=60))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not workers.lines():
        await asyncio.sleep(0.05)
    assert workers.lines(), "the first worker never received the call"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait()
    rescuer = workers.start("kit.kill", "--visibility", "2")
    assert workers.first_line(rescuer) == "ready"
    result = await asyncio.wait_for(call, 60)
    assert result == {"value": 13, "pid": rescuer.pid}
    runs = [line for line in workers.lines() if line[1] == "call"]
    assert [line[0] for line in runs] == [str(doomed.pid), str(rescuer.pid)]


async def test_a_call_that_kills_every_worker_fails_the_caller_and_spares_the_others(
    mesh: HotMeshConfig, multi_process: None, workers: CallWorkers
) -> None:
    """MeshCall poison (M-3, C6): a call whose callback kills the worker process every time is
    given up on after a bounded number of deaths; its caller gets a RemoteError naming
    WorkerLostError instead of waiting out its timeout, and calls made beside it return."""

    def start() -> subprocess.Popen[str]:
        worker = workers.start("kit.poison", "--crash-on", "13", "--visibility", "2")
        assert workers.first_line(worker) == "ready"
        return worker

    async def finished() -> bool:
        return poison.done() and all(o.done() for o in others)

    first = start()
    poison = asyncio.create_task(MeshCall.exec("kit.poison", [13], connection=mesh, timeout=120))
    others = [asyncio.create_task(MeshCall.exec("kit.poison", [i], connection=mesh, timeout=120)) for i in range(10)]
    deaths = len(await replace_while_dying(start, finished, first=first, exit_code=77, max_deaths=10, timeout=120))
    with pytest.raises(errors.RemoteError) as failed:
        await poison
    assert failed.value.remote_type.endswith("WorkerLostError"), failed.value
    assert [r["value"] for r in await asyncio.gather(*others)] == list(range(10))  # type: ignore[index]
    assert deaths == sum(1 for line in workers.lines() if line[1:] == ["call", "13"]) >= 1


async def test_engine_killed_holding_a_due_timer_another_fires_it_once(
    mesh: HotMeshConfig, multi_process: None, workers: CallWorkers
) -> None:
    """Scheduler crash: an engine dies between claiming a due timer and firing it -> another
    engine fires it after the lease (Store rule 10), and the cycle runs once."""
    lease = "2"
    doomed = workers.start(
        "kit.timer", "--cron-id", "t1", "--interval", "60", "--max-cycles", "1",
        "--timer-lease", lease, "--die-holding-timers",
    )  # fmt: skip
    # It may die before printing "started True": its scheduler can claim the first (due now)
    # cycle before cron() returns. The rescuer's "started False" below shows the cron exists.
    assert doomed.wait(timeout=30) == 9, "the doomed engine never claimed the timer"
    claimed = [line for line in workers.lines() if line[1] == "claimed"]
    assert len(claimed) == 1
    rescuer = workers.start("kit.timer", "--cron-id", "t1", "--interval", "60", "--timer-lease", lease)
    assert workers.first_line(rescuer) == "started False"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [line for line in workers.lines() if line[1] == "tick"]:
        await asyncio.sleep(0.1)
    await asyncio.sleep(float(lease) + 1.0)  # a second firing would show up by now
    ticks = [line for line in workers.lines() if line[1] == "tick"]
    assert [line[0] for line in ticks] == [str(rescuer.pid)], f"expected one tick by the rescuer, got {ticks}"
