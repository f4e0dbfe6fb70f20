"""Router: consume one stream through a consumer group with bounded concurrency.

Engine rule 3 (ack after effects): a delivery is acked only after its handler returned, i.e.
after the handler's transition committed and its follow-ups were published. A handler whose last
effect is one transition may instead have the store ack inside that transition
(``Engine.transition(..., final=True)``, Store rule 6b): one round trip less per task. A handler that raises
is released with exponential backoff and dead-lettered (keeping the error) after
``retry.max_attempts`` deliveries. A delivery that comes back more often than that never ended
in an outcome or a failure: every worker that took it died or ran past its visibility timeout.
It runs once more on probation (:mod:`hotmesh.engine.probation`); if that kills its worker too,
it is dead-lettered with a WorkerLostError through the same hook, so its workflow or call fails
instead of hanging or killing worker after worker (catalogue M-3, promise C6). On shutdown,
in-flight work gets a grace period to finish; what is still running is cancelled and released
at once so another engine takes it (never lost).

Leases: where the stream declares STREAM_EXTEND (Stream rule 11), one heartbeat per router
renews, every third of the visibility timeout, the lease of each delivery it has been working on
for at least that long, in one call. A task of any length then keeps its delivery while its process
lives, and the visibility timeout only bounds how long a *dead* worker's task waits for rescue.
Short tasks never cost a renewal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta

from hotmesh.engine.crashpoints import crashpoint
from hotmesh.engine.probation import Probation, ProbationUnavailable
from hotmesh.providers import Capability, Delivery, ExtendingStream, ReadRequest, Store, Stream

log = logging.getLogger("hotmesh.engine")

TRIM_EVERY = 500
"""Acks between two trims of a stream by one router."""
RETAIN = 1000
"""Fully acked messages a trim leaves in the stream (recent history for inspection)."""

Handler = Callable[[Delivery], Awaitable[None]]


@dataclass
class AckSlot:
    """The delivery a handler is working on, and whether a transition already acked it."""

    delivery: Delivery
    acked: bool = False
    started: float = 0.0
    """``time.monotonic()`` when the router took the delivery (its lease began then)."""


CURRENT_DELIVERY: ContextVar[AckSlot | None] = ContextVar("hotmesh_current_delivery", default=None)
"""Set by the router around each handler call (each handler runs in its own task)."""
DeadLetterHook = Callable[[Delivery, BaseException], Awaitable[bool | None]]
"""Called before a delivery is dead-lettered, to record the failure where its caller looks.

It returns True when the delivery turned out to be *superseded*: a second copy of a message
(published twice, at least once, by a store that cannot publish atomically) whose work another
copy already settled. The router then acks it instead of dead-lettering it, so one poison task
leaves one dead letter however many copies of it were in flight. Anything else dead-letters.
"""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: attempt n waits ``initial * coefficient**(n-1)``, capped.

    ``non_retryable_error_types`` names exception types (``"ValueError"`` or the qualified
    ``"mypkg.errors.Fatal"``) that end the retries at once; MeshFlow activities honour it.
    """

    max_attempts: int = 3
    initial_interval: timedelta = timedelta(milliseconds=200)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta = timedelta(seconds=30)
    non_retryable_error_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from hotmesh.errors import ValidationError

        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValidationError(f"max_attempts must be a positive integer, got {self.max_attempts!r}")
        if self.backoff_coefficient < 1:
            raise ValidationError(f"backoff_coefficient must be at least 1, got {self.backoff_coefficient!r}")
        if self.initial_interval < timedelta(0) or self.maximum_interval < timedelta(0):
            raise ValidationError("initial_interval and maximum_interval must not be negative")

    def delay(self, attempt: int) -> timedelta:
        """Backoff before the attempt after ``attempt`` (1-based)."""
        seconds = self.initial_interval.total_seconds() * self.backoff_coefficient ** max(attempt - 1, 0)
        return min(timedelta(seconds=seconds), self.maximum_interval)


class Router:
    """One consumer of one (stream, group) running up to ``concurrency`` handlers at once."""

    def __init__(
        self,
        stream: Stream,
        *,
        store: Store,
        stream_name: str,
        group: str,
        handler: Handler,
        concurrency: int = 10,
        visibility_timeout: timedelta = timedelta(seconds=60),
        retry: RetryPolicy | None = None,
        on_dead_letter: DeadLetterHook | None = None,
        block: timedelta = timedelta(seconds=5),
    ) -> None:
        self.stream = stream
        self.stream_name = stream_name
        self.group = group
        self.consumer = f"c-{uuid.uuid4().hex[:12]}"
        self.handler = handler
        self.concurrency = concurrency
        self.visibility_timeout = visibility_timeout
        self.retry = retry or RetryPolicy()
        self.on_dead_letter = on_dead_letter
        self.block = block
        self._inflight: dict[asyncio.Task[None], AckSlot] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._acked = 0
        self._trimming: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._probation = Probation(
            store, stream_name=stream_name, group=group, visibility_timeout=visibility_timeout
        )

    def start(self) -> None:
        """Start consuming in the background."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name=f"router:{self.stream_name}")
        if self._heartbeat is None and isinstance(self.stream, ExtendingStream) and (
            Capability.STREAM_EXTEND in self.stream.capabilities
        ):
            self._heartbeat = asyncio.create_task(self._renew_leases(self.stream), name=f"leases:{self.stream_name}")

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            free = self.concurrency - len(self._inflight)
            if free <= 0:  # bounded concurrency: read more only when a slot frees up
                await asyncio.wait(set(self._inflight), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                deliveries = await self.stream.read(
                    ReadRequest(
                        stream=self.stream_name,
                        group=self.group,
                        consumer=self.consumer,
                        count=free,
                        block=self.block,
                        visibility_timeout=self.visibility_timeout,
                        # A backstop only (it dead-letters without telling anyone): the router
                        # gives up on lost deliveries itself, after a probation, and a bystander
                        # of a poison task may come back a few more times before its own turn.
                        max_deliveries=2 * self.retry.max_attempts + 2,
                    )
                )
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception:  # backend trouble: keep retrying with backoff instead of dying
                log.exception("read from %s failed; retrying in %.1fs", self.stream_name, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            taken = time.monotonic()
            for delivery in deliveries:
                slot = AckSlot(delivery, started=taken)
                task = asyncio.create_task(self._handle(slot))
                self._inflight[task] = slot
                task.add_done_callback(self._forget)

    async def _renew_leases(self, stream: ExtendingStream) -> None:
        """Renew the leases of deliveries in flight for a third of the visibility timeout or more.

        A delivery taken just after a beat is renewed at the second beat after it at the latest,
        i.e. within two thirds of its lease, leaving a third for a slow round trip. One call per
        beat for all of them; none when every task in flight is younger than a beat.
        """
        period = self.visibility_timeout.total_seconds() / 3
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            due = [s.delivery for s in self._inflight.values() if not s.acked and now - s.started >= period]
            if not due:
                continue
            try:
                renewed = await stream.extend(due, visibility_timeout=self.visibility_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the visibility timeout may redeliver them: at least once
                log.warning("could not renew %d leases on %s: %s", len(due), self.stream_name, exc)
                continue
            if renewed < len(due):  # finished meanwhile, or redelivered after a stall: at least once
                log.info("renewed %d of %d leases on %s", renewed, len(due), self.stream_name)

    def _trial(self, delivery: Delivery) -> contextlib.AbstractAsyncContextManager[None]:
        """Probation for a delivery lost more often than the retry policy allows, else nothing."""
        if delivery.delivery_count > self.retry.max_attempts:
            return self._probation.trial(delivery)
        return contextlib.nullcontext()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)

    async def _handle(self, slot: AckSlot) -> None:
        delivery = slot.delivery
        token = CURRENT_DELIVERY.set(slot)
        try:
            async with self._trial(delivery):
                await self.handler(delivery)
                if not slot.acked:  # else the handler's final transition acked it (Store rule 6b)
                    crashpoint("router.before_ack")
                    await self.stream.ack(self.stream_name, self.group, [delivery.id])
            self._acked += 1
            if self._acked % TRIM_EVERY == 0 and (self._trimming is None or self._trimming.done()):
                self._trimming = asyncio.create_task(self._trim(), name=f"trim:{self.stream_name}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not slot.acked:
                CURRENT_DELIVERY.set(None)  # dead-letter hooks must not fold the ack away
                await self._failed(delivery, exc)
            else:  # its work is committed and acked; what failed after that was best-effort
                log.warning("after %s/%s was done and acked: %s", self.stream_name, delivery.id, exc)
        finally:
            CURRENT_DELIVERY.reset(token)

    async def _trim(self) -> None:
        """Drop fully acked messages beyond the retained tail (Stream rule 10 never drops unacked
        ones), so a stream's storage stays bounded however long the system runs."""
        try:
            await self.stream.trim(self.stream_name, max_length=RETAIN)
        except Exception:  # housekeeping: the next round tries again
            log.warning("could not trim %s", self.stream_name, exc_info=True)

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        attempt = delivery.delivery_count
        if isinstance(exc, ProbationUnavailable):  # the store is away, not the task at fault:
            # neither a failure nor a release (a quick redelivery would only count up); the
            # visibility timeout brings it back once the store may answer again.
            log.warning("%s; %s/%s comes back after its visibility timeout", exc, self.stream_name, delivery.id)
            return
        try:
            if attempt >= self.retry.max_attempts:
                text = "".join(traceback.format_exception(exc))
                log.error("giving up on %s/%s after %d attempts: %s", self.stream_name, delivery.id, attempt, exc)
                if self.on_dead_letter is not None and await self.on_dead_letter(delivery, exc) is True:
                    log.warning(
                        "%s/%s was a copy of a task another delivery already settled: acked, not dead-lettered",
                        self.stream_name, delivery.id,
                    )  # fmt: skip
                    await self.stream.ack(self.stream_name, self.group, [delivery.id])
                    return
                await self.stream.dead_letter(delivery, text)
                return
            delay = self.retry.delay(attempt)
            if Capability.STREAM_DELAY not in self.stream.capabilities:
                delay = timedelta(0)
            log.warning("attempt %d of %s/%s failed (%s); retrying in %s", attempt, self.stream_name, delivery.id, exc, delay)
            await self.stream.release(self.stream_name, self.group, [delivery.id], delay=delay)
        except Exception:  # the visibility timeout will bring it back
            log.exception("could not release or dead-letter %s/%s", self.stream_name, delivery.id)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading, let in-flight work finish for ``grace`` seconds, release the rest."""
        self._stopping.set()
        if self._trimming is not None:
            self._trimming.cancel()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        pending = list(self._inflight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            unfinished = [self._inflight[t].delivery for t in still if t in self._inflight]
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
            if unfinished:
                try:  # give them back now rather than after the visibility timeout
                    await self.stream.release(self.stream_name, self.group, [d.id for d in unfinished])
                except Exception:
                    log.exception("could not release in-flight work on shutdown; it returns after the timeout")
        if self._heartbeat is not None:  # after the grace period: work finishing in it kept its lease
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
