"""Activities: the process-wide registry, their options, and the info handed to activity code."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from hotmesh.engine.router import RetryPolicy
from hotmesh.errors import ValidationError
from hotmesh.providers import JSONValue

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_activity(name: str, fn: Callable[..., Any]) -> None:
    """Make ``fn`` runnable by name in this process; a different function under a taken name is an error."""
    known = _REGISTRY.get(name)
    # The same function registered again (a module proxied twice, a fresh instance's bound
    # method) is fine: it has the same qualified name. A different one under the name is not.
    if known is not None and _where(known) != _where(fn):
        raise ValidationError(f"two different activities are named {name!r} ({_where(known)} and {_where(fn)}): rename one")
    _REGISTRY[name] = fn


def find_activity(name: str) -> Callable[..., Any] | None:
    """The activity registered under ``name`` in this process."""
    return _REGISTRY.get(name)


def registered_activities() -> list[str]:
    """Names of the activities registered in this process."""
    return sorted(_REGISTRY)


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True)
class ActivityOptions:
    """How proxied activities run: retries, a start-to-close timeout, an optional task queue."""

    retry: RetryPolicy
    start_to_close_timeout: timedelta
    task_queue: str | None = None

    @staticmethod
    def default_retry() -> RetryPolicy:
        """Ten attempts, 1 s doubling to at most 60 s (unpredictable endpoints usually recover)."""
        return RetryPolicy(
            max_attempts=10,
            initial_interval=timedelta(seconds=1),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=60),
        )

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "retry": retry_to_json(self.retry),
            "timeout": self.start_to_close_timeout.total_seconds(),
            "task_queue": self.task_queue,
        }


def retry_to_json(policy: RetryPolicy) -> dict[str, JSONValue]:
    return {
        "max_attempts": policy.max_attempts,
        "initial": policy.initial_interval.total_seconds(),
        "coefficient": policy.backoff_coefficient,
        "maximum": policy.maximum_interval.total_seconds(),
        "non_retryable": list(policy.non_retryable_error_types),
    }


def retry_from_json(data: object) -> RetryPolicy:
    if not isinstance(data, dict):
        return ActivityOptions.default_retry()
    non_retryable = data.get("non_retryable")
    return RetryPolicy(
        max_attempts=int(data.get("max_attempts", 10)),
        initial_interval=timedelta(seconds=float(data.get("initial", 1.0))),
        backoff_coefficient=float(data.get("coefficient", 2.0)),
        maximum_interval=timedelta(seconds=float(data.get("maximum", 60.0))),
        non_retryable_error_types=tuple(str(x) for x in non_retryable) if isinstance(non_retryable, list) else (),
    )


@dataclass(frozen=True)
class ActivityInfo:
    """What an activity knows about the call it is serving.

    ``idempotency_key`` is stable across retries and redeliveries of the same call: pass it to
    external systems so an effect repeated after a crash is recognised (promise C3).
    """

    workflow_id: str
    activity_name: str
    seq: int
    attempt: int
    idempotency_key: str
    run: int = 1
    """The workflow's run: 1, plus one for each time it continued as new (seq restarts at 1)."""


CURRENT_ACTIVITY: contextvars.ContextVar[ActivityInfo | None] = contextvars.ContextVar(
    "hotmesh_activity", default=None
)


def activity_info() -> ActivityInfo:
    """Inside an activity: its workflow id, name, call index, attempt and idempotency key."""
    info = CURRENT_ACTIVITY.get()
    if info is None:
        raise ValidationError("activity_info() can only be called inside an activity run by a MeshFlow worker")
    return info
