"""Deterministic replay: run workflow code against its recorded history.

Every durable call (activity, sleep, signal wait, child, signal emit, interrupt) takes the next
sequence number. If the history holds its result, the call returns it at once; otherwise the call
records a command (unless an earlier replay already dispatched it) and never resolves. When the
private loop has nothing left to run, the workflow is suspended and the worker persists all new
commands together: this is how ``asyncio.gather`` collates parallel calls into one suspension.

History lives in the workflow's job as fields (one transition per event, never a rewrite):
``d:<seq>`` the dispatched command, ``h:<seq>`` its outcome, ``e:<seq>:<attempt>`` each failed
activity attempt. Replaying code whose durable calls differ from ``d:<seq>`` raises
NonDeterminismError naming the index and both calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from hotmesh.errors import ActivityFailed, HotMeshError, NonDeterminismError, RemoteError
from hotmesh.meshflow._loop import IN_WORKFLOW, ReplayLoop, install_sandbox
from hotmesh.providers import JSONValue

WorkflowFunction = Callable[..., Coroutine[Any, Any, Any]]

_SEQ_FIELD = re.compile(r"^[dh]:(\d+)$")


@dataclass(frozen=True)
class Command:
    """A durable call that the workflow is waiting on and no replay has dispatched yet."""

    seq: int
    type: str
    key: str
    details: dict[str, JSONValue]


@dataclass(frozen=True)
class WorkflowInfo:
    """What ``workflow.get_context()`` returns."""

    workflow_id: str
    workflow_name: str
    task_queue: str
    namespace: str
    run: int
    replaying: bool
    parent_id: str | None


@dataclass
class Outcome:
    """Where one replay left the workflow."""

    status: str  # "completed" | "failed" | "suspended" | "continue_as_new"
    result: JSONValue = None
    error: BaseException | None = None
    commands: list[Command] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    continue_args: list[JSONValue] = field(default_factory=list)


class ContinueAsNew(BaseException):
    """Raised by ``workflow.continue_as_new``: restart with fresh history and new arguments.

    A BaseException so that ``except Exception`` in workflow code does not swallow it.
    """

    def __init__(self, args: list[JSONValue]) -> None:
        super().__init__("continue as new")
        self.new_args = args


class WorkflowState:
    """One replay's view of a workflow: its history, the next sequence number, new commands."""

    def __init__(self, job: Mapping[str, JSONValue], *, workflow_id: str, namespace: str) -> None:
        self.job = job
        self.workflow_id = workflow_id
        self.namespace = namespace
        self.workflow_name = str(job.get("workflow_name", ""))
        self.task_queue = str(job.get("task_queue", ""))
        raw_run = job.get("run", 1)
        self.run = raw_run if isinstance(raw_run, int) else 1
        parent = job.get("parent")
        self.parent_id = str(parent.get("workflow_id")) if isinstance(parent, dict) else None
        started = job.get("started_at", 0.0)
        self.clock = float(started) if isinstance(started, (int, float)) else 0.0
        self.seq = 0
        self.last_recorded = max(
            (int(m.group(1)) for m in map(_SEQ_FIELD.match, job) if m is not None), default=0
        )
        self.commands: list[Command] = []
        self.waiting: list[int] = []
        self.closed = False
        self._random: random.Random | None = None
        self.loop: ReplayLoop | None = None

    @property
    def random(self) -> random.Random:
        """The workflow's deterministic generator, seeded by id and run (made on first use:
        seeding costs more than a whole replay of a short workflow)."""
        if self._random is None:
            self._random = random.Random(f"{self.workflow_id}:{self.run}")
        return self._random

    def info(self) -> WorkflowInfo:
        return WorkflowInfo(
            workflow_id=self.workflow_id,
            workflow_name=self.workflow_name,
            task_queue=self.task_queue,
            namespace=self.namespace,
            run=self.run,
            replaying=self.seq < self.last_recorded,
            parent_id=self.parent_id,
        )

    def now(self) -> datetime:
        """Workflow time: the start, advanced to each replayed event's recorded time."""
        return datetime.fromtimestamp(self.clock, UTC)

    async def durable(self, kind: str, key: str, details: dict[str, JSONValue]) -> JSONValue:
        """Resolve durable call number ``seq`` from history, or record it and suspend."""
        if self.closed:
            raise NonDeterminismError("durable call after the workflow stopped running (in a finally block?)")
        self.seq += 1
        seq = self.seq
        recorded = self.job.get(f"d:{seq}")
        if isinstance(recorded, dict) and (recorded.get("type"), recorded.get("key")) != (kind, key):
            raise NonDeterminismError(
                f"workflow {self.workflow_id!r} call #{seq} is {kind} {key!r} now, but history recorded "
                f"{recorded.get('type')} {recorded.get('key')!r} at that index: the code changed under a "
                "running workflow (use a new workflow name or id for changed code)"
            )
        outcome = self.job.get(f"h:{seq}")
        if isinstance(outcome, dict):
            at = outcome.get("at")
            if isinstance(at, (int, float)) and at > self.clock:
                self.clock = float(at)
            if outcome.get("ok"):
                return outcome.get("value")
            raise _outcome_error(outcome, self.job, seq)
        if recorded is None:
            self.commands.append(Command(seq, kind, key, details))
        else:
            self.waiting.append(seq)
        assert self.loop is not None
        await self.loop.create_future()  # never resolved in this replay: the workflow suspends here
        raise AssertionError("unreachable")  # pragma: no cover


def _outcome_error(outcome: Mapping[str, JSONValue], job: Mapping[str, JSONValue], seq: int) -> BaseException:
    error = outcome.get("error")
    error = error if isinstance(error, dict) else {}
    kind, message, tb = str(error.get("type", "Error")), str(error.get("message", "")), str(error.get("traceback", ""))
    if outcome.get("kind") == "activity":
        attempts = []
        n = 1
        while isinstance(job.get(f"e:{seq}:{n}"), dict):
            attempt = job[f"e:{seq}:{n}"]
            assert isinstance(attempt, dict)
            attempts.append({k: str(v) for k, v in attempt.items()})
            n += 1
        return ActivityFailed(kind, message, tb, attempts=attempts)
    if kind == "hotmesh.errors.InterruptedError":
        from hotmesh.errors import InterruptedError as Interrupted

        return Interrupted(message)
    return RemoteError(kind, message, tb)


CURRENT: contextvars.ContextVar[WorkflowState | None] = contextvars.ContextVar("hotmesh_workflow", default=None)


def current_state(api: str) -> WorkflowState:
    """The workflow being replayed, or a clear error when called outside workflow code."""
    state = CURRENT.get()
    if state is None:
        raise HotMeshError(f"workflow.{api}() can only be called inside a workflow function run by a MeshFlow worker")
    return state


def replay(fn: WorkflowFunction, args: list[JSONValue], state: WorkflowState) -> Outcome:
    """Run ``fn(*args)`` on a fresh private loop until it finishes or suspends."""
    install_sandbox()
    loop = ReplayLoop()  # type: ignore[abstract]  # only what asyncio Tasks use is implemented
    state.loop = loop
    # Tasks copy the context when created: set both variables before the workflow's task exists.
    token, sandbox = CURRENT.set(state), IN_WORKFLOW.set(True)
    try:
        task = loop.create_task(fn(*args), name=f"workflow:{state.workflow_id}")
        loop.run_ready()
    finally:
        IN_WORKFLOW.reset(sandbox)
        CURRENT.reset(token)
    try:
        if not task.done():
            return Outcome("suspended", commands=state.commands, waiting=state.waiting)
        exc = task.exception()
        if exc is None:
            return Outcome("completed", result=task.result())
        if isinstance(exc, ContinueAsNew):
            return Outcome("continue_as_new", continue_args=exc.new_args)
        return Outcome("failed", error=exc)
    except asyncio.CancelledError as exc:
        return Outcome("failed", error=exc)
    except ContinueAsNew as exc:  # raised through task.exception() on some Python versions
        return Outcome("continue_as_new", continue_args=exc.new_args)
    finally:
        state.closed = True
        loop.discard()
