"""Store rules 1-18 (hotmesh/providers/store.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from hotmesh.errors import CapabilityNotSupportedError
from hotmesh.providers import (
    Capability,
    ClaimedTimer,
    Message,
    NewJob,
    ReadRequest,
    Timer,
    Transition,
    TransitionStatus,
    Waiter,
)
from hotmesh_conformance.helpers import forbids, requires, skip_unless

pytestmark = pytest.mark.anyio

APPLIED, DUPLICATE, REJECTED = (
    TransitionStatus.APPLIED,
    TransitionStatus.DUPLICATE,
    TransitionStatus.REJECTED,
)
NESTED: dict[str, Any] = {
    "s": "héllo \"quoted\" {braces} @*|--;%",
    "i": 42,
    "f": 1.5,
    "b": True,
    "list": [1, "two", {"three": 3}],
    "obj": {"deep": {"er": [False]}},
}


# ---------------------------------------------------------------- jobs


async def test_create_job_only_if_absent(store: Any) -> None:
    """Store rule 1: create succeeds once; a second create changes nothing."""
    first = await store.create_job(NewJob("j1", {"a": 1}))
    second = await store.create_job(NewJob("j1", {"a": 2, "b": 3}))
    assert first.created is True and second.created is False, f"Store rule 1: {first}, {second}"
    assert await store.get_job("j1") == {"a": 1}, "Store rule 1: the losing create changed the job"


async def test_concurrent_create_job_has_one_winner(store: Any, stream: Any) -> None:
    """Store rule 1: of many concurrent creators exactly one wins; the others emit nothing."""
    results: dict[int, bool] = {}
    publish_to = stream if store.can_publish_to(stream) else None

    async def create(n: int) -> None:
        job = NewJob("race", {"winner": n}, messages=(Message("created", {"n": n}),))
        results[n] = (await store.create_job(job, stream=publish_to)).created

    async with anyio.create_task_group() as tg:
        for n in range(8):
            tg.start_soon(create, n)
    winners = [n for n, created in results.items() if created]
    assert len(winners) == 1, f"Store rule 1: {len(winners)} creators won: {winners}"
    assert await store.get_job("race") == {"winner": winners[0]}
    if publish_to is not None:
        assert await stream.length("created") == 1, "Store rule 1: losers emitted messages"


async def test_create_job_without_stream_is_not_published(store: Any) -> None:
    """Store rule 6: without a stream the caller publishes: ``published`` is False."""
    result = await store.create_job(NewJob("j", {}, messages=(Message("s", {"x": 1}),)))
    assert result.created is True and result.published is False, f"Store rule 6: {result}"


async def test_transition_applies_then_is_duplicate(store: Any) -> None:
    """Store rule 3: the first application is APPLIED, a repeat is DUPLICATE and changes nothing."""
    await store.create_job(NewJob("j", {"n": 0}))
    t = Transition("j", "s1", set={"x": "a"}, increment={"n": 1}, read=("n", "x"))
    first = await store.apply_transition(t)
    again = await store.apply_transition(t)
    assert first.status is APPLIED and first.fields == {"n": 1, "x": "a"}, f"Store rule 3: {first}"
    assert again.status is DUPLICATE, f"Store rule 3: {again}"
    assert again.fields == {"n": 1, "x": "a"}, "Store rule 3: DUPLICATE returns current read fields"
    assert await store.get_job("j") == {"n": 1, "x": "a"}, "Store rule 3: a duplicate changed the job"


async def test_duplicate_returns_recorded_messages(store: Any) -> None:
    """Store rule 3: DUPLICATE returns the messages recorded by the first application."""
    await store.create_job(NewJob("j", {}))
    original = (Message("next", {"step": 1}, {"trace": "t1"}), Message("other", {"k": [1, 2]}))
    first = await store.apply_transition(Transition("j", "s", set={"a": 1}, messages=original))
    changed = Transition("j", "s", set={"a": 2}, messages=(Message("bogus", {}),))
    again = await store.apply_transition(changed)
    assert first.messages == original, f"Store rule 3: APPLIED returns its own messages: {first}"
    assert again.status is DUPLICATE
    assert again.messages == original, f"Store rule 3: DUPLICATE must re-emit {original}: {again}"
    assert await store.get_job("j") == {"a": 1}


async def test_concurrent_duplicates_apply_once(store: Any) -> None:
    """Store rules 2-3: concurrent copies of one step apply exactly once."""
    await store.create_job(NewJob("j", {"n": 0}))
    statuses: list[TransitionStatus] = []

    async def apply() -> None:
        result = await store.apply_transition(Transition("j", "same", increment={"n": 1}))
        statuses.append(result.status)

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(apply)
    assert statuses.count(APPLIED) == 1, f"Store rule 3: {statuses}"
    assert statuses.count(DUPLICATE) == 7, f"Store rule 3: {statuses}"
    assert await store.get_job("j") == {"n": 1}, "Store rule 3: the step applied more than once"


async def test_readers_never_see_half_a_transition(store: Any) -> None:
    """Store rule 2: a transition is atomic: a reader sees both fields changed or neither."""
    await store.create_job(NewJob("j", {"a": 0, "b": 0}))
    torn: list[dict[str, Any]] = []
    done = anyio.Event()

    async def reader() -> None:
        while not done.is_set():
            job = await store.get_job("j")
            if job is None or job["a"] != job["b"]:
                torn.append(dict(job or {}))
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        for i in range(1, 30):
            await store.apply_transition(Transition("j", f"s{i}", set={"a": i}, increment={"b": 1}))
        done.set()
    assert not torn, f"Store rule 2: a reader saw half-applied transitions: {torn[:3]}"


async def test_transition_on_missing_job_is_rejected(store: Any) -> None:
    """Store rule 4: a transition on a missing job is REJECTED and creates nothing."""
    result = await store.apply_transition(
        Transition("ghost", "s", set={"a": 1}, messages=(Message("m", {}),))
    )
    assert result.status is REJECTED and result.messages == (), f"Store rule 4: {result}"
    assert await store.get_job("ghost") is None, "Store rule 4: REJECTED created the job"


async def test_failed_guard_rejects_and_step_can_be_retried(store: Any) -> None:
    """Store rule 4: a failing ``require`` changes nothing and does not record the step."""
    await store.create_job(NewJob("j", {"state": "new", "n": 0}))
    bad = Transition("j", "s", set={"state": "done"}, increment={"n": 1}, require={"state": "old"})
    rejected = await store.apply_transition(bad)
    assert rejected.status is REJECTED, f"Store rule 4: {rejected}"
    assert await store.get_job("j") == {"state": "new", "n": 0}, "Store rule 4: REJECTED changed fields"
    good = Transition("j", "s", set={"state": "done"}, increment={"n": 1}, require={"state": "new"})
    assert (await store.apply_transition(good)).status is APPLIED, "Store rule 4: the step was recorded"
    assert await store.get_job("j") == {"state": "done", "n": 1}


async def test_guard_none_means_absent(store: Any) -> None:
    """Store rule 4: ``require={f: None}`` holds only when the field is absent."""
    await store.create_job(NewJob("j", {"present": 1}))
    on_present = await store.apply_transition(Transition("j", "a", set={"x": 1}, require={"present": None}))
    on_absent = await store.apply_transition(Transition("j", "b", set={"x": 2}, require={"missing": None}))
    assert on_present.status is REJECTED, f"Store rule 4: {on_present}"
    assert on_absent.status is APPLIED, f"Store rule 4: {on_absent}"
    assert await store.get_job("j") == {"present": 1, "x": 2}


async def test_guard_compares_json_values(store: Any) -> None:
    """Store rule 4: guards compare whole JSON values (numbers, objects)."""
    await store.create_job(NewJob("j", {"n": 3, "o": {"k": [1, 2]}}))
    ok = await store.apply_transition(Transition("j", "a", set={"x": 1}, require={"n": 3, "o": {"k": [1, 2]}}))
    no = await store.apply_transition(Transition("j", "b", set={"x": 2}, require={"n": 4}))
    assert (ok.status, no.status) == (APPLIED, REJECTED), f"Store rule 4: {ok}, {no}"


async def test_increment_absent_counts_as_zero_and_read_after(store: Any) -> None:
    """Store rule 5: increment treats absent as 0; read returns the values after the change."""
    await store.create_job(NewJob("j", {"n": 10}))
    result = await store.apply_transition(
        Transition("j", "s", increment={"n": -3, "fresh": 2, "half": 0.5}, read=("n", "fresh", "half", "nope"))
    )
    assert result.fields == {"n": 7, "fresh": 2, "half": 0.5}, f"Store rule 5: {result.fields}"
    again = await store.apply_transition(Transition("j", "t", increment={"half": 0.25}, read=("half",)))
    assert again.fields == {"half": 0.75}, f"Store rule 5: {again.fields}"


async def test_increment_is_exact_up_to_2_pow_53(store: Any) -> None:
    """Store rule 5: integer increments are exact up to 2**53 and stay integers."""
    await store.create_job(NewJob("j", {"big": 2**53 - 2}))
    result = await store.apply_transition(Transition("j", "s", increment={"big": 2}, read=("big",)))
    value = result.fields["big"]
    assert value == 2**53 and isinstance(value, int), f"Store rule 5: got {value!r}"
    assert await store.get_job("j", ["big"]) == {"big": 2**53}


async def test_delete_fields_in_a_transition(store: Any) -> None:
    """Store rule 2: set, increment and delete apply together."""
    await store.create_job(NewJob("j", {"a": 1, "b": 2, "c": 3}))
    await store.apply_transition(Transition("j", "s", set={"a": 9}, delete=("b",), increment={"c": 1}))
    assert await store.get_job("j") == {"a": 9, "c": 4}, "Store rule 2"


async def test_get_job_returns_stored_json(store: Any) -> None:
    """Store rule 7: values come back as the JSON stored; ``fields`` selects; missing is None."""
    await store.create_job(NewJob("j", dict(NESTED)))
    assert await store.get_job("j") == NESTED, "Store rule 7: values changed in the round trip"
    assert await store.get_job("j", ["s", "obj"]) == {"s": NESTED["s"], "obj": NESTED["obj"]}
    assert await store.get_job("j", ["i", "absent"]) == {"i": 42}, "Store rule 7: absent fields are left out"
    assert await store.get_job("nobody") is None, "Store rule 7: a missing job is None"


async def test_delete_job_removes_job_and_step_records(store: Any) -> None:
    """Store rule 7 and delete_job: the job and its step records go; the id is reusable."""
    await store.create_job(NewJob("j", {"n": 0}))
    await store.apply_transition(Transition("j", "s", increment={"n": 1}))
    assert await store.delete_job("j") is True
    assert await store.delete_job("j") is False
    assert await store.get_job("j") is None
    assert (await store.create_job(NewJob("j", {"n": 0}))).created is True
    again = await store.apply_transition(Transition("j", "s", increment={"n": 1}))
    assert again.status is APPLIED, "delete_job must delete step records too (Store rule 3)"


# ---------------------------------------------------------------- outbox


async def test_can_publish_to_matches_capability(store: Any, stream: Any) -> None:
    """Store rule 6: ``can_publish_to`` is False for foreign objects and without the capability."""
    assert store.can_publish_to(object()) is False, "Store rule 6: can_publish_to(object())"
    if Capability.ATOMIC_STORE_AND_STREAM not in store.capabilities:
        assert store.can_publish_to(stream) is False, (
            "Store rule 6: can_publish_to() is True but store.atomic_outbox is not declared"
        )


async def test_atomic_outbox_publishes_with_transition(store: Any, stream: Any) -> None:
    """Store rule 6: with can_publish_to(stream), messages are enqueued in the same operation."""
    skip_unless(store, Capability.ATOMIC_STORE_AND_STREAM)
    if not store.can_publish_to(stream):
        pytest.skip(f"{type(store).__name__} cannot publish to {type(stream).__name__} at this URL")
    created = await store.create_job(NewJob("j", {}, messages=(Message("work", {"n": 0}),)), stream=stream)
    assert created.published is True, f"Store rule 6: {created}"
    msgs = (Message("work", {"n": 1}), Message("work", {"n": 2}))
    result = await store.apply_transition(Transition("j", "s", set={"a": 1}, messages=msgs), stream=stream)
    assert result.published is True, f"Store rule 6: {result}"
    rejected = await store.apply_transition(
        Transition("j", "t", require={"a": 2}, messages=(Message("work", {"n": 99}),)), stream=stream
    )
    assert rejected.status is REJECTED and rejected.published is False
    got = await stream.read(ReadRequest("work", "g", "c", count=10))
    bodies = [d.message.body for d in got]
    assert bodies == [{"n": 0}, {"n": 1}, {"n": 2}], f"Store rule 6: stream holds {bodies}"


async def test_transition_acks_its_delivery_only_when_applied(store: Any, stream: Any) -> None:
    """Store rule 6b: with ``ack`` and can_publish_to(stream), an APPLIED transition acks the
    delivery in the same operation; DUPLICATE, REJECTED and calls without ``stream=`` do not."""
    await stream.publish([Message("work", {"n": n}) for n in range(4)])
    d1, d2, d3, d4 = await stream.read(ReadRequest("work", "g", "c", count=4))
    await store.create_job(NewJob("j", {}))
    folds = store.can_publish_to(stream)
    applied = await store.apply_transition(Transition("j", "s", set={"a": 1}, ack=d1), stream=stream)
    assert applied.status is APPLIED and applied.acked is folds, f"Store rule 6b: {applied}"
    dup = await store.apply_transition(Transition("j", "s", ack=d2), stream=stream)
    assert dup.status is DUPLICATE and dup.acked is False, f"Store rule 6b: a duplicate acked: {dup}"
    rejected = await store.apply_transition(Transition("j", "t", require={"a": 2}, ack=d3), stream=stream)
    assert rejected.status is REJECTED and rejected.acked is False, f"Store rule 6b: {rejected}"
    alone = await store.apply_transition(Transition("j", "u", ack=d4))
    assert alone.status is APPLIED and alone.acked is False, f"Store rule 6b: acked without stream=: {alone}"
    assert await stream.backlog("work", "g") == (3 if folds else 4), "Store rule 6b: wrong deliveries acked"
    assert await stream.ack("work", "g", [d1.id]) == (0 if folds else 1), "Store rule 6b: d1 still pending"


async def test_transition_notifies_only_when_applied(store: Any, sub: Any) -> None:
    """Store rule 6c: with can_notify(sub), an APPLIED transition publishes its ``notify`` on the
    sub (seen by a subscriber, after the change is readable); DUPLICATE and REJECTED do not."""
    assert store.can_notify(object()) is False, "Store rule 6c: can_notify(object())"
    if not store.can_notify(sub):
        pytest.skip(f"{type(store).__name__} does not notify through {type(sub).__name__} (the engine publishes)")
    await store.create_job(NewJob("j", {}))
    subscription = await sub.subscribe("done.j")
    try:
        applied = await store.apply_transition(Transition("j", "s", set={"a": 1}, notify=(("done.j", {"n": 1}),)))
        assert applied.status is APPLIED and applied.notified is True, f"Store rule 6c: {applied}"
        got = await subscription.get(timeout=5)
        assert got is not None and dict(got.payload) == {"n": 1}, f"Store rule 6c: received {got}"
        assert await store.get_job("j") == {"a": 1}, "Store rule 6c: notified before the change was readable"
        dup = await store.apply_transition(Transition("j", "s", notify=(("done.j", {"n": 2}),)))
        rejected = await store.apply_transition(Transition("j", "t", require={"a": 2}, notify=(("done.j", {"n": 3}),)))
        assert dup.notified is False and rejected.notified is False, f"Store rule 6c: {dup}, {rejected}"
        assert await subscription.get(timeout=0.5) is None, "Store rule 6c: a duplicate or rejected transition notified"
    finally:
        await subscription.aclose()


async def test_no_outbox_without_stream_argument(store: Any, stream: Any) -> None:
    """Store rule 6: without ``stream=`` nothing is enqueued and ``published`` is False."""
    await store.create_job(NewJob("j", {}))
    result = await store.apply_transition(Transition("j", "s", messages=(Message("work", {}),)))
    assert result.published is False, f"Store rule 6: {result}"
    assert await stream.length("work") == 0, "Store rule 6: enqueued without stream="


# ---------------------------------------------------------------- TTL


@requires(Capability.STORE_TTL)
async def test_job_expires_and_id_is_reusable(store: Any) -> None:
    """Store rule 8: an expired job disappears and create may reuse its id."""
    await store.create_job(NewJob("j", {"a": 1}, expire=timedelta(milliseconds=600)))
    await store.apply_transition(Transition("j", "s", set={"b": 1}))
    assert await store.get_job("j") is not None
    await anyio.sleep(1.2)
    assert await store.get_job("j") is None, "Store rule 8: the job outlived its expiry"
    assert (await store.create_job(NewJob("j", {"a": 2}))).created is True, "Store rule 8"
    again = await store.apply_transition(Transition("j", "s", set={"b": 2}))
    assert again.status is APPLIED, "Store rule 8: step records must expire with the job"


@requires(Capability.STORE_TTL)
async def test_transition_expire_resets_expiry(store: Any) -> None:
    """Store rule 8: ``expire`` on a transition resets the job's expiry."""
    await store.create_job(NewJob("j", {}, expire=timedelta(milliseconds=600)))
    await store.apply_transition(Transition("j", "s", set={"a": 1}, expire=timedelta(seconds=30)))
    await anyio.sleep(1.0)
    assert await store.get_job("j") == {"a": 1}, "Store rule 8: the transition's expire was ignored"
    await store.apply_transition(Transition("j", "t", expire=timedelta(milliseconds=300)))
    await anyio.sleep(0.9)
    assert await store.get_job("j") is None, "Store rule 8: the shortened expiry was ignored"


@forbids(Capability.STORE_TTL)
async def test_expire_without_ttl_capability_raises(store: Any) -> None:
    """Store rule 8: without STORE_TTL, ``expire`` raises before anything is written."""
    with pytest.raises(CapabilityNotSupportedError):
        await store.create_job(NewJob("j", {"a": 1}, expire=timedelta(seconds=5)))
    assert await store.get_job("j") is None, "Store rule 8: the job was written anyway"
    await store.create_job(NewJob("k", {"a": 1}))
    with pytest.raises(CapabilityNotSupportedError):
        await store.apply_transition(Transition("k", "s", set={"a": 2}, expire=timedelta(seconds=5)))
    assert await store.get_job("k") == {"a": 1}, "Store rule 8: the transition was applied anyway"


# ---------------------------------------------------------------- timers


async def _due(store: Any, seconds: float) -> datetime:
    return await store.now() + timedelta(seconds=seconds)  # type: ignore[no-any-return]


async def test_add_timer_is_idempotent(store: Any) -> None:
    """Store rule 9: adding an existing timer id returns False and changes nothing."""
    due = await _due(store, -1)
    assert await store.add_timer(Timer("t1", due, Message("fire", {"v": 1}))) is True
    assert await store.add_timer(Timer("t1", due, Message("fire", {"v": 2}))) is False
    claimed = await store.claim_due_timers(limit=10, lease=timedelta(seconds=30))
    assert [c.timer.message.body for c in claimed] == [{"v": 1}], f"Store rule 9: {claimed}"


async def test_claim_returns_only_due_timers_earliest_first(store: Any) -> None:
    """Store rule 10: only timers due by the store's clock, earliest first, up to ``limit``."""
    for name, offset in [("late", -1), ("early", -3), ("mid", -2), ("future", 60)]:
        await store.add_timer(Timer(name, await _due(store, offset), Message("fire", {"t": name})))
    first = await store.claim_due_timers(limit=2, lease=timedelta(seconds=30))
    rest = await store.claim_due_timers(limit=10, lease=timedelta(seconds=30))
    assert [c.timer.timer_id for c in first] == ["early", "mid"], f"Store rule 10: {first}"
    assert [c.timer.timer_id for c in rest] == ["late"], f"Store rule 10: {rest}"
    assert first[0].timer.message == Message("fire", {"t": "early"})


async def test_timers_claimed_by_exactly_one_of_many(store: Any, make_provider: Any) -> None:
    """Store rule 10: concurrent claimers (several connections) never share a timer."""
    stores = [store] + [await make_provider("store") for _ in range(3)]
    for i in range(12):
        await store.add_timer(Timer(f"t{i}", await _due(store, -1), Message("fire", {"i": i})))
    claims: list[ClaimedTimer] = []

    async def claim(s: Any) -> None:
        for _ in range(3):
            claims.extend(await s.claim_due_timers(limit=3, lease=timedelta(seconds=30)))

    async with anyio.create_task_group() as tg:
        for s in stores * 2:
            tg.start_soon(claim, s)
    ids = sorted(c.timer.timer_id for c in claims)
    assert ids == sorted(f"t{i}" for i in range(12)), f"Store rule 10: claimed {ids}"


async def test_complete_timer_with_token(store: Any) -> None:
    """Store rule 10: complete with the claim's token deletes the timer and returns True once."""
    await store.add_timer(Timer("t", await _due(store, -1), Message("fire", {})))
    [claimed] = await store.claim_due_timers(limit=5, lease=timedelta(seconds=30))
    assert await store.claim_due_timers(limit=5, lease=timedelta(seconds=30)) == [], (
        "Store rule 10: a leased timer was claimed twice"
    )
    assert await store.complete_timer(claimed) is True
    assert await store.complete_timer(claimed) is False, "Store rule 10: completed twice"
    assert await store.next_timer_due() is None


async def test_expired_lease_is_reclaimed_and_old_token_fenced(store: Any) -> None:
    """Store rule 10: after the lease expires the timer is claimable with a new token; the old
    token no longer completes it (fencing)."""
    await store.add_timer(Timer("t", await _due(store, -1), Message("fire", {})))
    [old] = await store.claim_due_timers(limit=5, lease=timedelta(milliseconds=300))
    await anyio.sleep(0.7)
    [new] = await store.claim_due_timers(limit=5, lease=timedelta(seconds=30))
    assert new.timer.timer_id == "t" and new.token != old.token, f"Store rule 10: {old} / {new}"
    assert await store.complete_timer(old) is False, "Store rule 10: a stale token completed the timer"
    assert await store.complete_timer(new) is True


async def test_cancel_timer(store: Any) -> None:
    """Store rule 11: cancel deletes a timer, claimed or not."""
    await store.add_timer(Timer("free", await _due(store, 60), Message("fire", {})))
    await store.add_timer(Timer("held", await _due(store, -1), Message("fire", {})))
    [held] = await store.claim_due_timers(limit=5, lease=timedelta(seconds=30))
    assert await store.cancel_timer("free") is True
    assert await store.cancel_timer("held") is True
    assert await store.cancel_timer("free") is False, "Store rule 11: cancelled twice"
    assert await store.complete_timer(held) is False, "Store rule 11: a cancelled timer completed"
    assert await store.next_timer_due() is None


async def test_next_timer_due_skips_claimed(store: Any) -> None:
    """Store rule 12: earliest due time among unclaimed timers, or None."""
    assert await store.next_timer_due() is None
    early, late = await _due(store, -5), await _due(store, 120)
    await store.add_timer(Timer("late", late, Message("fire", {})))
    await store.add_timer(Timer("early", early, Message("fire", {})))
    _assert_close(await store.next_timer_due(), early, "Store rule 12")
    await store.claim_due_timers(limit=5, lease=timedelta(seconds=30))
    _assert_close(await store.next_timer_due(), late, "Store rule 12: a claimed timer counted")


def _assert_close(got: datetime | None, want: datetime, rule: str) -> None:
    assert got is not None and got.tzinfo is not None, f"{rule}: {got!r} is not timezone-aware"
    assert abs(got - want) <= timedelta(milliseconds=2), f"{rule}: {got} != {want}"


# ---------------------------------------------------------------- signals


def _waiter(job: str, step: str = "w") -> Waiter:
    return Waiter(job, step, Message("wake", {"job": job}))


async def test_signal_buffered_before_waiter(store: Any) -> None:
    """Store rules 13-14: a signal delivered before any waiter is returned by add_waiter."""
    assert await store.deliver_signal("sig", {"v": 1}, delivery_id="d1") == []
    found = await store.add_waiter("sig", _waiter("j"))
    assert found is not None and found.data == {"v": 1} and found.delivery_id == "d1", f"Store rule 14: {found}"
    consumed = await store.consume_signal("sig", job_id="j", step="w")
    assert consumed is not None and consumed.delivery_id == "d1", f"Store rule 15: {consumed}"


async def test_deliver_returns_waiters_and_is_idempotent(store: Any) -> None:
    """Store rules 13-14: deliver returns current waiters; same delivery_id buffers once;
    the same waiter added twice is one waiter."""
    assert await store.add_waiter("sig", _waiter("a")) is None
    assert await store.add_waiter("sig", _waiter("a")) is None
    await store.add_waiter("sig", _waiter("b"))
    waiters = await store.deliver_signal("sig", [1, "x"], delivery_id="d1")
    assert sorted(w.job_id for w in waiters) == ["a", "b"], f"Store rule 13/14: {waiters}"
    by_job = {w.job_id: w for w in waiters}
    assert by_job["a"] == _waiter("a"), f"Store rule 13: waiter changed in the round trip: {by_job}"
    await store.deliver_signal("sig", [1, "x"], delivery_id="d1")
    got_a = await store.consume_signal("sig", job_id="a", step="w")
    got_b = await store.consume_signal("sig", job_id="b", step="w")
    assert got_a is not None and got_a.data == [1, "x"]
    assert got_b is None, "Store rule 13: a repeated delivery_id was buffered twice"


async def test_signal_consumed_once_among_concurrent_waiters(store: Any, make_provider: Any) -> None:
    """Store rule 15: exactly one of many concurrent consumers receives the signal; a repeat by
    the winner returns the same signal; the others get None."""
    other = await make_provider("store")
    for i in range(6):
        await store.add_waiter("sig", _waiter(f"j{i}"))
    await store.deliver_signal("sig", {"payload": "x"}, delivery_id="only")
    results: dict[str, Any] = {}

    async def consume(s: Any, job: str) -> None:
        results[job] = await s.consume_signal("sig", job_id=job, step="w")

    async with anyio.create_task_group() as tg:
        for i in range(6):
            tg.start_soon(consume, store if i % 2 else other, f"j{i}")
    winners = [job for job, sig in results.items() if sig is not None]
    assert len(winners) == 1, f"Store rule 15: {len(winners)} consumers received it: {results}"
    again = await store.consume_signal("sig", job_id=winners[0], step="w")
    assert again == results[winners[0]], f"Store rule 15: repeat returned {again}"
    loser = next(job for job in results if job != winners[0])
    assert await store.consume_signal("sig", job_id=loser, step="w") is None


async def test_concurrent_deliver_and_add_waiter_never_miss_each_other(store: Any, make_provider: Any) -> None:
    """Store rules 13-14 (C5, no lost wake-up): when a signal is delivered while its waiter is
    being added, from two connections at once, at least one side sees the other."""
    other = await make_provider("store")
    missed = []
    for i in range(60):
        sid = f"race{i}"
        waiters, buffered = await asyncio.gather(
            store.deliver_signal(sid, i, delivery_id=f"d{i}"), other.add_waiter(sid, _waiter(f"j{i}"))
        )
        if not waiters and buffered is None:
            missed.append(sid)
    assert not missed, f"Store rules 13-14: signal and waiter missed each other (lost wake-up) for {missed}"


async def test_consume_takes_oldest_and_removes_waiter(store: Any) -> None:
    """Store rule 15: signals are consumed oldest first and the consumer stops waiting."""
    await store.deliver_signal("sig", "first", delivery_id="d1")
    await store.deliver_signal("sig", "second", delivery_id="d2")
    await store.add_waiter("sig", _waiter("a"))
    await store.add_waiter("sig", _waiter("b"))
    got_a = await store.consume_signal("sig", job_id="a", step="w")
    got_b = await store.consume_signal("sig", job_id="b", step="w")
    assert (got_a and got_a.data, got_b and got_b.data) == ("first", "second"), f"Store rule 15: {got_a}, {got_b}"
    assert await store.deliver_signal("sig", "third", delivery_id="d3") == [], (
        "Store rule 15: consume must remove the waiter"
    )


async def test_remove_waiter(store: Any) -> None:
    """Store rule 16: remove_waiter removes without consuming."""
    await store.add_waiter("sig", _waiter("a"))
    assert await store.remove_waiter("sig", job_id="a", step="w") is True
    assert await store.remove_waiter("sig", job_id="a", step="w") is False
    assert await store.deliver_signal("sig", 1, delivery_id="d") == [], "Store rule 16"
    found = await store.add_waiter("sig", _waiter("b"))
    assert found is not None and found.data == 1, "Store rule 16: remove_waiter consumed the signal"


# ---------------------------------------------------------------- cache and clock


async def test_cache_round_trip(store: Any) -> None:
    """Store rule 17: set/get/delete; absent is (False, None); JSON values, null included."""
    assert await store.get_cached("k") == (False, None)
    await store.set_cached("k", NESTED, ttl=None)
    assert await store.get_cached("k") == (True, NESTED)
    await store.set_cached("k", None, ttl=None)
    assert await store.get_cached("k") == (True, None), "Store rule 17: a cached null is a value"
    assert await store.delete_cached("k") is True
    assert await store.delete_cached("k") is False
    assert await store.get_cached("k") == (False, None)


@requires(Capability.STORE_TTL)
async def test_cache_ttl_expires(store: Any) -> None:
    """Store rule 17: a cached value is gone after its ttl."""
    await store.set_cached("short", "v", ttl=timedelta(milliseconds=500))
    await store.set_cached("long", "v", ttl=timedelta(seconds=30))
    assert await store.get_cached("short") == (True, "v")
    await anyio.sleep(1.0)
    assert await store.get_cached("short") == (False, None), "Store rule 17: outlived its ttl"
    assert await store.get_cached("long") == (True, "v")


async def test_now_is_aware_utc(store: Any) -> None:
    """Store rule 18: now() is timezone-aware UTC and close to real time."""
    now = await store.now()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0), f"Store rule 18: {now!r}"
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=60), f"Store rule 18: {now} is far off"
