"""MeshFlow workers: replay workflows and run activities, on any number of processes.

A workflow task (stream ``mf.wf.<queue>``) loads the workflow's job, replays its code on the
private loop, and dispatches the new durable calls in ONE guarded transition (``require gen``):
the ``d:<seq>`` records plus the activity messages (atomically with the store where it can
publish). Timers, waiters and children follow; calls that resolve at once (signal emit, start
child, interrupt, a buffered signal) trigger another replay in the same task.

Crash safety: every ``d:<seq>`` names the delivery that dispatched it and the transition step; a
redelivered task re-applies that step (DUPLICATE re-publishes its messages) and redoes the
idempotent side effects (timer ids, waiter identities, child ids and signal delivery ids are
stable). Two workers replaying the same workflow at once cannot both dispatch: the second one's
``gen`` guard fails and it replays again from the store.

Activity tasks (stream ``mf.act.<queue>``) run the function and write its outcome with the
idempotent step ``h:<seq>`` together with a replay message; a failed attempt is recorded as
``e:<seq>:<n>`` and retried through a durable timer after the policy's backoff.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from hotmesh._runtime import ConnectionLike, runtime
from hotmesh.connection import Connection
from hotmesh.engine.crashpoints import crashpoint
from hotmesh.engine.engine import Engine, headers_for, wait_for_shutdown_signal
from hotmesh.engine.router import RetryPolicy
from hotmesh.errors import (
    CapabilityNotSupportedError,
    DuplicateWorkflowError,
    HotMeshError,
    InterruptedError,
    PayloadTooLargeError,
    SerializationError,
    ValidationError,
    WorkflowNotFoundError,
)
from hotmesh.meshflow import _records as rec
from hotmesh.meshflow._activities import (
    CURRENT_ACTIVITY,
    ActivityInfo,
    find_activity,
    register_activity,
    registered_activities,
    retry_from_json,
)
from hotmesh.meshflow._replay import Command, Outcome, WorkflowFunction, WorkflowState, replay
from hotmesh.providers import (
    Capability,
    Delivery,
    JSONValue,
    Message,
    NewJob,
    Timer,
    Transition,
    TransitionStatus,
    Waiter,
    check_json,
)

__all__ = ["Worker"]

log = logging.getLogger("hotmesh.meshflow")

MAX_ROUNDS = 1000
"""Replays one workflow task may run when calls keep resolving at once (a runaway guard)."""


class UnknownWorkflowError(HotMeshError):
    """This worker has no workflow function by that name (another worker of the queue may)."""


class Worker:
    """Serves one task queue: replays its workflows and runs the activities proxied to it."""

    def __init__(self, engine: Engine, task_queue: str, workflows: dict[str, WorkflowFunction]) -> None:
        self.engine = engine
        self.connection: Connection = engine.connection
        self.task_queue = task_queue
        self.workflows = workflows

    @classmethod
    async def create(
        cls,
        *,
        connection: ConnectionLike = None,
        task_queue: str = "default",
        workflow: WorkflowFunction | Iterable[WorkflowFunction] | Mapping[str, WorkflowFunction],
        activities: Iterable[Callable[..., Any]] = (),
        concurrency: int = 50,
        activity_concurrency: int = 50,
        workflow_visibility_timeout: float | None = None,
        activity_visibility_timeout: float | None = None,
    ) -> Worker:
        """Register ``workflow`` (one function, several, or a name -> function mapping) on
        ``task_queue`` and start serving.

        Activities proxied by the workflows' modules (``workflow.proxy_activities``) are served
        too; ``activities`` registers more.

        The two visibility timeouts (seconds) say how long a task taken by a process that died
        stays invisible before another worker runs it. Where the stream renews leases
        (STREAM_EXTEND: every backend shipped here) a live worker keeps its task however long
        it runs, so they are short by default: 30 s each. On a stream that cannot, a task must
        finish within its timeout or it is delivered again (and runs twice), so the defaults are
        60 s for workflow tasks and 300 s for activities. Either way a task delivered more often
        than its retry policy allows, each time without an outcome, fails with
        ``WorkerLostError`` after a last run on probation (:mod:`hotmesh.engine.probation`).
        An activity's own limit is its ``start_to_close_timeout``.
        """
        queue = rec.check_queue(task_queue)
        if isinstance(workflow, Mapping):
            named = list(workflow.items())
        elif callable(workflow):
            named = [(getattr(workflow, "__name__", repr(workflow)), workflow)]
        else:
            several: object = workflow  # checked at run time: callers may pass anything
            if isinstance(several, (str, bytes)) or not isinstance(several, Iterable):
                raise ValidationError(
                    "Worker.create(workflow=...) takes an 'async def' workflow function, a list of them"
                    f" or a name -> function mapping; got {type(several).__name__}"
                )
            named = [(getattr(fn, "__name__", repr(fn)), fn) for fn in several]
        registered: dict[str, WorkflowFunction] = {}
        for name, fn in named:
            if not inspect.iscoroutinefunction(fn):
                raise ValidationError(f"workflow {fn!r} must be an 'async def' function")
            registered[rec.check_workflow_name(name)] = fn
        if not registered:
            raise ValidationError("Worker.create needs at least one workflow function")
        for fn in activities:
            register_activity(getattr(fn, "__name__", repr(fn)), fn)
        if concurrency < 1 or activity_concurrency < 1:
            raise ValidationError("concurrency and activity_concurrency must be at least 1")
        conn = await runtime.connection(connection)
        renews = Capability.STREAM_EXTEND in conn.stream.capabilities
        workflow_lease = _visibility(workflow_visibility_timeout, 30.0 if renews else 60.0, "workflow_visibility_timeout")
        activity_lease = _visibility(activity_visibility_timeout, 30.0 if renews else 300.0, "activity_visibility_timeout")
        engine = runtime.engine(conn)
        worker = cls(engine, queue, registered)
        await worker._advertise()
        await engine.serve(
            rec.workflow_stream(queue),
            worker._handle_workflow_task,
            group=rec.GROUP,
            concurrency=concurrency,
            retry=RetryPolicy(max_attempts=5, initial_interval=timedelta(milliseconds=200)),
            on_dead_letter=worker._workflow_task_dead,
            visibility_timeout=workflow_lease,
        )
        await engine.serve(
            rec.activity_stream(queue),
            worker._handle_activity_task,
            group=rec.GROUP,
            concurrency=activity_concurrency,
            retry=RetryPolicy(max_attempts=5, initial_interval=timedelta(milliseconds=200)),
            on_dead_letter=worker._activity_task_dead,
            visibility_timeout=activity_lease,
        )
        return worker

    async def _advertise(self) -> None:
        """Record this queue's workflow names so clients can reject unknown ones at start."""
        store = self.connection.store
        key = rec.registry_key(self.task_queue)
        _, known = await store.get_cached(key)
        names = sorted({str(n) for n in (known if isinstance(known, list) else [])} | set(self.workflows))
        if names != known:
            await store.set_cached(key, list(names), ttl=None)

    async def run(self, grace: float = 5.0) -> None:
        """Serve until SIGTERM or SIGINT, then shut down gracefully."""
        await wait_for_shutdown_signal()
        await self.shutdown(grace)

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop serving: in-flight tasks finish within ``grace`` or are released to other workers."""
        await runtime.shutdown(grace)

    # -- workflow tasks -------------------------------------------------------------------------
    async def _handle_workflow_task(self, delivery: Delivery) -> None:
        body = delivery.message.body
        workflow_id = str(body.get("workflow_id"))
        job = rec.job_id(workflow_id)
        kind = body.get("kind")
        seq, run = body.get("seq"), body.get("run", 1)
        if kind == "expire":
            await self._expire(workflow_id)
            return
        if kind == "event" and isinstance(seq, int) and isinstance(run, int):
            outcome = body.get("outcome")
            if not await self._record(job, run, seq, outcome if isinstance(outcome, dict) else {}):
                return
            crashpoint("workflow.after_record")
        elif kind == "signal" and isinstance(seq, int) and isinstance(run, int):
            signal_id = str(body.get("signal_id"))
            signal = await self.connection.store.consume_signal(signal_id, job_id=job, step=f"{run}:{seq}")
            if signal is None:
                return  # another waiter took it; ours stays registered for the next one
            if not await self._record(job, run, seq, rec.ok(signal.data, "signal")):
                return
            crashpoint("workflow.after_record")
        snapshot = body.get("job") if kind == "start" and delivery.delivery_count == 1 else None
        await self._advance(workflow_id, delivery.id, snapshot if isinstance(snapshot, dict) else None)

    async def _expire(self, workflow_id: str) -> None:
        """A finished record's ttl ran out: remove its search document, then the job."""
        job_key = rec.job_id(workflow_id)
        job = await self.connection.store.get_job(job_key, ["status", "search_index"])
        if job is None or job.get("status") not in rec.FINAL:
            return
        index = job.get("search_index")
        if isinstance(index, str):
            await self.connection.search.delete(index, workflow_id)
        await self.connection.store.delete_job(job_key)

    async def _record(self, job: str, run: int, seq: int, outcome: dict[str, JSONValue]) -> bool:
        """Write the outcome of call ``seq`` of run ``run`` once; False when that run is over."""
        if "at" not in outcome:
            outcome = {**outcome, "at": time.time()}
        result = await self.engine.transition(
            Transition(job, f"h:{run}:{seq}", set={f"h:{seq}": outcome}, require={"status": rec.RUNNING, "run": run})
        )
        return result.status is not TransitionStatus.REJECTED

    async def _advance(self, workflow_id: str, delivery_id: str, snapshot: dict[str, JSONValue] | None = None) -> None:
        """Replay until the workflow finishes or waits on calls that are all dispatched.

        ``snapshot`` (the new job's fields, carried by its start message) stands in for the first
        read; every later round reads the job from the store.
        """
        job_key = rec.job_id(workflow_id)
        store = self.connection.store
        for _ in range(MAX_ROUNDS):
            job, snapshot = (snapshot, None) if snapshot is not None else (await store.get_job(job_key), None)
            if job is None:
                return
            if job.get("status") != rec.RUNNING:
                final_step = job.get("final_step")
                parent = job.get("parent")
                if isinstance(final_step, str) and isinstance(parent, dict) and parent.get("wait"):
                    # The parent's wake-up travels with the final transition; re-apply it so a
                    # follow-up lost with a crash or a lost reply is published (DUPLICATE).
                    await self.engine.transition(Transition(job_key, final_step))
                return
            name = str(job.get("workflow_name"))
            fn = self.workflows.get(name)
            if fn is None:
                raise UnknownWorkflowError(
                    f"no workflow {name!r} on task queue {self.task_queue!r} in this worker; "
                    f"it serves {sorted(self.workflows)}"
                )
            raw_args = job.get("args")
            state = WorkflowState(job, workflow_id=workflow_id, namespace=self.connection.namespace)
            outcome = replay(fn, list(raw_args) if isinstance(raw_args, list) else [], state)
            gen = job.get("gen", 0)
            raw_run = job.get("run", 1)
            run = raw_run if isinstance(raw_run, int) else 1
            if outcome.status != "suspended":
                if await self._finish(workflow_id, job, outcome, gen):
                    return
                continue  # someone else advanced it meanwhile: replay the newer state
            redo = [
                seq
                for seq in outcome.waiting
                if isinstance(d := job.get(f"d:{seq}"), dict) and d.get("by") == delivery_id
            ]
            if not outcome.commands and not redo:
                return
            resolved = False
            if outcome.commands:
                # Activities alone have no effects after the transition: it may ack the task.
                final = not redo and all(c.type == "activity" for c in outcome.commands)
                dispatched = await self._dispatch(workflow_id, run, outcome.commands, gen, delivery_id, final=final)
                if dispatched is None:
                    continue  # lost the race on ``gen``: replay what the winner wrote
                resolved = dispatched
            if redo:
                resolved = await self._redo(workflow_id, run, job, redo) or resolved
            if not resolved:
                return
        log.error("workflow %s kept resolving calls for %d replays; leaving it for the next task", workflow_id, MAX_ROUNDS)

    async def _dispatch(
        self,
        workflow_id: str,
        run: int,
        commands: list[Command],
        gen: JSONValue,
        delivery_id: str,
        *,
        final: bool = False,
    ) -> bool | None:
        """Persist new commands in one guarded transition; None if another replay won the race.

        ``final``: nothing follows the transition for this task (see ``Engine.transition``).
        """
        job_key = rec.job_id(workflow_id)
        step = f"r:{run}:{gen}:{delivery_id}"
        now = time.time()
        if any(c.type == "sleep" for c in commands):
            now = (await self.connection.store.now()).timestamp()  # timers follow the store's clock
        sets: dict[str, JSONValue] = {"gen": (gen if isinstance(gen, int) else 0) + 1}
        messages: list[Message] = []
        dispatched: list[tuple[Command, dict[str, JSONValue]]] = []
        for command in commands:
            details = dict(command.details)
            dispatched.append((command, details))
            if command.type == "sleep":
                details["due"] = now + float(details.get("seconds", 0.0))  # type: ignore[arg-type]
            sets[f"d:{command.seq}"] = {
                "type": command.type,
                "key": command.key,
                "cmd": details,
                "by": delivery_id,
                "step": step,
                "at": now,
            }
            if command.type == "activity":
                messages.append(self._activity_message(workflow_id, run, command.seq, details, attempt=1))
        result = await self.engine.transition(
            Transition(
                job_key,
                step,
                set=sets,
                require={"gen": gen, "status": rec.RUNNING},
                messages=tuple(messages),
            ),
            final=final,
        )
        if result.status is TransitionStatus.REJECTED:
            return None
        crashpoint("workflow.after_dispatch")
        resolved = False
        for command, details in dispatched:
            resolved = await self._side_effect(workflow_id, run, command.seq, command.type, details) or resolved
        crashpoint("workflow.after_side_effects")
        return resolved

    async def _redo(self, workflow_id: str, run: int, job: dict[str, JSONValue], seqs: list[int]) -> bool:
        """Finish what an earlier attempt of this same task dispatched before it crashed."""
        job_key = rec.job_id(workflow_id)
        resolved = False
        steps_done: set[str] = set()
        for seq in seqs:
            record = job[f"d:{seq}"]
            assert isinstance(record, dict)
            step = str(record.get("step"))
            if step not in steps_done:  # DUPLICATE: the engine re-publishes the step's messages
                steps_done.add(step)
                await self.engine.transition(Transition(job_key, step))
            cmd = record.get("cmd")
            if isinstance(cmd, dict):
                resolved = await self._side_effect(workflow_id, run, seq, str(record.get("type")), cmd) or resolved
        return resolved

    def _activity_message(
        self, workflow_id: str, run: int, seq: int, details: dict[str, JSONValue], *, attempt: int
    ) -> Message:
        queue = details.get("task_queue") or self.task_queue
        return Message(
            stream=rec.activity_stream(str(queue)),
            body={
                "workflow_id": workflow_id,
                "run": run,
                "seq": seq,
                "name": details.get("name"),
                "args": details.get("args"),
                "attempt": attempt,
                "retry": details.get("retry"),
                "timeout": details.get("timeout"),
                "reply_queue": self.task_queue,
            },
            headers=headers_for(),
        )

    async def _side_effect(self, workflow_id: str, run: int, seq: int, kind: str, cmd: dict[str, JSONValue]) -> bool:
        """The idempotent effects of a dispatched call; True when its outcome is already recorded."""
        job_key = rec.job_id(workflow_id)
        store = self.connection.store
        if kind == "activity":
            return False
        if kind == "sleep":
            seconds = float(cmd.get("seconds", 0.0))  # type: ignore[arg-type]
            if seconds <= 0:
                return await self._record(job_key, run, seq, rec.ok(0.0, "sleep"))
            due = float(cmd.get("due", time.time()))  # type: ignore[arg-type]
            await self.engine.scheduler.schedule(
                Timer(
                    timer_id=f"{job_key}:{run}:s{seq}",
                    due=datetime.fromtimestamp(due, UTC),
                    message=rec.run_message(
                        self.task_queue,
                        workflow_id,
                        "event",
                        run=run,
                        seq=seq,
                        outcome={"ok": True, "value": seconds, "kind": "sleep"},
                    ),
                )
            )
            return False
        if kind == "signal":
            signal_id = str(cmd.get("signal_id"))
            waiter = Waiter(
                job_id=job_key,
                step=f"{run}:{seq}",
                message=rec.run_message(self.task_queue, workflow_id, "signal", run=run, seq=seq, signal_id=signal_id),
            )
            if await store.add_waiter(signal_id, waiter) is None:
                return False
            signal = await store.consume_signal(signal_id, job_id=job_key, step=f"{run}:{seq}")
            if signal is None:
                return False
            return await self._record(job_key, run, seq, rec.ok(signal.data, "signal"))
        if kind == "emit":
            await deliver_signal(
                self.connection, str(cmd.get("signal_id")), cmd.get("data"), delivery_id=f"{job_key}:{run}:{seq}"
            )
            return await self._record(job_key, run, seq, rec.ok(None, "emit"))
        if kind in ("child", "start_child"):
            return await self._start_child(workflow_id, run, seq, kind, cmd)
        if kind == "search":
            try:
                # MeshData record operation: the job is the record, the search document its index.
                value = await record_operation(self.engine, workflow_id, f"rec:{run}:{seq}", cmd)
            except (ValidationError, CapabilityNotSupportedError, WorkflowNotFoundError) as exc:
                return await self._record(job_key, run, seq, rec.failed(rec.describe_exception(exc), "search"))
            return await self._record(job_key, run, seq, rec.ok(value, "search"))
        if kind == "interrupt":
            target = str(cmd.get("workflow_id"))
            done = await interrupt_workflow(self.engine, target, missing_ok=True)
            return await self._record(job_key, run, seq, rec.ok(done, "interrupt"))
        raise ValidationError(f"unknown durable call type {kind!r}")

    async def _start_child(self, workflow_id: str, run: int, seq: int, kind: str, cmd: dict[str, JSONValue]) -> bool:
        job_key = rec.job_id(workflow_id)
        child_id = str(cmd.get("workflow_id"))
        queue = str(cmd.get("task_queue") or self.task_queue)
        parent: dict[str, JSONValue] = {
            "workflow_id": workflow_id,
            "run": run,
            "seq": seq,
            "task_queue": self.task_queue,
            "wait": kind == "child",
        }
        created = await self.engine.create(
            new_workflow_job(
                child_id,
                workflow_name=str(cmd.get("workflow_name")),
                task_queue=queue,
                args=cmd.get("args") if isinstance(cmd.get("args"), list) else [],
                parent=parent,
            )
        )
        if not created:
            existing = await self.connection.store.get_job(rec.job_id(child_id), ["parent"])
            if existing is None or existing.get("parent") != parent:
                error = rec.describe_exception(
                    DuplicateWorkflowError(f"child workflow id {child_id!r} is already used by another workflow")
                )
                return await self._record(job_key, run, seq, rec.failed(error, "child"))
        if kind == "start_child":
            return await self._record(job_key, run, seq, rec.ok(child_id, "start_child"))
        return False

    async def _finish(self, workflow_id: str, job: dict[str, JSONValue], outcome: Outcome, gen: JSONValue) -> bool:
        """Record the final outcome (or continue as new); False if the guard lost a race."""
        job_key = rec.job_id(workflow_id)
        run = job.get("run", 1)
        if outcome.status == "continue_as_new":
            stale = tuple(k for k in job if rec.is_history_field(k))
            result = await self.engine.transition(
                Transition(
                    job_key,
                    f"can:{run}",
                    set={
                        "args": outcome.continue_args,
                        "run": (run if isinstance(run, int) else 1) + 1,
                        "gen": 0,
                        "started_at": time.time(),
                    },
                    delete=stale,
                    require={"gen": gen, "status": rec.RUNNING},
                    messages=(rec.run_message(self.task_queue, workflow_id, "start"),),
                ),
                final=True,
            )
            return result.status is not TransitionStatus.REJECTED
        fields: dict[str, JSONValue] = {"finished_at": time.time()}
        if outcome.status == "completed":
            try:
                check_json(outcome.result, "result")
                self.connection.check_payload(outcome.result, "workflow result")
                fields.update(status=rec.COMPLETED, result=outcome.result)
            except (SerializationError, PayloadTooLargeError) as exc:
                fields.update(status=rec.FAILED, error=rec.describe_exception(exc))
        else:
            assert outcome.error is not None
            fields.update(status=rec.FAILED, error=rec.describe_exception(outcome.error))
        expire = job.get("expire")
        fields["final_step"] = f"done:{run}"
        record_ttl = job.get("record_ttl")
        # The announcement travels with the outcome (or right after it: waiting clients also
        # re-read the job), so the outcome may ack the task unless a record ttl timer follows.
        result = await self.engine.transition(
            Transition(
                job_key,
                f"done:{run}",
                set=fields,
                require={"gen": gen, "status": rec.RUNNING},
                messages=tuple(_parent_messages(job, fields)),
                expire=timedelta(seconds=float(expire)) if isinstance(expire, (int, float)) else None,
                notify=((rec.result_topic(workflow_id), _announcement(fields)),),
            ),
            final=not isinstance(record_ttl, (int, float)),
        )
        if result.status is TransitionStatus.REJECTED:
            return False
        crashpoint("workflow.after_finish")
        if isinstance(record_ttl, (int, float)):
            await self.engine.scheduler.schedule(
                Timer(
                    timer_id=f"{job_key}:expire",
                    due=await self.connection.store.now() + timedelta(seconds=float(record_ttl)),
                    message=rec.run_message(self.task_queue, workflow_id, "expire"),
                )
            )
        return True

    async def _workflow_task_dead(self, delivery: Delivery, exc: BaseException) -> bool:
        """A workflow task that kept failing: fail the workflow with the error (never silently).

        Returns True (superseded: ack, do not dead-letter) when the workflow had already ended
        through another delivery: several run requests of one workflow may be in flight when its
        replay kills workers, and the first given up on fails it and leaves the dead letter.
        """
        workflow_id = str(delivery.message.body.get("workflow_id"))
        if await fail_workflow(self.engine, workflow_id, rec.describe_exception(exc), by=delivery.id):
            return False
        job = await self.connection.store.get_job(rec.job_id(workflow_id), ["status", "failed_by"])
        if job is None or job.get("status") == rec.RUNNING:
            return False
        return job.get("failed_by") != delivery.id

    # -- activity tasks -------------------------------------------------------------------------
    async def _handle_activity_task(self, delivery: Delivery) -> None:
        body = delivery.message.body
        workflow_id = str(body.get("workflow_id"))
        job_key = rec.job_id(workflow_id)
        seq = int(body.get("seq") or 0)  # type: ignore[arg-type]
        run = int(body.get("run") or 1)  # type: ignore[arg-type]
        name = str(body.get("name"))
        attempt = int(body.get("attempt") or 1)  # type: ignore[arg-type]
        reply_queue = str(body.get("reply_queue") or self.task_queue)
        store = self.connection.store
        if delivery.delivery_count > 1:  # redelivered: the outcome may already be written
            fields = await store.get_job(job_key, ["status", "run", f"h:{seq}"])
            if fields is None or fields.get("status") != rec.RUNNING or fields.get("run") != run:
                return
            if f"h:{seq}" in fields:
                # Written, but the follow-up may not have been published (a crash or a lost reply
                # on a store that cannot publish atomically): DUPLICATE re-publishes it.
                await self.engine.transition(Transition(job_key, f"h:{run}:{seq}"))
                return
        fn = find_activity(name)
        if fn is None:
            raise ValidationError(
                f"no activity {name!r} in this worker (task queue {self.task_queue!r}); it has {registered_activities()}"
            )
        raw_args = body.get("args")
        args = list(raw_args) if isinstance(raw_args, list) else []
        timeout = body.get("timeout")
        info = ActivityInfo(workflow_id, name, seq, attempt, f"{workflow_id}:{run}:{seq}", run)
        token = CURRENT_ACTIVITY.set(info)
        try:
            value = await asyncio.wait_for(
                _invoke(fn, args), timeout=float(timeout) if isinstance(timeout, (int, float)) else None
            )
            check_json(value, f"{name}() result")
            self.connection.check_payload(value, f"{name}() result")
        except Exception as exc:
            if isinstance(exc, TimeoutError) and not isinstance(exc, HotMeshError):
                exc = TimeoutError(f"activity {name!r} exceeded its start_to_close_timeout of {timeout}s")
            await self._activity_failed(workflow_id, run, seq, attempt, body, reply_queue, rec.describe_exception(exc))
            return
        finally:
            CURRENT_ACTIVITY.reset(token)
        crashpoint("activity.after_run")
        await self.engine.transition(
            Transition(
                job_key,
                f"h:{run}:{seq}",
                set={f"h:{seq}": rec.ok(value, "activity")},
                require={"status": rec.RUNNING, "run": run},
                messages=(rec.run_message(reply_queue, workflow_id),),
            ),
            final=True,
        )

    async def _activity_failed(
        self,
        workflow_id: str,
        run: int,
        seq: int,
        attempt: int,
        body: Any,
        reply_queue: str,
        error: dict[str, JSONValue],
    ) -> None:
        job_key = rec.job_id(workflow_id)
        policy = retry_from_json(body.get("retry"))
        final = attempt >= policy.max_attempts or rec.error_matches(error, policy.non_retryable_error_types)
        if final:
            await self.engine.transition(
                Transition(
                    job_key,
                    f"h:{run}:{seq}",
                    set={f"h:{seq}": rec.failed(error, "activity"), f"e:{seq}:{attempt}": error},
                    require={"status": rec.RUNNING, "run": run},
                    messages=(rec.run_message(reply_queue, workflow_id),),
                ),
                final=True,
            )
            return
        result = await self.engine.transition(
            Transition(
                job_key,
                f"e:{run}:{seq}:{attempt}",
                set={f"e:{seq}:{attempt}": error},
                require={"status": rec.RUNNING, "run": run},
            )
        )
        if result.status is TransitionStatus.REJECTED:
            return
        crashpoint("activity.after_attempt_error")
        due = await self.connection.store.now() + policy.delay(attempt)
        retry_body = dict(body)
        retry_body["attempt"] = attempt + 1
        await self.engine.scheduler.schedule(
            Timer(
                timer_id=f"{job_key}:{run}:a{seq}:{attempt + 1}",
                due=due.astimezone(UTC) if due.tzinfo else due.replace(tzinfo=UTC),
                message=Message(stream=rec.activity_stream(self.task_queue), body=retry_body, headers=headers_for()),
            )
        )

    async def _activity_task_dead(self, delivery: Delivery, exc: BaseException) -> bool:
        """Fail the activity with the error, naming the delivery given up on.

        Returns True (superseded: ack, do not dead-letter) when the step already has an outcome
        written by another delivery: a second copy of the task message, which a workflow task
        redelivered after a crash between its publish and its ack re-emits (Engine rule 2) on
        a store that cannot publish atomically. Both copies may be poison; the first given up
        on decides the outcome and leaves the dead letter. A failure this very delivery wrote
        before a crash kept it from dead-lettering still dead-letters on its redelivery.
        """
        body = delivery.message.body
        workflow_id = str(body.get("workflow_id"))
        seq = int(body.get("seq") or 0)  # type: ignore[arg-type]
        run = int(body.get("run") or 1)  # type: ignore[arg-type]
        reply_queue = str(body.get("reply_queue") or self.task_queue)
        job_key = rec.job_id(workflow_id)
        failure = {**rec.failed(rec.describe_exception(exc), "activity"), "delivery": delivery.id}
        result = await self.engine.transition(
            Transition(
                job_key,
                f"h:{run}:{seq}",
                set={f"h:{seq}": failure},
                require={"status": rec.RUNNING, "run": run},
                messages=(rec.run_message(reply_queue, workflow_id),),
            )
        )
        if result.status is TransitionStatus.APPLIED:
            return False
        fields = await self.connection.store.get_job(job_key, ["run", f"h:{seq}"])
        outcome = (fields or {}).get(f"h:{seq}")
        same_run = (fields or {}).get("run") == run
        return same_run and isinstance(outcome, dict) and outcome.get("delivery") != delivery.id


def _visibility(seconds: float | None, default: float, what: str) -> timedelta:
    """A visibility timeout given in seconds, or the default for the connection's stream."""
    if seconds is None:
        return timedelta(seconds=default)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ValidationError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return timedelta(seconds=seconds)


async def _invoke(fn: Callable[..., Any], args: list[Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    context_args = args
    result = await anyio.to_thread.run_sync(lambda: fn(*context_args))
    if inspect.isawaitable(result):
        return await result
    return result


def new_workflow_job(
    workflow_id: str,
    *,
    workflow_name: str,
    task_queue: str,
    args: JSONValue,
    parent: dict[str, JSONValue] | None = None,
    expire: float | None = None,
    extra: Mapping[str, JSONValue] | None = None,
) -> NewJob:
    """The job of a new workflow and the message that starts it (created atomically)."""
    fields: dict[str, JSONValue] = {
        "status": rec.RUNNING,
        "workflow_name": workflow_name,
        "task_queue": task_queue,
        "args": args,
        "run": 1,
        "gen": 0,
        "started_at": time.time(),
    }
    if parent is not None:
        fields["parent"] = parent
    if expire is not None:
        fields["expire"] = expire
    fields.update(extra or {})
    # The start message carries the new job's fields: the first workflow task replays from them
    # without reading the job back (one round trip less per workflow; the gen guard of its
    # transitions still catches anything that changed the job in between).
    return NewJob(
        rec.job_id(workflow_id),
        fields,
        messages=(rec.run_message(task_queue, workflow_id, "start", job=dict(fields)),),
    )


def _announcement(fields: dict[str, JSONValue]) -> dict[str, JSONValue]:
    return {k: fields[k] for k in ("status", "result", "error") if k in fields}


def _parent_messages(job: dict[str, JSONValue], fields: dict[str, JSONValue]) -> list[Message]:
    parent = job.get("parent")
    if not isinstance(parent, dict) or not parent.get("wait"):
        return []
    error = fields.get("error")
    outcome = (
        rec.ok(fields.get("result"), "child")
        if fields.get("status") == rec.COMPLETED
        else rec.failed(error if isinstance(error, dict) else {}, "child")
    )
    return [
        rec.run_message(
            str(parent.get("task_queue")),
            str(parent.get("workflow_id")),
            "event",
            run=parent.get("run", 1),
            seq=parent.get("seq"),
            outcome=outcome,
        )
    ]


async def deliver_signal(connection: Connection, signal_id: str, data: JSONValue, *, delivery_id: str) -> int:
    """Buffer a signal and wake its waiters; returns how many were woken (C5: never lost)."""
    waiters = await connection.store.deliver_signal(signal_id, data, delivery_id=delivery_id)
    if waiters:
        await connection.stream.publish([w.message for w in waiters])
    return len(waiters)


async def fail_workflow(engine: Engine, workflow_id: str, error: dict[str, JSONValue], *, by: str | None = None) -> bool:
    """Mark a running workflow failed with ``error`` and announce it; True if it was running.

    ``by`` names the delivery whose give-up failed it (kept as ``failed_by``), so that delivery,
    redelivered after a crash, can tell its own failure from another's.
    """
    extra: dict[str, JSONValue] = {"failed_by": by} if by is not None else {}
    return await _end(engine, workflow_id, rec.FAILED, error, step="failed", extra=extra)


async def interrupt_workflow(engine: Engine, workflow_id: str, *, missing_ok: bool = False) -> bool:
    """Stop a running workflow wherever it is (sleeping, waiting, mid-activity); True if it ran."""
    error = rec.describe_exception(InterruptedError(f"workflow {workflow_id!r} was interrupted"))
    error["type"] = "hotmesh.errors.InterruptedError"
    exists = await engine.connection.store.get_job(rec.job_id(workflow_id), ["status"])
    if exists is None:
        if missing_ok:
            return False
        raise WorkflowNotFoundError(f"no workflow {workflow_id!r} (it never ran, or it expired)")
    return await _end(engine, workflow_id, rec.INTERRUPTED, error, step="interrupt")


async def _end(
    engine: Engine, workflow_id: str, status: str, error: dict[str, JSONValue], *, step: str,
    extra: Mapping[str, JSONValue] | None = None,
) -> bool:  # fmt: skip
    store = engine.connection.store
    job_key = rec.job_id(workflow_id)
    job = await store.get_job(job_key)
    if job is None or job.get("status") != rec.RUNNING:
        return False
    final_step = f"{step}:{job.get('run', 1)}"
    fields: dict[str, JSONValue] = {"status": status, "error": error, "finished_at": time.time(), "final_step": final_step}
    fields.update(extra or {})
    result = await engine.transition(
        Transition(
            job_key,
            final_step,
            set=fields,
            require={"status": rec.RUNNING},
            messages=tuple(_parent_messages(job, fields)),
        )
    )
    if result.status is not TransitionStatus.APPLIED:
        return False
    run = job.get("run", 1)
    for key, record in job.items():  # release what it was waiting on
        if not (key.startswith("d:") and isinstance(record, dict)) or f"h:{key[2:]}" in job:
            continue
        if record.get("type") == "sleep":
            await store.cancel_timer(f"{job_key}:{run}:s{key[2:]}")
        elif record.get("type") == "signal":
            cmd = record.get("cmd")
            if isinstance(cmd, dict):
                await store.remove_waiter(str(cmd.get("signal_id")), job_id=job_key, step=f"{run}:{key[2:]}")
    await engine.connection.sub.publish(rec.result_topic(workflow_id), _announcement(fields))
    return True


RECORD_PREFIX = "r."
"""Job fields holding a MeshData record's data (the search document indexes them)."""


async def record_operation(engine: Engine, workflow_id: str, step: str, cmd: Mapping[str, JSONValue]) -> JSONValue:
    """Apply one record operation (set, get, incr, delete) to the job, then to its index.

    ``step`` makes the store write idempotent, so a redelivered operation does not apply twice.
    Raises WorkflowNotFoundError when the record's job does not exist.
    """
    store, search = engine.connection.store, engine.connection.search
    job_key = rec.job_id(workflow_id)
    index, op = str(cmd.get("index")), cmd.get("op")
    fields = cmd.get("fields")
    missing = WorkflowNotFoundError(f"no record {workflow_id!r} in {index!r} (it never existed, or it expired)")
    if op == "get":
        names = [str(n) for n in fields] if isinstance(fields, list) else None
        job = await store.get_job(job_key, [RECORD_PREFIX + n for n in names] if names is not None else None)
        if job is None:
            raise missing
        return {k[len(RECORD_PREFIX) :]: v for k, v in job.items() if k.startswith(RECORD_PREFIX)}
    if op == "set" and isinstance(fields, dict):
        result = await engine.transition(
            Transition(job_key, step, set={RECORD_PREFIX + k: v for k, v in fields.items()})
        )
        if result.status is TransitionStatus.REJECTED:
            raise missing
        await search.upsert(index, workflow_id, fields)
        return None
    if op == "delete" and isinstance(fields, list):
        names = [str(f) for f in fields]
        result = await engine.transition(Transition(job_key, step, delete=tuple(RECORD_PREFIX + n for n in names)))
        if result.status is TransitionStatus.REJECTED:
            raise missing
        await search.delete_fields(index, workflow_id, names)
        return None
    if op == "incr":
        name, amount = str(cmd.get("field")), cmd.get("amount", 1)
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise ValidationError(f"incr amount must be a number, got {amount!r}")
        result = await engine.transition(
            Transition(job_key, step, increment={RECORD_PREFIX + name: amount}, read=(RECORD_PREFIX + name,))
        )
        if result.status is TransitionStatus.REJECTED:
            raise missing
        value = result.fields.get(RECORD_PREFIX + name, 0)
        await search.upsert(index, workflow_id, {name: value})
        return value
    raise ValidationError(f"unknown record operation {op!r}")
