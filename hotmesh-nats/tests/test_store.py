"""NatsStore against the Store rules (until the conformance kit covers them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from hotmesh.providers import (
    Message,
    NewJob,
    Timer,
    Transition,
    TransitionStatus,
    Waiter,
)

pytestmark = pytest.mark.anyio
M = Message("q", {"x": 1}, {"h": "1"})


async def test_create_once_concurrently(store: Any) -> None:
    """Rule 1."""
    results: list[bool] = []

    async def create() -> None:
        results.append((await store.create_job(NewJob("j1", {"a": 1}))).created)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(create)
    assert sorted(results) == [False] * 7 + [True]
    assert await store.get_job("j1") == {"a": 1}


async def test_transition_idempotent_and_guarded(store: Any) -> None:
    """Rules 2-5, 7."""
    await store.create_job(NewJob("j", {"n": 1, "s": "x"}))
    t = Transition("j", "1", set={"s": "y"}, increment={"n": 2}, delete=("gone",),
                   require={"s": "x"}, read=("n", "s"), messages=(M,))
    r = await store.apply_transition(t)
    assert r.status is TransitionStatus.APPLIED and r.fields == {"n": 3, "s": "y"}
    assert r.published is False
    d = await store.apply_transition(t)
    assert d.status is TransitionStatus.DUPLICATE and d.messages == (M,) and d.fields["n"] == 3
    bad = await store.apply_transition(Transition("j", "2", require={"s": "x"}))
    assert bad.status is TransitionStatus.REJECTED
    missing = await store.apply_transition(Transition("nope", "1"))
    assert missing.status is TransitionStatus.REJECTED
    assert await store.get_job("j", ["n", "zz"]) == {"n": 3}
    assert await store.delete_job("j") is True
    assert await store.get_job("j") is None
    assert (await store.create_job(NewJob("j"))).created


async def test_concurrent_increments_are_exact(store: Any) -> None:
    """Rule 2: CAS retries make concurrent transitions serialize."""
    await store.create_job(NewJob("c", {"n": 0}))

    async def bump(i: int) -> None:
        await store.apply_transition(Transition("c", f"s{i}", increment={"n": 1}))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(bump, i)
    assert await store.get_job("c") == {"n": 20}


async def test_ttl(store: Any) -> None:
    """Rule 8 and 17: expiry stored in the value."""
    await store.create_job(NewJob("e", {"a": 1}, expire=timedelta(seconds=0.3)))
    await store.set_cached("k", [1, 2], ttl=timedelta(seconds=0.3))
    await store.set_cached("forever", {"a": None}, ttl=None)
    assert await store.get_cached("k") == (True, [1, 2])
    await anyio.sleep(0.5)
    assert await store.get_job("e") is None
    assert await store.get_cached("k") == (False, None)
    assert (await store.create_job(NewJob("e", {"a": 2}))).created
    assert await store.get_cached("forever") == (True, {"a": None})
    assert await store.delete_cached("forever") is True
    assert await store.delete_cached("forever") is False


async def test_timers(store: Any) -> None:
    """Rules 9-12."""
    now = datetime.now(UTC)
    t1 = Timer("t1", now - timedelta(seconds=2), M)
    t2 = Timer("t2", now - timedelta(seconds=1), M)
    t3 = Timer("t3", now + timedelta(hours=1), M)
    for t in (t1, t2, t3):
        assert await store.add_timer(t) is True
    assert await store.add_timer(t1) is False
    assert await store.next_timer_due() == t1.due
    claimed = await store.claim_due_timers(limit=10, lease=timedelta(seconds=0.5))
    assert [c.timer for c in claimed] == [t1, t2]
    assert await store.claim_due_timers(limit=10, lease=timedelta(seconds=1)) == []
    assert await store.next_timer_due() == t3.due
    assert await store.complete_timer(claimed[0]) is True
    await anyio.sleep(0.6)
    [again] = await store.claim_due_timers(limit=10, lease=timedelta(seconds=5))
    assert again.timer == t2 and again.token != claimed[1].token
    assert await store.complete_timer(claimed[1]) is False
    assert await store.cancel_timer("t2") is True
    assert await store.cancel_timer("t2") is False


async def test_signals(store: Any) -> None:
    """Rules 13-16."""
    w1 = Waiter("j1", "s1", M)
    w2 = Waiter("j2", "s1", M)
    assert await store.deliver_signal("sig", {"v": 1}, delivery_id="d1") == []
    assert await store.deliver_signal("sig", {"v": 1}, delivery_id="d1") == []
    first = await store.add_waiter("sig", w1)
    assert first is not None and first.data == {"v": 1}
    assert await store.add_waiter("sig", w2) == first
    got = await store.consume_signal("sig", job_id="j1", step="s1")
    assert got == first
    assert await store.consume_signal("sig", job_id="j1", step="s1") == first
    assert await store.consume_signal("sig", job_id="j2", step="s1") is None
    assert await store.deliver_signal("sig", 2, delivery_id="d2") == [w2]
    assert await store.remove_waiter("sig", job_id="j2", step="s1") is True
    assert await store.remove_waiter("sig", job_id="j2", step="s1") is False
