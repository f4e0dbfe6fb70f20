"""Workflows and activities the MeshFlow suite runs (importable by the kit's worker processes).

``run_shape`` interprets a generated workflow *shape* (sequences, gathers, children, signals,
sleeps, flaky activities) with durable calls; ``evaluate`` computes the same shape directly in
process. Replay is correct when the two agree.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from hotmesh import RetryPolicy, workflow
from hotmesh.meshflow import activity_info
from hotmesh_conformance import ledger

LEDGER_ENV = ledger.LEDGER_ENV
"""When set, activities append a line per run to this file (see :mod:`hotmesh_conformance.ledger`)."""


def _ledger(name: str, key: str, attempt: int) -> None:
    info = activity_info()
    ledger.record_activity(name, key, attempt, info.workflow_id, info.seq, info.run)


class Fatal(Exception):
    """Declared non-retryable by the suite's retry policy."""


async def double(x: int) -> int:
    info = activity_info()
    _ledger("double", info.idempotency_key, info.attempt)
    return 2 * x + 1


def flaky(x: int, fails: int) -> int:
    """Fails its first ``fails`` attempts, then succeeds (a plain function: runs in a thread)."""
    info = activity_info()
    _ledger("flaky", info.idempotency_key, info.attempt)
    if info.attempt <= fails:
        raise RuntimeError(f"flaky({x}) attempt {info.attempt} fails on purpose")
    return 2 * x + 1


async def always_fails(x: int) -> int:
    raise ValueError(f"always_fails({x})")


async def fatal(x: int) -> int:
    raise Fatal(f"fatal({x})")


async def slow(seconds: float, marker: str) -> str:
    """Runs for ``seconds`` (long enough for a test to kill the process running it)."""
    info = activity_info()
    _ledger("slow", info.idempotency_key, info.attempt)
    await asyncio.sleep(seconds)
    return marker


async def nap(x: int, milliseconds: int) -> int:
    """Runs ``milliseconds`` before returning ``2x+1`` (W-1: long enough to be killed mid-way)."""
    info = activity_info()
    _ledger("nap", info.idempotency_key, info.attempt)
    await asyncio.sleep(milliseconds / 1000)
    return 2 * x + 1


async def crash_worker(x: int) -> int:
    """Kills the process running it, every time: a poison message (catalogue M-3)."""
    info = activity_info()
    _ledger("crash_worker", info.idempotency_key, info.attempt)
    os._exit(77)


async def echo_value(value: Any) -> Any:
    """Returns its argument (payload round trips through an activity)."""
    info = activity_info()
    _ledger("echo_value", info.idempotency_key, info.attempt)
    return value


acts = workflow.proxy_activities(
    [double, flaky, always_fails, fatal, slow, echo_value, nap, crash_worker],
    retry=RetryPolicy(
        max_attempts=4,
        initial_interval=timedelta(milliseconds=50),
        maximum_interval=timedelta(milliseconds=200),
        non_retryable_error_types=("Fatal",),
    ),
    start_to_close_timeout=60,
)


async def run_shape(shape: list[Any]) -> list[Any]:
    """Interpret ``shape`` with durable calls."""
    out: list[Any] = []
    for step in shape:
        kind = step[0]
        if kind == "act":
            out.append(await acts.double(step[1]))
        elif kind == "flaky":
            out.append(await acts.flaky(step[1], step[2]))
        elif kind == "nap":
            out.append(await acts.nap(step[1], step[2]))
        elif kind == "gather":
            out.append(list(await asyncio.gather(*(acts.double(x) for x in step[1]))))
        elif kind == "sleep":
            out.append(await workflow.sleep_for(step[1]))
        elif kind == "signal":
            out.append(await workflow.wait_for(step[1]))
        elif kind == "signals":
            out.append(list(await asyncio.gather(*(workflow.wait_for(s) for s in step[1]))))
        elif kind == "child":
            out.append(await workflow.exec_child(run_shape, args=[step[1]]))
        else:
            raise ValueError(f"unknown step {step!r}")
    return out


def evaluate(shape: list[Any], signals: dict[str, Any]) -> list[Any]:
    """The same shape computed directly (what replay must reproduce)."""
    out: list[Any] = []
    for step in shape:
        kind = step[0]
        if kind in ("act", "flaky", "nap"):
            out.append(2 * step[1] + 1)
        elif kind == "gather":
            out.append([2 * x + 1 for x in step[1]])
        elif kind == "sleep":
            out.append(float(step[1]))
        elif kind == "signal":
            out.append(signals[step[1]])
        elif kind == "signals":
            out.append([signals[s] for s in step[1]])
        elif kind == "child":
            out.append(evaluate(step[1], signals))
    return out


def call_count(shape: list[Any]) -> int:
    """How many durable calls ``run_shape`` makes for ``shape`` (its history length)."""
    return sum(len(step[1]) if step[0] in ("gather", "signals") else 1 for step in shape)


def signal_ids(shape: list[Any]) -> list[str]:
    """Every signal id a shape waits for (children included)."""
    found: list[str] = []
    for step in shape:
        if step[0] == "signal":
            found.append(step[1])
        elif step[0] == "signals":
            found.extend(step[1])
        elif step[0] == "child":
            found.extend(signal_ids(step[1]))
    return found


async def one_slow_call(seconds: float) -> str:
    """One activity long enough to be killed mid-way, then a second step."""
    first = await acts.slow(seconds, "slow-done")
    second = await acts.double(20)
    return f"{first}:{second}"


async def poisoned() -> int:
    """One activity that kills every worker that runs it (catalogue M-3)."""
    return await acts.crash_worker(1)


async def sleeper(seconds: float) -> float:
    return await workflow.sleep_for(seconds)


async def sleep_until(due: float) -> float:
    """Sleep until the epoch time ``due`` (workflow time is deterministic: replays agree)."""
    return await workflow.sleep_for(max(0.0, due - workflow.now().timestamp()))


async def echo(value: Any, signal_id: str | None = None) -> Any:
    """Returns ``value`` after it went through an activity (argument and result) and, with
    ``signal_id``, after a signal carried the same value: payloads round trip through the start
    arguments, an activity, a signal and the workflow's result."""
    echoed = await acts.echo_value(value)
    if signal_id is not None and await workflow.wait_for(signal_id) != echoed:
        raise ValueError("the signal's data differs from the activity's result")
    return echoed


async def waiter(signal_id: str) -> Any:
    return await workflow.wait_for(signal_id)


async def failing() -> int:
    return await acts.always_fails(1)


async def fatal_flow() -> int:
    return await acts.fatal(1)


async def counter(n: int, limit: int) -> int:
    """Continues as new until ``n`` reaches ``limit`` (bounded history per run)."""
    await acts.double(n)
    if n < limit:
        workflow.continue_as_new(n + 1, limit)
    return n


async def uses_asyncio_sleep() -> None:
    await asyncio.sleep(1)


async def opens_a_file() -> str:
    with open(os.devnull, encoding="utf-8") as handle:  # noqa: ASYNC230 - the sandbox must refuse this
        return handle.read()


async def deterministic() -> list[Any]:
    """random/uuid/now must be identical on every replay: recorded around a durable call."""
    before = [workflow.random(), workflow.uuid(), workflow.now().isoformat()]
    await acts.double(1)
    return [before, [workflow.random(), workflow.uuid()], workflow.get_context().replaying]


CHANGING = {"first": "double"}
"""Which activity ``changing`` calls first: a test flips it to simulate a code change."""


async def changing() -> Any:
    if CHANGING["first"] == "double":
        await acts.double(1)
    else:
        await acts.flaky(1, 0)
    return await workflow.wait_for(str(workflow.get_context().workflow_id) + "-go")


async def signals_emitter(target_signal: str) -> bool:
    await workflow.signal(target_signal, {"from": workflow.get_context().workflow_id})
    return True


async def parent_of_starter(child_id: str) -> str:
    return await workflow.start_child(sleeper, args=[0.0], workflow_id=child_id)


ALL = [
    run_shape, one_slow_call, sleeper, sleep_until, waiter, failing, fatal_flow, counter, uses_asyncio_sleep,
    opens_a_file, deterministic, changing, signals_emitter, parent_of_starter, echo, poisoned,
]  # fmt: skip
