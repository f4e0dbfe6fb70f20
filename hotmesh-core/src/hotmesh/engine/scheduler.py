"""Scheduler: fires each due timer once across all engines sharing a store.

Store rule 10 gives each due timer to one claimer at a time; the scheduler publishes the timer's
message and then completes the timer with its claim token. A crash in between lets the lease
expire and another engine fires it again: delivery is at least once, and the handlers are
idempotent per (job, step), so the effect happens once. The scheduler sleeps until the next due
time (Store rule 12) or until another process announces an earlier timer on the sub channel: no
fast polling.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from hotmesh.engine.crashpoints import crashpoint
from hotmesh.providers import Store, Stream, Sub, Timer

log = logging.getLogger("hotmesh.engine")

TIMER_TOPIC = "hm.timers"
MAX_SLEEP = 5.0
"""Upper bound on one sleep: covers a missed wake-up (sub is best-effort) and lease expiry."""


class Scheduler:
    """Claims due timers and publishes their messages."""

    def __init__(
        self, store: Store, stream: Stream, sub: Sub, *, lease: timedelta = timedelta(seconds=30), batch: int = 100
    ) -> None:
        self.store = store
        self.stream = stream
        self.sub = sub
        self.lease = lease
        self.batch = batch
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe to timer announcements and start the firing loop."""
        self._stopping = False
        subscription = await self.sub.subscribe(TIMER_TOPIC)
        self._tasks = [
            asyncio.create_task(self._listen(subscription), name="scheduler-listen"),
            asyncio.create_task(self._run(), name="scheduler"),
        ]

    async def _listen(self, subscription: object) -> None:
        from hotmesh.providers import Subscription

        assert isinstance(subscription, Subscription)
        try:
            async for _ in subscription:
                self._wake.set()
        finally:
            await subscription.aclose()

    async def schedule(self, timer: Timer) -> bool:
        """Add a timer and wake every scheduler so an earlier due time is not slept through."""
        added = await self.store.add_timer(timer)
        if added:
            await self.sub.publish(TIMER_TOPIC, {"due": timer.due.isoformat()})
        return added

    async def fire_due(self) -> int:
        """Claim and fire due timers once; return how many fired."""
        fired = 0
        claimed = await self.store.claim_due_timers(limit=self.batch, lease=self.lease)
        if claimed:  # one publish for the batch (at least once: completed only after it)
            await self.stream.publish([claim.timer.message for claim in claimed])
            crashpoint("scheduler.after_publish")
        # Completions are independent: issue them together (pipelined over the pool where the
        # backend has one); a failed one only means the timer fires again after its lease.
        await asyncio.gather(*(self.store.complete_timer(claim) for claim in claimed))
        fired += len(claimed)
        return fired

    async def _run(self) -> None:
        while not self._stopping:
            # Clear before looking: a timer scheduled while we claim or read the next due time
            # sets the flag again, so the sleep below is cut short instead of missing it.
            self._wake.clear()
            try:
                fired = await self.fire_due()
                if fired >= self.batch:
                    continue
                due = await self.store.next_timer_due()
                wait = MAX_SLEEP
                if due is not None:
                    now = await self.store.now()
                    wait = min(MAX_SLEEP, max((due - now).total_seconds(), 0.0))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer scheduling failed; retrying")
                wait = 1.0
            if wait > 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    async def stop(self) -> None:
        """Stop firing (claimed but unfired timers return when their lease ends).

        A flag as well as cancellation: a driver that swallows a cancel (seen with nats-py)
        must not keep the loop alive.
        """
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
