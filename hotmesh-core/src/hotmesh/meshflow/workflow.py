"""The API workflow code calls: durable activities, sleep, signals, children, determinism helpers.

Import it as ``from hotmesh import workflow`` or use ``MeshFlow.workflow``. Every function here
except :func:`proxy_activities` must be called inside a workflow function run by a MeshFlow worker.

Collate parallel durable calls with ``asyncio.gather``: they suspend the workflow once and resume
it when all have results. Races between durable calls (``asyncio.wait(FIRST_COMPLETED)``,
``as_completed``) are not supported: on replay the winner could differ.
"""

from __future__ import annotations

import inspect
import types
import uuid as _uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from hotmesh._payload import json_args
from hotmesh.engine.durations import Duration, parse_duration
from hotmesh.engine.router import RetryPolicy
from hotmesh.errors import ValidationError
from hotmesh.meshflow._activities import ActivityOptions, register_activity
from hotmesh.meshflow._replay import ContinueAsNew, WorkflowInfo, current_state
from hotmesh.providers import JSONValue, check_json

__all__ = [
    "ActivityProxy",
    "RetryPolicy",
    "WorkflowInfo",
    "continue_as_new",
    "exec_child",
    "get_context",
    "interrupt",
    "now",
    "proxy_activities",
    "random",
    "signal",
    "sleep_for",
    "start_child",
    "uuid",
    "wait_for",
]


class ActivityProxy:
    """Attribute access gives an awaitable stand-in for each proxied activity."""

    def __init__(self, names: Iterable[str], options: ActivityOptions) -> None:
        self._names = frozenset(names)
        self._options = options

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"no proxied activity {name!r}; proxied: {sorted(self._names)}")
        options = self._options

        async def call(*args: Any) -> Any:
            call_args = list(args)
            check_json(call_args, f"{name}.args")
            state = current_state("proxy_activities")
            return await state.durable("activity", name, {"name": name, "args": call_args, **options.to_json()})

        call.__name__ = name
        return call

    def __iter__(self) -> Any:
        """Unpack in name order: ``greet, saludar = proxy_activities([greet, saludar])``."""
        return iter(getattr(self, n) for n in sorted(self._names))

    def __dir__(self) -> list[str]:
        return sorted(self._names)


def proxy_activities(
    activities: types.ModuleType | type | Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]],
    *,
    retry: RetryPolicy | None = None,
    start_to_close_timeout: Duration = 60.0,
    task_queue: str | None = None,
) -> ActivityProxy:
    """Register activities in this process and return a proxy whose calls are durable.

    ``activities`` is a module (its public functions), a class (its public methods, called on a
    fresh instance), a list of functions or a name -> function mapping. Calling ``proxy.greet(x)``
    inside a workflow runs ``greet(x)`` once (at least once on a crash; use
    ``activity_info().idempotency_key`` for external effects), retried per ``retry``, and records
    its result so replays return it without running it again. ``task_queue`` routes the calls to
    workers of another queue (default: the workflow's own queue).
    """
    functions = _collect(activities)
    if not functions:
        raise ValidationError(f"no activities found in {activities!r}")
    options = ActivityOptions(
        retry=retry or ActivityOptions.default_retry(),
        start_to_close_timeout=parse_duration(start_to_close_timeout, what="start_to_close_timeout"),
        task_queue=task_queue,
    )
    for name, fn in functions.items():
        register_activity(name, fn)
    return ActivityProxy(functions, options)


def _collect(activities: object) -> dict[str, Callable[..., Any]]:
    if isinstance(activities, types.ModuleType):
        return {
            name: fn
            for name, fn in vars(activities).items()
            if not name.startswith("_")
            and inspect.isfunction(fn)
            and fn.__module__ == activities.__name__
        }
    if isinstance(activities, type):
        instance = activities()
        return {
            name: getattr(instance, name)
            for name, fn in vars(activities).items()
            if not name.startswith("_") and inspect.isfunction(fn)
        }
    if isinstance(activities, Mapping):
        return {str(k): v for k, v in activities.items() if callable(v)}
    if isinstance(activities, Iterable):
        found: dict[str, Callable[..., Any]] = {}
        for fn in activities:
            if not callable(fn):
                raise ValidationError(f"activity {fn!r} is not callable")
            found[getattr(fn, "__name__", repr(fn))] = fn
        return found
    if callable(activities):
        return {getattr(activities, "__name__", repr(activities)): activities}
    raise ValidationError(f"activities must be a module, class, list or mapping of functions, got {activities!r}")


async def sleep_for(duration: Duration) -> float:
    """Sleep durably (minutes or months); returns the seconds slept, so ``while await sleep_for(...)``
    loops. The timer lives in the store: a restart or a different worker does not shorten it."""
    seconds = parse_duration(duration, what="duration", allow_zero=True).total_seconds()
    state = current_state("sleep_for")
    value = await state.durable("sleep", "sleep", {"seconds": seconds})
    return float(value) if isinstance(value, (int, float)) else seconds


async def wait_for(signal_id: str) -> Any:
    """Suspend until a signal with this id arrives; return its data.

    A signal sent before the workflow reaches this call is buffered and consumed here (never
    lost, consumed once). Each signal wakes exactly one waiter.
    """
    if not isinstance(signal_id, str) or not signal_id:
        raise ValidationError(f"signal_id must be a non-empty string, got {signal_id!r}")
    return await current_state("wait_for").durable("signal", signal_id, {"signal_id": signal_id})


async def signal(signal_id: str, data: Any = None) -> None:
    """Send a signal from inside a workflow (exactly once per call, even on replay)."""
    if not isinstance(signal_id, str) or not signal_id:
        raise ValidationError(f"signal_id must be a non-empty string, got {signal_id!r}")
    check_json(data, "data")
    await current_state("signal").durable("emit", signal_id, {"signal_id": signal_id, "data": data})


async def exec_child(
    workflow: Callable[..., Any] | str,
    *,
    args: Iterable[Any] = (),
    workflow_id: str | None = None,
    task_queue: str | None = None,
) -> Any:
    """Start a child workflow and wait for its result (its failure raises here)."""
    details = _child_details("exec_child", workflow, args, workflow_id, task_queue, wait=True)
    return await current_state("exec_child").durable("child", str(details["workflow_name"]), details)


async def start_child(
    workflow: Callable[..., Any] | str,
    *,
    args: Iterable[Any] = (),
    workflow_id: str | None = None,
    task_queue: str | None = None,
) -> str:
    """Start a child workflow without waiting; returns its workflow id."""
    details = _child_details("start_child", workflow, args, workflow_id, task_queue, wait=False)
    value = await current_state("start_child").durable("start_child", str(details["workflow_name"]), details)
    return str(value)


def _child_details(
    api: str,
    workflow: Callable[..., Any] | str,
    args: Iterable[Any],
    workflow_id: str | None,
    task_queue: str | None,
    *,
    wait: bool,
) -> dict[str, JSONValue]:
    name = workflow if isinstance(workflow, str) else getattr(workflow, "__name__", None)
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{api}: workflow must be a function or a workflow name, got {workflow!r}")
    child_args = json_args(args, f"{api}.args")
    state = current_state(api)
    return {
        "workflow_name": name,
        "args": child_args,
        "workflow_id": workflow_id
        or (f"{state.workflow_id}-{name}-{state.seq + 1}" if state.run == 1 else f"{state.workflow_id}-{name}-{state.run}.{state.seq + 1}"),
        "task_queue": task_queue or state.task_queue,
        "wait": wait,
    }


async def interrupt(workflow_id: str) -> bool:
    """Interrupt another workflow; True if it was running."""
    value = await current_state("interrupt").durable("interrupt", workflow_id, {"workflow_id": workflow_id})
    return bool(value)


def continue_as_new(*args: Any) -> None:
    """End this run and start the workflow again with ``args`` and an empty history.

    Keeps a cyclical workflow's history (and replay time) bounded. Never returns.
    """
    call_args = list(args)
    check_json(call_args, "continue_as_new.args")
    current_state("continue_as_new")
    raise ContinueAsNew(call_args)


def get_context() -> WorkflowInfo:
    """Workflow id, name, task queue, namespace, run number, and whether this is a replay."""
    return current_state("get_context").info()


def now() -> datetime:
    """Deterministic workflow time (UTC): the start time, advanced by each replayed event."""
    return current_state("now").now()


def random() -> float:
    """A deterministic random float in [0, 1): the same sequence on every replay."""
    return current_state("random").random.random()


def uuid() -> str:
    """A deterministic UUID4 string: the same sequence on every replay."""
    rng = current_state("uuid").random
    return str(_uuid.UUID(int=rng.getrandbits(128), version=4))
