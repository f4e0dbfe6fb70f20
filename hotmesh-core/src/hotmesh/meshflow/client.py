"""MeshFlow client: start workflows, signal them, and follow them through handles."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Literal

from hotmesh._payload import json_args
from hotmesh._runtime import ConnectionLike, runtime
from hotmesh.connection import Connection
from hotmesh.engine.durations import Duration, parse_duration
from hotmesh.engine.engine import Engine
from hotmesh.errors import (
    CapabilityNotSupportedError,
    DuplicateWorkflowError,
    InterruptedError,
    TimeoutError,
    ValidationError,
    WorkflowFailed,
    WorkflowNotFoundError,
)
from hotmesh.meshflow import _records as rec
from hotmesh.meshflow.worker import deliver_signal, interrupt_workflow, new_workflow_job
from hotmesh.providers import Capability, JSONValue, Subscription, check_json

__all__ = ["Client", "WorkflowHandle"]

DEFAULT_RESULT_TIMEOUT: Duration | None = None


class WorkflowHandle:
    """A started workflow: wait for its result, read its status and history, signal or stop it."""

    def __init__(self, client: Client, workflow_id: str, *, task_queue: str | None = None, workflow_name: str | None = None) -> None:
        self._client = client
        self.workflow_id = workflow_id
        self.task_queue = task_queue
        self.workflow_name = workflow_name
        self._created = False  # this handle's start wrote the workflow (no outcome before it)

    def __repr__(self) -> str:
        return f"WorkflowHandle(workflow_id={self.workflow_id!r}, workflow_name={self.workflow_name!r})"

    async def result(self, timeout: Duration | None = DEFAULT_RESULT_TIMEOUT) -> Any:
        """Wait for the workflow's result.

        Raises:
            WorkflowFailed: it failed; carries the remote error's type, message and traceback.
            InterruptedError: it was interrupted.
            WorkflowNotFoundError: no such workflow (never started, or expired).
            TimeoutError: no result within ``timeout`` (the workflow keeps running).
        """
        wait = parse_duration(timeout, what="timeout").total_seconds() if timeout is not None else None
        conn = await self._client._connection()
        subscription = await conn.sub.subscribe(rec.result_topic(self.workflow_id))
        try:
            return await self._wait(conn, subscription, wait, read_first=True)
        finally:
            await subscription.aclose()

    async def _wait(self, conn: Connection, subscription: Subscription, wait: float | None, *, read_first: bool) -> Any:
        """Wait on ``subscription`` (open before any outcome could be announced, when
        ``read_first`` is False) with a re-read of the job after every quiet 5 s."""
        deadline = time.monotonic() + wait if wait is not None else None
        while True:
            if read_first:
                fields = await conn.store.get_job(rec.job_id(self.workflow_id), ["status", "result", "error"])
                if fields is None:
                    raise WorkflowNotFoundError(f"no workflow {self.workflow_id!r} (it never ran, or it expired)")
                if fields.get("status") in rec.FINAL:
                    return _settle(self.workflow_id, fields)
            read_first = True
            left = deadline - time.monotonic() if deadline is not None else 5.0
            if left <= 0:
                raise TimeoutError(f"workflow {self.workflow_id!r} did not finish within {wait:g}s")
            # Woken by the worker's announcement; the periodic re-read covers a lost one.
            notified = await subscription.get(timeout=min(left, 5.0))
            if notified is not None and notified.payload.get("status") in rec.FINAL:
                return _settle(self.workflow_id, dict(notified.payload))

    async def status(self) -> str:
        """``running``, ``completed``, ``failed`` or ``interrupted``."""
        conn = await self._client._connection()
        fields = await conn.store.get_job(rec.job_id(self.workflow_id), ["status"])
        if fields is None:
            raise WorkflowNotFoundError(f"no workflow {self.workflow_id!r} (it never ran, or it expired)")
        return str(fields.get("status"))

    async def history(self) -> list[dict[str, JSONValue]]:
        """The durable calls so far as a JSON-ready list (command, outcome, failed attempts, times)."""
        conn = await self._client._connection()
        job = await conn.store.get_job(rec.job_id(self.workflow_id))
        if job is None:
            raise WorkflowNotFoundError(f"no workflow {self.workflow_id!r} (it never ran, or it expired)")
        return rec.history_events(job)

    async def signal(self, signal_id: str, data: Any = None) -> int:
        """Send signal ``signal_id`` (same as :meth:`Client.signal`)."""
        return await self._client.signal(signal_id, data)

    async def interrupt(self) -> bool:
        """Stop the workflow wherever it is; True if it was running. Its result() raises InterruptedError."""
        return await interrupt_workflow(await self._client._engine(), self.workflow_id)


class _Workflows:
    """``client.workflow``: start workflows and get handles."""

    def __init__(self, client: Client) -> None:
        self._client = client

    async def start(
        self,
        workflow: Callable[..., Any] | str | None = None,
        *,
        args: Iterable[Any] = (),
        task_queue: str = "default",
        workflow_name: str | None = None,
        workflow_id: str | None = None,
        await_: bool = True,
        expire: Duration | None = None,
        on_duplicate: Literal["error", "use_existing"] = "error",
    ) -> WorkflowHandle:
        """Start a workflow (durably: once this returns, it runs even if every worker restarts).

        ``workflow`` is the function or its name (or pass ``workflow_name=``). ``workflow_id``
        defaults to a fresh id; a taken id raises DuplicateWorkflowError, or returns the existing
        workflow's handle with ``on_duplicate="use_existing"``. ``expire`` keeps the finished
        workflow readable this long (default: until deleted). ``await_`` is kept for parity with the
        original's ``await: false``: start never blocks on the outcome either way; use
        ``handle.result()`` to wait.

        If workers of ``task_queue`` have registered and none knows the name, this raises
        WorkflowNotFoundError naming those they know; if none has registered yet, the start
        waits in the queue until a worker serving it connects.
        """
        name = workflow if isinstance(workflow, str) else getattr(workflow, "__name__", None) if workflow else None
        name = workflow_name or name
        if not name:
            raise ValidationError("start needs the workflow function or its name (workflow_name=)")
        rec.check_workflow_name(name)
        queue = rec.check_queue(task_queue)
        call_args = json_args(args)
        wid = rec.check_workflow_id(workflow_id) if workflow_id is not None else uuid.uuid4().hex
        keep = parse_duration(expire, what="expire").total_seconds() if expire is not None else None
        if on_duplicate not in ("error", "use_existing"):
            raise ValidationError(f"on_duplicate must be 'error' or 'use_existing', got {on_duplicate!r}")
        conn = await self._client._connection()
        conn.check_payload(call_args, "args")
        if keep is not None and Capability.STORE_TTL not in conn.store.capabilities:
            raise CapabilityNotSupportedError(conn.store.name, "expire (STORE_TTL)", "start without expire=")
        known = await _registered(conn, queue, name)
        if known and name not in known:
            raise WorkflowNotFoundError(f"no worker of task queue {queue!r} serves workflow {name!r}; registered there: {known}")
        engine = await self._client._engine()
        handle = WorkflowHandle(self._client, wid, task_queue=queue, workflow_name=name)
        created = await engine.create(new_workflow_job(wid, workflow_name=name, task_queue=queue, args=call_args, expire=keep))
        if not created:
            if on_duplicate == "use_existing":
                return handle
            raise DuplicateWorkflowError(f"a workflow with id {wid!r} already exists (running or not yet expired)")
        handle._created = True
        return handle

    async def execute(
        self,
        workflow: Callable[..., Any] | str | None = None,
        *,
        args: Iterable[Any] = (),
        task_queue: str = "default",
        workflow_name: str | None = None,
        workflow_id: str | None = None,
        expire: Duration | None = None,
        on_duplicate: Literal["error", "use_existing"] = "error",
        timeout: Duration | None = DEFAULT_RESULT_TIMEOUT,
    ) -> Any:
        """Start a workflow and wait for its result (temporalio's ``execute_workflow``).

        The same arguments as :meth:`start`, plus ``timeout`` as in ``handle.result()``. It
        listens for the outcome before the start is written, so unlike ``start`` followed by
        ``result`` it needs no read of the job to catch an outcome announced in between: one
        round trip less per workflow.
        """
        wait = parse_duration(timeout, what="timeout").total_seconds() if timeout is not None else None
        wid = rec.check_workflow_id(workflow_id) if workflow_id is not None else uuid.uuid4().hex
        conn = await self._client._connection()
        subscription = await conn.sub.subscribe(rec.result_topic(wid))
        try:
            handle = await self.start(
                workflow,
                args=args,
                task_queue=task_queue,
                workflow_name=workflow_name,
                workflow_id=wid,
                expire=expire,
                on_duplicate=on_duplicate,
            )
            return await handle._wait(conn, subscription, wait, read_first=not handle._created)
        finally:
            await subscription.aclose()

    def get_handle(
        self, task_queue: str | None = None, workflow_name: str | None = None, workflow_id: str | None = None
    ) -> WorkflowHandle:
        """A handle on an existing workflow by id (no I/O until used)."""
        if workflow_id is None:
            raise ValidationError("get_handle needs workflow_id=")
        return WorkflowHandle(self._client, rec.check_workflow_id(workflow_id), task_queue=task_queue, workflow_name=workflow_name)


class Client:
    """Starts and follows workflows; ``connection`` is a Connection, URL, config or None (default)."""

    def __init__(self, connection: ConnectionLike = None) -> None:
        self._given = connection
        self.workflow = _Workflows(self)

    async def _connection(self) -> Connection:
        return await runtime.connection(self._given)

    async def _engine(self) -> Engine:
        return runtime.engine(await self._connection())

    async def signal(self, signal_id: str, data: Any = None) -> int:
        """Send a signal: wakes the workflow waiting on ``signal_id``, or is buffered until one does.

        Returns how many waiters were woken now (0 when it was buffered).
        """
        if not isinstance(signal_id, str) or not signal_id:
            raise ValidationError(f"signal_id must be a non-empty string, got {signal_id!r}")
        check_json(data, "data")
        conn = await self._connection()
        conn.check_payload(data, "signal data")
        return await deliver_signal(conn, signal_id, data, delivery_id=uuid.uuid4().hex)

    def get_handle(
        self, task_queue: str | None = None, workflow_name: str | None = None, workflow_id: str | None = None
    ) -> WorkflowHandle:
        """Shortcut for ``client.workflow.get_handle``."""
        return self.workflow.get_handle(task_queue, workflow_name, workflow_id)


REGISTRY_TTL = 5.0
"""Seconds a client trusts its copy of a queue's registered workflow names (a miss re-reads)."""

_registry_cache: dict[tuple[int, str], tuple[float, list[str]]] = {}


async def _registered(conn: Connection, queue: str, name: str) -> list[str]:
    """The workflow names workers registered on ``queue``; cached briefly per connection, and
    read again when ``name`` is missing, so a worker that just registered it is never refused."""
    key = (id(conn), queue)
    cached = _registry_cache.get(key)
    if cached is not None and time.monotonic() - cached[0] < REGISTRY_TTL and name in cached[1]:
        return cached[1]
    _, found = await conn.store.get_cached(rec.registry_key(queue))
    names = [str(n) for n in found] if isinstance(found, list) else []
    _registry_cache[key] = (time.monotonic(), names)
    return names


def _settle(workflow_id: str, fields: dict[str, JSONValue]) -> Any:
    status = fields.get("status")
    if status == rec.COMPLETED:
        return fields.get("result")
    error = fields.get("error")
    error = error if isinstance(error, dict) else {}
    if status == rec.INTERRUPTED:
        raise InterruptedError(str(error.get("message", f"workflow {workflow_id!r} was interrupted")))
    raise WorkflowFailed(str(error.get("type", "Error")), str(error.get("message", "")), str(error.get("traceback", "")))
