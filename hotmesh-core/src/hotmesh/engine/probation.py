"""Telling a poison task from its bystanders after worker crashes (catalogue M-3, promise C6).

A delivery that comes back more than ``retry.max_attempts`` times never ended in an outcome or
a recorded failure (the router dead-letters a task that fails that often): each time, the worker
holding it died or ran past the visibility timeout. Either it kills its workers (a poison
message), or it was a bystander that shared a process with one: every task in flight in a
worker dies with it, and those tasks come back together, are read together and die together
again. Counting deliveries cannot tell the two apart.

Probation can. Such a delivery runs once more, alone among this process's suspects, after a
marker naming it is written to the store. If its worker dies again, the next delivery finds the
marker: it was the one under probation when the process died, so it is given up on with a
WorkerLostError through the router's dead-letter hook (its workflow or call fails, naming why).
A bystander waiting for its turn wrote no marker and gets a probation of its own later. A task
that finishes, or fails in the ordinary way, clears its marker. The store is touched only on
this path, never for a healthy task.

Celery's ``reject_on_worker_lost`` and Temporal's activity timeouts shaped the question (what a
lost worker means for the tasks it held); the marker is ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator
from datetime import timedelta

from hotmesh.errors import HotMeshError, WorkerLostError
from hotmesh.providers import Delivery, Store

log = logging.getLogger("hotmesh.engine")

MARKER_TTL = timedelta(days=1)
"""A marker outlives any redelivery; the store forgets it after that."""

_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def _process_lock() -> asyncio.Lock:
    """One suspect at a time per process (per event loop), whatever stream it came from: a
    poison activity must not take a workflow task under probation down with it."""
    loop = asyncio.get_running_loop()
    lock = _LOCKS.get(loop)
    if lock is None:
        lock = _LOCKS[loop] = asyncio.Lock()
    return lock


class ProbationUnavailable(HotMeshError):
    """The store could not be asked about or told of a probation: not the task's fault, so
    the router gives the delivery back instead of counting it as a failure."""

    retryable = True


class Probation:
    """Probation for the suspects of one (stream, group)."""

    def __init__(self, store: Store, *, stream_name: str, group: str, visibility_timeout: timedelta) -> None:
        self.store = store
        self.stream_name = stream_name
        self.group = group
        self.visibility_timeout = visibility_timeout

    def _marker(self, delivery: Delivery) -> str:
        return f"hotmesh:probation:{self.stream_name}:{self.group}:{delivery.id}"

    @contextlib.asynccontextmanager
    async def trial(self, delivery: Delivery) -> AsyncIterator[None]:
        """Run the body as ``delivery``'s probation, or raise WorkerLostError if an earlier
        probation of it ended with its worker dead."""
        async with _process_lock():
            marker = self._marker(delivery)
            try:
                found, _ = await self.store.get_cached(marker)
            except HotMeshError as exc:
                raise ProbationUnavailable(f"probation of {self.stream_name}/{delivery.id}: {exc}") from exc
            if found:
                with contextlib.suppress(Exception):  # given up on: the marker has served
                    await self.store.delete_cached(marker)
                raise WorkerLostError(
                    f"{self.stream_name}/{delivery.id} was delivered {delivery.delivery_count} times and never"
                    " finished: each worker that took it died or ran past the visibility timeout of"
                    f" {self.visibility_timeout.total_seconds():g}s, the last one while it ran alone."
                    " Given up on as a poison message"
                )
            log.warning(
                "%s/%s came back %d times without finishing: running it alone (probation)",
                self.stream_name, delivery.id, delivery.delivery_count,
            )  # fmt: skip
            try:
                await self.store.set_cached(marker, delivery.delivery_count, ttl=MARKER_TTL)
            except HotMeshError as exc:
                raise ProbationUnavailable(f"probation of {self.stream_name}/{delivery.id}: {exc}") from exc
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # best effort: the marker expires anyway
                    await self.store.delete_cached(marker)
