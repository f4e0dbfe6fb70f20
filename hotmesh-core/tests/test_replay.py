"""The deterministic replay loop on its own: no backend, histories built by hand."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from hotmesh import workflow
from hotmesh.errors import HotMeshError, NonDeterminismError, WorkflowSandboxError
from hotmesh.meshflow._replay import Outcome, WorkflowState, replay
from hotmesh.providers import JSONValue


async def double_it(x: int) -> int:
    return 2 * x


acts = workflow.proxy_activities([double_it])


def _run(fn: Any, job: dict[str, JSONValue], *args: JSONValue) -> Outcome:
    base: dict[str, JSONValue] = {"workflow_name": fn.__name__, "task_queue": "q", "run": 1, "started_at": 1000.0}
    return replay(fn, list(args), WorkflowState({**base, **job}, workflow_id="wf-1", namespace="ns"))


def _done(seq: int, value: JSONValue, at: float = 1001.0) -> dict[str, JSONValue]:
    return {f"h:{seq}": {"ok": True, "value": value, "kind": "activity", "at": at}}


def _sent(seq: int, kind: str, key: str) -> dict[str, JSONValue]:
    return {f"d:{seq}": {"type": kind, "key": key, "cmd": {}, "by": "x", "step": "s", "at": 1000.0}}


async def gathered() -> list[int]:
    a, b = await asyncio.gather(acts.double_it(1), acts.double_it(2))
    c = await acts.double_it(a + b)
    return [a, b, c]


def test_gather_collates_into_one_suspension() -> None:
    outcome = _run(gathered, {})
    assert outcome.status == "suspended"
    assert [(c.seq, c.type, c.key) for c in outcome.commands] == [(1, "activity", "double_it"), (2, "activity", "double_it")]
    assert outcome.commands[0].details["args"] == [1]


def test_dispatched_calls_wait_without_new_commands() -> None:
    outcome = _run(gathered, {**_sent(1, "activity", "double_it"), **_sent(2, "activity", "double_it"), **_done(1, 2)})
    assert outcome.status == "suspended" and outcome.commands == [] and outcome.waiting == [2]


def test_full_history_completes_with_recorded_results() -> None:
    job = {**_sent(1, "activity", "double_it"), **_sent(2, "activity", "double_it"), **_sent(3, "activity", "double_it")}
    outcome = _run(gathered, {**job, **_done(1, 2), **_done(2, 4), **_done(3, 12)})
    assert outcome.status == "completed" and outcome.result == [2, 4, 12]


async def sleepy() -> float:
    return await workflow.sleep_for(5)


def test_a_different_call_at_an_index_is_non_determinism() -> None:
    outcome = _run(sleepy, _sent(1, "activity", "double_it"))
    assert outcome.status == "failed"
    assert isinstance(outcome.error, NonDeterminismError)
    assert "#1" in str(outcome.error) and "sleep" in str(outcome.error) and "double_it" in str(outcome.error)


async def bad_sleep() -> None:
    await asyncio.sleep(1)


async def bad_socket() -> None:
    socket.create_connection(("127.0.0.1", 9))


async def bad_file() -> None:
    with open(__file__, encoding="utf-8"):  # noqa: ASYNC230 - refused on purpose
        pass


@pytest.mark.parametrize(("fn", "hint"), [(bad_sleep, "sleep_for"), (bad_socket, "activity"), (bad_file, "activity")])
def test_non_durable_operations_are_refused(fn: Any, hint: str) -> None:
    outcome = _run(fn, {})
    assert outcome.status == "failed"
    assert isinstance(outcome.error, WorkflowSandboxError)
    assert hint in str(outcome.error)


def test_io_outside_workflow_code_is_untouched() -> None:
    _run(bad_file, {})
    with open(__file__, encoding="utf-8") as handle:  # the audit hook only refuses inside workflows
        assert handle.read(3)


async def chance() -> list[Any]:
    first = [workflow.random(), workflow.uuid(), workflow.now().timestamp()]
    await acts.double_it(1)
    return [first, workflow.random(), workflow.now().timestamp()]


def test_random_uuid_and_now_repeat_on_replay() -> None:
    suspended = _run(chance, {})
    assert suspended.status == "suspended"
    done = _run(chance, {**_sent(1, "activity", "double_it"), **_done(1, 2, at=1005.0)})
    again = _run(chance, {**_sent(1, "activity", "double_it"), **_done(1, 2, at=1005.0)})
    assert done.result == again.result
    assert isinstance(done.result, list)
    assert done.result[0][2] == 1000.0 and done.result[2] == 1005.0  # workflow time follows the history


async def renewing(n: int) -> int:
    if n < 3:
        workflow.continue_as_new(n + 1)
    return n


def test_continue_as_new_is_an_outcome_not_a_failure() -> None:
    outcome = _run(renewing, {}, 1)
    assert outcome.status == "continue_as_new" and outcome.continue_args == [2]
    assert _run(renewing, {}, 3).result == 3


def test_workflow_api_outside_a_workflow_is_a_clear_error() -> None:
    with pytest.raises(HotMeshError, match="inside a workflow"):
        workflow.now()


def test_two_different_activities_under_one_name_are_refused() -> None:
    from hotmesh.errors import ValidationError

    def other() -> None:
        pass

    other.__name__ = "double_it"
    workflow.proxy_activities([double_it])  # the same function again: fine
    with pytest.raises(ValidationError, match="double_it"):
        workflow.proxy_activities([other])
