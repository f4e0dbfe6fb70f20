"""The NATS store's server clock (``store.clock``): the estimate, its refresh, and the real server.

The kit's T-1 tests show what the clock is for (workers 30 s apart agree on due times and
leases); these pin down how the estimate behaves.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from hotmesh.errors import ProviderError
from hotmesh.providers import Capability, Message, Timer
from hotmesh_nats._clock import ServerClock
from hotmesh_nats.store import NatsStore

URL = os.environ.get("HOTMESH_NATS_URL", "nats://127.0.0.1:4222")
SERVER_AHEAD = 3600.0
"""The fake server's clock runs an hour ahead of this host's wall clock."""

pytestmark = pytest.mark.anyio


class FakeServer:
    """Stamps like a server whose clock is ``SERVER_AHEAD`` seconds ahead; counts readings."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.readings = 0
        self.delay = delay
        self.fail = fail

    async def stamp(self) -> datetime:
        self.readings += 1
        await asyncio.sleep(self.delay / 2)  # the request's way there, the stamp, the way back
        stamped = time.time() + SERVER_AHEAD
        await asyncio.sleep(self.delay / 2)
        if self.fail:
            raise ProviderError("nats store read the server clock failed: connection closed")
        return datetime.fromtimestamp(stamped, UTC)


async def test_the_estimate_follows_the_server_not_this_host() -> None:
    server = FakeServer()
    clock = ServerClock(server.stamp)
    first = await clock.now()
    assert abs(first - (time.time() + SERVER_AHEAD)) < 0.05
    await asyncio.sleep(0.2)
    second = await clock.now()
    assert 0.15 < second - first < 0.5, "the estimate advances with this host's monotonic clock"
    assert server.readings == 1, "a fresh anchor is used without asking the server"


async def test_one_reading_serves_every_caller_waiting_for_it() -> None:
    server = FakeServer(delay=0.05)
    clock = ServerClock(server.stamp)
    results = await asyncio.gather(*(clock.now() for _ in range(20)))
    assert server.readings == 1
    assert max(results) - min(results) < 0.05


async def test_a_stale_anchor_is_read_again() -> None:
    server = FakeServer()
    clock = ServerClock(server.stamp, refresh=0.1)
    await clock.now()
    await asyncio.sleep(0.15)
    await clock.now()
    assert server.readings == 2


async def test_a_cancelled_caller_does_not_cancel_the_reading_for_others() -> None:
    server = FakeServer(delay=0.1)
    clock = ServerClock(server.stamp)
    impatient = asyncio.create_task(clock.now())
    patient = asyncio.create_task(clock.now())
    await asyncio.sleep(0.02)
    impatient.cancel()
    assert abs(await patient - (time.time() + SERVER_AHEAD)) < 0.05
    assert server.readings == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_failed_reading_reaches_every_waiter_and_the_next_call_reads_again() -> None:
    server = FakeServer(delay=0.02, fail=True)
    clock = ServerClock(server.stamp)
    outcomes = await asyncio.gather(clock.now(), clock.now(), return_exceptions=True)
    assert all(isinstance(o, ProviderError) for o in outcomes)
    server.fail = False
    assert abs(await clock.now() - (time.time() + SERVER_AHEAD)) < 0.05
    assert server.readings == 2


async def test_the_store_reads_the_servers_clock(namespace: str) -> None:
    """Same host, so the server's clock is this host's: the estimate agrees within milliseconds,
    and two stores (two anchors) agree with each other."""
    async with NatsStore(URL, namespace=namespace, options={}) as a, NatsStore(URL, namespace=namespace, options={}) as b:
        try:
            assert Capability.STORE_CLOCK in a.capabilities
            ours, theirs, host = await a.now(), await b.now(), datetime.now(UTC)
            assert ours.tzinfo is not None
            assert abs((ours - host).total_seconds()) < 0.05
            assert abs((ours - theirs).total_seconds()) < 0.05
        finally:
            await a.purge()


async def test_the_clock_key_is_not_state(namespace: str) -> None:
    """Reading the clock writes under the bucket's ``clock`` key: the namespace still counts as
    empty, and the timer scan does not see it."""
    async with NatsStore(URL, namespace=namespace, options={}) as store:
        try:
            await store.now()
            assert await store.is_empty()
            assert await store.next_timer_due() is None
            due = await store.now() - timedelta(seconds=1)
            await store.add_timer(Timer("t", due, Message(stream="s", body={}, headers={})))
            claimed = await store.claim_due_timers(limit=10, lease=timedelta(seconds=5))
            assert [c.timer.timer_id for c in claimed] == ["t"]
        finally:
            await store.purge()
