"""Engine: one per connection per process; owns its routers, the scheduler and the quorum."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import uuid
from datetime import timedelta

from hotmesh.connection import Connection
from hotmesh.engine.crashpoints import crashpoint
from hotmesh.engine.quorum import Quorum
from hotmesh.engine.router import CURRENT_DELIVERY, DeadLetterHook, Handler, RetryPolicy, Router
from hotmesh.engine.scheduler import Scheduler
from hotmesh.providers import (
    JSONValue,
    Message,
    NewJob,
    Store,
    Sub,
    Transition,
    TransitionResult,
    TransitionStatus,
)

log = logging.getLogger("hotmesh.engine")


def new_traceparent() -> str:
    """A W3C ``traceparent`` header: trace context travels in every message (OpenTelemetry later)."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def headers_for(parent: str | None = None) -> dict[str, str]:
    """Headers for a new message, continuing ``parent``'s trace when given."""
    if parent:
        trace_id = parent.split("-")[1] if parent.count("-") == 3 else os.urandom(16).hex()
        return {"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"}
    return {"traceparent": new_traceparent()}


class Engine:
    """Runs routers for the streams this process serves, plus the shared timer scheduler."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.engine_id = uuid.uuid4().hex[:12]
        self.routers: dict[str, Router] = {}
        self.scheduler = Scheduler(
            connection.store,
            connection.stream,
            connection.sub,
            lease=timedelta(seconds=connection.config.timer_lease),
        )
        self.quorum = Quorum(connection.sub, self.engine_id, self._describe)
        self._started = False
        self._lock = asyncio.Lock()

    def _describe(self) -> dict[str, JSONValue]:
        streams: list[JSONValue] = list(sorted(self.routers))
        return {"streams": streams}

    async def start(self) -> None:
        """Start the scheduler and quorum (idempotent)."""
        async with self._lock:
            if not self._started:
                await self.scheduler.start()
                await self.quorum.start()
                self._started = True

    async def serve(
        self,
        stream_name: str,
        handler: Handler,
        *,
        group: str,
        concurrency: int = 10,
        retry: RetryPolicy | None = None,
        visibility_timeout: timedelta = timedelta(seconds=60),
        on_dead_letter: DeadLetterHook | None = None,
    ) -> Router:
        """Consume ``stream_name`` with ``handler`` (one router per stream per engine)."""
        await self.start()
        router = self.routers.get(stream_name)
        if router is None:
            router = Router(
                self.connection.stream,
                store=self.connection.store,
                stream_name=stream_name,
                group=group,
                handler=handler,
                concurrency=concurrency,
                visibility_timeout=visibility_timeout,
                retry=retry,
                on_dead_letter=on_dead_letter,
            )
            self.routers[stream_name] = router
            router.start()
        return router

    async def create(self, job: NewJob) -> bool:
        """Create a job and publish its messages after commit unless the store did atomically."""
        result = await self.connection.store.create_job(job, stream=self.connection.stream)
        if result.created and job.messages and not result.published:
            await self.connection.stream.publish(list(job.messages))
        return result.created

    async def transition(self, transition: Transition, *, final: bool = False) -> TransitionResult:
        """Apply a transition; (re)publish its recorded follow-ups unless the store already did.

        Engine rule 2: re-applying is a no-op that re-emits the same follow-ups, so a crash
        between commit and publish is healed by redelivery.

        ``final=True`` says this transition is the last effect of the delivery being handled
        (nothing the handler does after it needs redelivery to be redone): where the store can
        publish to the stream it also acks that delivery atomically (Store rule 6b), and the
        router skips its own ack. Elsewhere it changes nothing.
        """
        store, stream, sub = self.connection.store, self.connection.stream, self.connection.sub
        slot = CURRENT_DELIVERY.get() if final else None
        if slot is not None and not slot.acked and store.can_publish_to(stream):
            transition = dataclasses.replace(transition, ack=slot.delivery)
        notes = transition.notify
        if notes and not _can_notify(store, sub):
            transition = dataclasses.replace(transition, notify=())
        result = await store.apply_transition(transition, stream=stream)
        if slot is not None and result.acked:
            slot.acked = True
        crashpoint("engine.after_commit")
        if result.messages and not result.published:
            await self.connection.stream.publish(list(result.messages))
        if notes and result.status is TransitionStatus.APPLIED and not result.notified:
            for topic, payload in notes:
                await sub.publish(topic, payload)
        return result

    async def publish(self, messages: list[Message]) -> None:
        """Publish messages on the stream."""
        await self.connection.stream.publish(messages)

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful stop: routers finish or release in-flight work; scheduler and quorum stop."""
        routers, self.routers = list(self.routers.values()), {}
        await asyncio.gather(*(r.stop(grace) for r in routers))
        if self._started:
            await self.scheduler.stop()
            await self.quorum.stop()
            self._started = False


def _can_notify(store: Store, sub: Sub) -> bool:
    """Store rule 6c, tolerating stores written before ``can_notify`` existed."""
    can_notify = getattr(store, "can_notify", None)
    return bool(can_notify(sub)) if callable(can_notify) else False


async def wait_for_shutdown_signal() -> None:
    """Return when SIGTERM or SIGINT arrives (used by long-running worker processes)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
