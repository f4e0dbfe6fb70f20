"""The NATS server's wall clock, as seen from this process (the store's ``store.clock``).

NATS has no "what time is it" request, but JetStream stamps every message it stores with the
server's wall clock. Reading the clock is therefore two requests: store an empty message on a
clock subject, then fetch that message back by its sequence and read its stamp (about 1.0-1.5 ms
on loopback). Doing that on every ``now()`` would add two requests to every timer decision, so
the reading is kept as an anchor on this host's *monotonic* clock and re-read every
``REFRESH`` seconds:

    server_now ~= stamp + (monotonic() - monotonic at the moment of the stamp)

The moment of the stamp is taken as the middle of the store request, so the estimate is off by
at most half that request's round trip, plus the drift between the two clocks since the last
reading (crystal drift is tens of ppm: well under a millisecond over ``REFRESH``). A wrong or
stepped wall clock on this host does not matter: only its monotonic clock is used, which is what
lets workers whose wall clocks disagree by minutes agree on when a timer is due (promise C4,
test T-1). Every process of a namespace reads the same stream, so in a cluster the stamps come
from the stream's leader: one clock for the namespace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

REFRESH = 10.0
"""Seconds between two readings of the server clock."""

ReadStamp = Callable[[], Awaitable[datetime]]
"""Stores a message on the clock subject and returns the server's stamp on it."""


class ServerClock:
    """An estimate of a server's wall clock, re-read from the server every ``refresh`` seconds."""

    def __init__(self, read_stamp: ReadStamp, *, refresh: float = REFRESH) -> None:
        self._read_stamp = read_stamp
        self._refresh = refresh
        self._anchor: tuple[float, float] | None = None
        """(server epoch seconds, this host's monotonic seconds at the same moment)."""
        self._reading: asyncio.Task[None] | None = None

    async def now(self) -> float:
        """The server's time in epoch seconds; reads the server only when the anchor is stale."""
        anchor = self._anchor
        if anchor is None or time.monotonic() - anchor[1] >= self._refresh:
            await self._read()
            anchor = self._anchor
            assert anchor is not None
        return anchor[0] + (time.monotonic() - anchor[1])

    async def _read(self) -> None:
        """One reading, shared by every caller that needs it at the same moment.

        The reading runs as its own task, so a caller cancelled while waiting does not cancel
        it for the others."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(self._take_reading())
            self._reading.add_done_callback(_retrieve)
        await asyncio.shield(self._reading)

    async def _take_reading(self) -> None:
        before = time.monotonic()
        stamp = await self._read_stamp()
        after = time.monotonic()
        self._anchor = (stamp.timestamp(), (before + after) / 2)


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a failed reading's error as seen: every waiter got it, or none was left to."""
    if not task.cancelled():
        task.exception()
