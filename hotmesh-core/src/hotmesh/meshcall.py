"""MeshCall: connect a function to the mesh and call it from any process.

A call is a job plus one message. The caller creates the job ``mc:<topic>:<id>`` (which also
de-duplicates concurrent calls with the same id) together with a message on stream
``mc.<topic>``; any process that ``connect``-ed the topic consumes it, runs the callback and writes
the outcome with one idempotent transition (step ``outcome``), then notifies the caller on the sub
channel. Redelivery after a crash re-runs the callback (at least once) but the outcome is written
once. Round trips per call: create (1), transition (1; it also acks where the store shares the
stream's backend, Store rule 6b, else ack (1) after), notify (1), plus the caller's
subscribe (Sub rule 1 makes the notification sufficient; the job is read only when its id
already existed or after a quiet wait).

Cron jobs are jobs ``cron:<topic>:<id>`` whose cycles are timers; each cycle is one idempotent
transition ``cycle:<generation>:<n>``, so a cycle counts once even when its timer fires twice.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import logging
import re
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio

from hotmesh._payload import json_args
from hotmesh._runtime import ConnectionLike
from hotmesh._runtime import runtime as _registry
from hotmesh.engine.durations import Duration, Interval, parse_duration
from hotmesh.engine.engine import Engine, headers_for, wait_for_shutdown_signal
from hotmesh.engine.router import RetryPolicy
from hotmesh.errors import (
    PayloadTooLargeError,
    RemoteError,
    SerializationError,
    TimeoutError,
    ValidationError,
)
from hotmesh.providers import (
    Delivery,
    JSONValue,
    Message,
    NewJob,
    Timer,
    Transition,
    TransitionStatus,
    check_json,
)

__all__ = ["MeshCall"]

log = logging.getLogger("hotmesh.meshcall")

Callback = Callable[..., Awaitable[Any]] | Callable[..., Any]

_TOPIC = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
RESULT_GRACE = timedelta(seconds=5)
"""How long a finished call's job stays readable when no ttl caches it (for late waiters)."""
DEFAULT_TIMEOUT = 30.0
GROUP = "mc"
TIMEOUT_TYPE = "hotmesh.errors.TimeoutError"
HEAL_AFTER = timedelta(seconds=60)
"""A cron whose first cycle has not run this long after it was due lost its first timer."""


def _check_topic(topic: object) -> str:
    if not isinstance(topic, str) or not _TOPIC.match(topic):
        raise ValidationError(
            f"invalid topic {topic!r}: use 1-200 letters, digits, '_', '.', '-' (not starting with '.' or '-')"
        )
    return topic


def _check_id(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 500:
        raise ValidationError(f"invalid id {value!r}: a non-empty string of at most 500 characters")
    return value


def _remote_error(outcome: dict[str, JSONValue]) -> RemoteError:
    error = outcome.get("error")
    if not isinstance(error, dict):
        return RemoteError("RemoteError", str(error))
    return RemoteError(str(error.get("type")), str(error.get("message")), str(error.get("traceback", "")))


def _describe_exception(exc: BaseException) -> dict[str, JSONValue]:
    kind = type(exc)
    return {
        "type": f"{kind.__module__}.{kind.__qualname__}" if kind.__module__ != "builtins" else kind.__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }




class MeshCall:
    """Connect functions to the mesh, call them from anywhere, cache and schedule them.

    Every method is a coroutine taking keyword arguments; ``connection`` is a
    :class:`~hotmesh.connection.Connection`, a URL, a :class:`~hotmesh.config.HotMeshConfig` or
    None for the configured default (an embedded SQLite file when nothing is set).
    """

    @staticmethod
    async def connect(
        topic: str,
        callback: Callback,
        *,
        connection: ConnectionLike = None,
        concurrency: int = 10,
        retry: RetryPolicy | None = None,
        visibility_timeout: Duration = 60.0,
    ) -> None:
        """Serve calls to ``topic`` with ``callback`` in this process until :meth:`shutdown`.

        ``visibility_timeout`` is how long a call taken by a process that then dies stays
        invisible before another process takes it over. While this process lives it renews the
        lease of a call that runs longer (where the stream declares ``stream.extend``: every
        backend shipped here); elsewhere keep it above the callback's run time.

        ``retry`` applies to exceptions from the callback: by default (one attempt) an exception
        goes straight back to the caller as a :class:`~hotmesh.errors.RemoteError`.
        """
        _check_topic(topic)
        if not callable(callback):
            raise ValidationError(f"callback for {topic!r} is not callable: {callback!r}")
        if concurrency < 1:
            raise ValidationError(f"concurrency must be at least 1, got {concurrency}")
        lease = parse_duration(visibility_timeout, what="visibility_timeout")
        conn = await _registry.connection(connection)
        engine = _registry.engine(conn)
        policy = retry or RetryPolicy(max_attempts=1)
        _registry.callbacks[(id(engine), topic)] = (callback, policy)

        async def handle(delivery: Delivery) -> None:
            await _handle(engine, topic, delivery)

        async def dead(delivery: Delivery, exc: BaseException) -> None:
            await _write_outcome(engine, delivery, {"status": "error", "error": _describe_exception(exc)})

        await engine.serve(
            f"mc.{topic}",
            handle,
            group=GROUP,
            concurrency=concurrency,
            retry=RetryPolicy(
                max_attempts=max(policy.max_attempts, 3),
                initial_interval=policy.initial_interval,
                backoff_coefficient=policy.backoff_coefficient,
                maximum_interval=policy.maximum_interval,
            ),
            on_dead_letter=dead,
            visibility_timeout=lease,
        )

    @staticmethod
    async def exec(
        topic: str,
        args: Sequence[Any] = (),
        *,
        connection: ConnectionLike = None,
        id: str | None = None,
        ttl: Duration | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
    ) -> JSONValue:
        """Call the function connected to ``topic`` with ``args`` and return its JSON result.

        With ``id`` and ``ttl`` the result is cached: later calls within ``ttl`` return it
        without calling the function (until :meth:`flush`). Concurrent calls with the same ``id``
        share one execution.

        Raises:
            SerializationError: ``args`` is not JSON-serializable (names the path), before any write.
            ValidationError: a bad topic, id, ttl or timeout.
            RemoteError: the callback raised; carries the remote type, message and traceback.
            TimeoutError: no result within ``timeout`` (also when no function is connected).
        """
        _check_topic(topic)
        call_args = json_args(args)
        call_id = _check_id(id) if id is not None else None
        cache_ttl = parse_duration(ttl, what="ttl") if ttl is not None else None
        if cache_ttl is not None and call_id is None:
            raise ValidationError("ttl caches a result under an id: pass id= as well")
        wait = parse_duration(timeout, what="timeout").total_seconds()
        conn = await _registry.connection(connection)
        conn.check_payload(call_args, "args")
        engine = _registry.engine(conn)
        store = conn.store
        cache_key = f"mc:{topic}:{call_id}" if call_id is not None else None
        if cache_key is not None and cache_ttl is not None:
            hit, value = await store.get_cached(cache_key)
            if hit:
                return value
        job_id = f"mc:{topic}:{call_id or uuid.uuid4().hex}"
        subscription = await conn.sub.subscribe(f"hm.result.{job_id}")
        try:
            deadline = time.time() + wait
            message = Message(
                stream=f"mc.{topic}",
                body={
                    "kind": "call",
                    "job_id": job_id,
                    "args": call_args,
                    "deadline": deadline,
                    "cache_key": cache_key,
                    "ttl": cache_ttl.total_seconds() if cache_ttl is not None else None,
                },
                headers=headers_for(),
            )
            created = await engine.create(
                NewJob(
                    job_id,
                    {"status": "pending", "topic": topic},
                    messages=(message,),
                    expire=timedelta(seconds=wait) + RESULT_GRACE,
                )
            )
            # A job we just created cannot be finished before our subscription (opened first)
            # hears about it: read it only when it already existed, or after a quiet wait.
            check = not created
            while True:
                if check:
                    fields = await store.get_job(job_id, ["status", "result", "error"])
                    if fields is not None and fields.get("status") in ("done", "error"):
                        return _outcome(fields)
                check = True
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f"no result from {topic!r} within {wait:g}s (job {job_id})")
                # Woken by the worker's notification; the periodic re-read covers a lost one.
                notified = await subscription.get(timeout=min(left, 5.0))
                if notified is not None:
                    return _outcome(dict(notified.payload))
        finally:
            await subscription.aclose()

    @staticmethod
    async def flush(topic: str, *, id: str, connection: ConnectionLike = None) -> bool:
        """Drop the cached result of ``exec(topic, id=id)``; True if one was cached."""
        _check_topic(topic)
        key = f"mc:{topic}:{_check_id(id)}"
        conn = await _registry.connection(connection)
        existed = await conn.store.delete_cached(key)
        await conn.store.delete_job(key)
        return existed

    @staticmethod
    async def cron(
        topic: str,
        callback: Callback,
        *,
        id: str,
        interval: Duration,
        args: Sequence[Any] = (),
        delay: Duration | None = None,
        max_cycles: int | None = None,
        connection: ConnectionLike = None,
    ) -> bool:
        """Run ``callback(*args)`` every ``interval`` until :meth:`interrupt`; idempotent by ``id``.

        ``interval`` is a duration ("1 day", seconds, timedelta) or a 5-field cron expression.
        Returns True if this call started the cron, False if one with that id already runs (in
        any process). This process also serves the topic, so the callback runs here or in any
        other process that connected it.
        """
        _check_topic(topic)
        cron_id = _check_id(id)
        schedule = Interval(interval)
        first_delay = parse_duration(delay, what="delay", allow_zero=True) if delay is not None else None
        if max_cycles is not None and (isinstance(max_cycles, bool) or not isinstance(max_cycles, int) or max_cycles < 1):
            raise ValidationError(f"max_cycles must be a positive integer, got {max_cycles!r}")
        cron_args = json_args(args)
        await MeshCall.connect(topic, callback, connection=connection)
        conn = await _registry.connection(connection)
        engine = _registry.engine(conn)
        job_id = f"cron:{topic}:{cron_id}"
        generation = uuid.uuid4().hex[:12]
        now = await conn.store.now()
        if first_delay is not None:
            due = now + first_delay
        else:
            due = now if schedule.period is not None else schedule.next_after(now)
        first = _cron_timer(topic, job_id, generation, 1, due)
        created = await engine.create(
            NewJob(
                job_id,
                {
                    "status": "running",
                    "generation": generation,
                    "interval": schedule.text,
                    "args": cron_args,
                    "max_cycles": max_cycles,
                    "cycles": 0,
                    "first_due": due.isoformat(),
                    "next_timer": first.timer_id,
                },
            )
        )
        if created:
            await engine.scheduler.schedule(first)
        else:
            await _heal_first_timer(engine, topic, job_id)
        return created

    @staticmethod
    async def interrupt(topic: str, *, id: str, connection: ConnectionLike = None) -> bool:
        """Stop the cron ``id`` of ``topic``; True if it was running."""
        _check_topic(topic)
        job_id = f"cron:{topic}:{_check_id(id)}"
        conn = await _registry.connection(connection)
        fields = await conn.store.get_job(job_id, ["next_timer"])
        if fields is None:
            return False
        await conn.store.delete_job(job_id)
        next_timer = fields.get("next_timer")
        if isinstance(next_timer, str):
            await conn.store.cancel_timer(next_timer)
        return True

    @staticmethod
    async def serve(grace: float = 5.0) -> None:
        """Block until SIGTERM or SIGINT, then :meth:`shutdown` gracefully (for worker processes)."""
        await wait_for_shutdown_signal()
        await MeshCall.shutdown(grace)

    @staticmethod
    async def shutdown(grace: float = 5.0) -> None:
        """Stop serving (in-flight calls finish or are released) and close the connections."""
        await _registry.shutdown(grace)


def _cron_timer(topic: str, job_id: str, generation: str, cycle: int, due: datetime) -> Timer:
    return Timer(
        timer_id=f"{job_id}:{generation}:{cycle}",
        due=due,
        message=Message(
            stream=f"mc.{topic}",
            body={"kind": "cron", "job_id": job_id, "generation": generation, "cycle": cycle},
            headers=headers_for(),
        ),
    )


async def _heal_first_timer(engine: Engine, topic: str, job_id: str) -> None:
    """Re-add the first timer of a cron whose starter died between creating it and its timer.

    Adding a timer is idempotent by id, so this is harmless when the timer exists; if its cycle
    is running right now the callback may run twice (cron callbacks run at least once).
    """
    job = await engine.connection.store.get_job(job_id, ["cycles", "generation", "first_due", "status"])
    if job is None or job.get("cycles") != 0 or job.get("status") != "running":
        return
    first_due = job.get("first_due")
    if not isinstance(first_due, str):
        return
    due = datetime.fromisoformat(first_due)
    if await engine.connection.store.now() - due < HEAL_AFTER:
        return  # the first cycle may simply not have finished yet
    await engine.scheduler.schedule(_cron_timer(topic, job_id, str(job.get("generation")), 1, due))


def _outcome(fields: dict[str, JSONValue]) -> JSONValue:
    if fields.get("status") == "error":
        error = _remote_error(fields)
        if error.remote_type == TIMEOUT_TYPE:  # the worker gave up at the caller's deadline
            raise TimeoutError(error.remote_message)
        raise error
    return fields.get("result")


async def _invoke(callback: Callback, args: list[Any]) -> Any:
    if inspect.iscoroutinefunction(callback):
        return await callback(*args)
    result = await anyio.to_thread.run_sync(lambda: callback(*args))
    if inspect.isawaitable(result):
        return await result
    return result


async def _write_outcome(engine: Engine, delivery: Delivery, outcome: dict[str, JSONValue]) -> None:
    body = delivery.message.body
    job_id = str(body.get("job_id"))
    ttl = body.get("ttl")
    cache_ttl = timedelta(seconds=float(ttl)) if isinstance(ttl, (int, float)) else None
    cache_key = body.get("cache_key")
    caches = isinstance(cache_key, str) and cache_ttl is not None
    # Without a cache entry to write, the outcome is the call's last durable effect: it may ack
    # the delivery and announce itself (the notification is best-effort: callers re-read after
    # a quiet wait). With one, the caller is told only after the cache entry is written, so a
    # ``flush`` issued once ``exec`` returned always finds (and drops) it: announcing first let
    # a flush run before the entry existed and the entry appear after it. A crash in between
    # is healed by redelivery, which finds the step DUPLICATE and writes the entry again.
    notify = f"hm.result.{job_id}"
    result = await engine.transition(
        Transition(
            job_id,
            "outcome",
            set=outcome,
            require={"status": "pending"},
            expire=cache_ttl or RESULT_GRACE,
            read=("status", "result", "error"),
            notify=() if caches else ((notify, outcome),),
        ),
        final=not caches,
    )
    if result.status is TransitionStatus.REJECTED:  # flushed or expired meanwhile: nothing to tell
        return
    if result.status is TransitionStatus.DUPLICATE:  # an earlier run wrote it: announce that one
        outcome = dict(result.fields)
    if caches and outcome.get("status") == "done" and isinstance(cache_key, str) and cache_ttl is not None:
        await engine.connection.store.set_cached(cache_key, outcome.get("result"), ttl=cache_ttl)
    if caches or result.status is TransitionStatus.DUPLICATE:  # else the transition announced it
        await engine.connection.sub.publish(notify, outcome)


async def _handle(engine: Engine, topic: str, delivery: Delivery) -> None:
    body = delivery.message.body
    if body.get("kind") == "cron":
        await _handle_cron(engine, topic, delivery)
        return
    callback, policy = _registry.callbacks[(id(engine), topic)]
    deadline = body.get("deadline")
    left = float(deadline) - time.time() if isinstance(deadline, (int, float)) else DEFAULT_TIMEOUT
    if delivery.delivery_count > 1:  # redelivered: skip the callback if the outcome is written
        job_id = str(body.get("job_id"))
        fields = await engine.connection.store.get_job(job_id, ["status", "result", "error"])
        if fields is None or fields.get("status") != "pending":
            if fields is not None:  # re-notify waiters that may have missed it
                await engine.connection.sub.publish(f"hm.result.{job_id}", fields)
            return
    if left <= 0:  # the caller gave up: do not run it, free the slot
        await _write_outcome(engine, delivery, _timeout_outcome(topic))
        return
    raw_args = body.get("args")
    args = list(raw_args) if isinstance(raw_args, list) else []
    try:
        result = await asyncio.wait_for(_invoke(callback, args), timeout=left)
    except builtins.TimeoutError:  # asyncio's, not hotmesh.errors.TimeoutError
        await _write_outcome(engine, delivery, _timeout_outcome(topic))
        return
    except Exception as exc:
        if delivery.delivery_count < policy.max_attempts:
            raise  # the router releases it with backoff
        await _write_outcome(engine, delivery, {"status": "error", "error": _describe_exception(exc)})
        return
    try:
        check_json(result, "result")
        engine.connection.check_payload(result, "result")
    except (SerializationError, PayloadTooLargeError) as exc:
        await _write_outcome(engine, delivery, {"status": "error", "error": _describe_exception(exc)})
        return
    await _write_outcome(engine, delivery, {"status": "done", "result": result})


def _timeout_outcome(topic: str) -> dict[str, JSONValue]:
    return {
        "status": "error",
        "error": {"type": TIMEOUT_TYPE, "message": f"{topic!r} did not finish in time", "traceback": ""},
    }


async def _handle_cron(engine: Engine, topic: str, delivery: Delivery) -> None:
    body = delivery.message.body
    store = engine.connection.store
    job_id = str(body.get("job_id"))
    generation = body.get("generation")
    cycle = int(body.get("cycle") or 0)  # type: ignore[arg-type]
    job = await store.get_job(job_id)
    if job is None or job.get("generation") != generation or job.get("status") != "running":
        return  # interrupted or replaced: this cycle does not run
    callback, _ = _registry.callbacks[(id(engine), topic)]
    raw_args = job.get("args")
    try:
        await _invoke(callback, list(raw_args) if isinstance(raw_args, list) else [])
    except Exception:
        log.exception("cron %s cycle %d failed; the cron continues", job_id, cycle)
    interval = Interval(str(job.get("interval")))
    now = await store.now()
    following = _cron_timer(topic, job_id, str(generation), cycle + 1, interval.next_after(now))
    result = await engine.transition(
        Transition(
            job_id,
            f"cycle:{generation}:{cycle}",
            increment={"cycles": 1},
            set={"next_timer": following.timer_id},
            require={"status": "running", "generation": generation},
            read=("cycles", "max_cycles"),
        )
    )
    if result.status is TransitionStatus.REJECTED:
        return
    cycles, limit = result.fields.get("cycles"), result.fields.get("max_cycles")
    if isinstance(limit, int) and isinstance(cycles, (int, float)) and cycles >= limit:
        await store.delete_job(job_id)
        return
    await engine.scheduler.schedule(following)  # idempotent by timer id on a duplicate
