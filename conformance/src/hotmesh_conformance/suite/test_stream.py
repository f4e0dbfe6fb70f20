"""Stream rules 1-11 (hotmesh/providers/stream.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest

from hotmesh.errors import CapabilityNotSupportedError
from hotmesh.providers import Capability, Delivery, ExtendingStream, Message, ReadRequest
from hotmesh_conformance.helpers import forbids, requires

pytestmark = pytest.mark.anyio

LONG = timedelta(seconds=60)


def req(
    stream: str = "s",
    group: str = "g",
    consumer: str = "c1",
    count: int = 1,
    visibility: timedelta = LONG,
    **kw: Any,
) -> ReadRequest:
    """A ReadRequest with a long visibility timeout unless a test needs redelivery."""
    return ReadRequest(stream, group, consumer, count=count, visibility_timeout=visibility, **kw)


async def read_n(stream: Any, request: ReadRequest, n: int, *, tries: int = 20) -> list[Delivery]:
    """Read until ``n`` deliveries arrived (a read may return fewer than ``count``: rule 6)."""
    got: list[Delivery] = []
    for _ in range(tries):
        got.extend(await stream.read(request))
        if len(got) >= n:
            break
    return got


async def publish_n(stream: Any, n: int, name: str = "s") -> list[str]:
    return list(await stream.publish([Message(name, {"n": i}) for i in range(n)]))


async def test_publish_returns_one_id_per_message_in_order(stream: Any) -> None:
    """Stream rule 1: one id per message, in order, unique; empty publish returns []."""
    ids = await stream.publish([Message("s", {"n": 0}), Message("t", {"n": 1}), Message("s", {"n": 2})])
    assert len(ids) == 3 and ids[0] != ids[2], f"Stream rule 1: {ids} (unique within a stream)"
    assert all(isinstance(i, str) for i in ids)
    assert await stream.publish([]) == []
    got = await read_n(stream, req(count=5), 2)
    assert [d.id for d in got] == [ids[0], ids[2]], f"Stream rule 1: ids {ids} vs {got}"
    assert [d.message.body for d in got] == [{"n": 0}, {"n": 2}]


async def test_message_round_trip(stream: Any) -> None:
    """Stream rule 1: body and headers arrive as published; first delivery has count 1."""
    message = Message("s", {"x": [1, {"y": "é\"{}"}], "f": 0.5, "b": None}, {"trace": "abc", "k": "v"})
    [mid] = await stream.publish([message])
    [d] = await read_n(stream, req(), 1)
    assert (d.id, d.message, d.delivery_count, d.group) == (mid, message, 1, "g"), f"Stream rule 1: {d}"


async def test_group_created_late_sees_earlier_messages_and_groups_are_independent(stream: Any) -> None:
    """Stream rule 2: groups start at the beginning of the stream and are independent."""
    ids = await publish_n(stream, 3)
    a = await read_n(stream, req(group="a", count=3), 3)
    assert [d.id for d in a] == ids, f"Stream rule 2: group a got {a}"
    assert await stream.ack("s", "a", ids) == 3
    b = await read_n(stream, req(group="b", count=3), 3)
    assert [d.id for d in b] == ids, f"Stream rule 2: group b lost messages acked by a: {b}"
    assert await stream.backlog("s", "b") == 3 and await stream.backlog("s", "a") == 0


async def test_one_consumer_at_a_time_until_ack(stream: Any) -> None:
    """Stream rule 3: a pending message is not handed to a second consumer; ack removes it for
    good and a second ack returns 0."""
    [mid] = await publish_n(stream, 1)
    [d] = await read_n(stream, req(consumer="c1"), 1)
    assert await stream.read(req(consumer="c2")) == [], "Stream rule 3: delivered to two consumers"
    assert await stream.backlog("s", "g") == 1, "Stream rule 10: a pending message is backlog"
    assert await stream.ack("s", "g", [d.id]) == 1
    assert await stream.ack("s", "g", [d.id]) == 0, "Stream rule 3: acking twice returns 0"
    assert await stream.backlog("s", "g") == 0
    assert await stream.read(req(consumer="c2")) == [], "Stream rule 3: an acked message came back"
    assert d.id == mid


async def test_concurrent_consumers_share_without_duplicates(stream: Any, make_provider: Any) -> None:
    """Stream rule 3: within a group each message goes to one consumer at a time."""
    other = await make_provider("stream")
    ids = await publish_n(stream, 20)
    seen: list[str] = []

    async def consume(s: Any, name: str) -> None:
        for _ in range(15):
            got = await s.read(req(consumer=name, count=3))
            seen.extend(d.id for d in got)

    async with anyio.create_task_group() as tg:
        for i, s in enumerate([stream, other, stream, other]):
            tg.start_soon(consume, s, f"c{i}")
    assert sorted(seen) == sorted(ids), f"Stream rule 3: duplicates or losses: {sorted(seen)}"


async def test_unacked_message_is_redelivered_after_visibility_timeout(stream: Any) -> None:
    """Stream rule 4: a delivery not acked within the visibility timeout is redelivered with
    delivery_count + 1 and the same id, to any consumer."""
    [mid] = await publish_n(stream, 1)
    short = timedelta(milliseconds=300)
    [first] = await read_n(stream, req(consumer="dies", visibility=short), 1)
    assert await stream.read(req(consumer="c2", visibility=short)) == [], "Stream rule 4: too early"
    await anyio.sleep(0.6)
    again = await read_n(stream, req(consumer="c2", visibility=short), 1)
    assert [(d.id, d.delivery_count) for d in again] == [(mid, 2)], f"Stream rule 4: {again}"
    assert first.delivery_count == 1
    assert await stream.ack("s", "g", [mid]) == 1


async def test_publish_order(stream: Any) -> None:
    """Stream rule 5: first deliveries follow publish order."""
    ids = await publish_n(stream, 12)
    got: list[Delivery] = []
    for count in (1, 4, 2, 5):
        got.extend(await read_n(stream, req(count=count), count))
    assert [d.id for d in got] == ids, "Stream rule 5: out of order"
    assert [d.message.body["n"] for d in got] == list(range(12))


async def test_non_blocking_read_on_empty_returns_at_once(stream: Any) -> None:
    """Stream rule 6: block=0 returns at once, possibly with nothing."""
    with anyio.fail_after(2):
        assert await stream.read(req()) == []


async def test_count_bounds_the_read(stream: Any) -> None:
    """Stream rule 6: at most ``count`` deliveries per read."""
    await publish_n(stream, 5)
    got = await stream.read(req(count=2))
    assert 1 <= len(got) <= 2, f"Stream rule 6: count=2 returned {len(got)}"


async def test_blocking_read_is_woken_by_publish(stream: Any, make_provider: Any) -> None:
    """Stream rule 6: a blocking read returns soon after a publish (from another connection),
    well before ``block`` runs out."""
    publisher = await make_provider("stream")
    await stream.read(req())  # create the group first
    got: list[Delivery] = []
    elapsed = 0.0

    async def reader() -> None:
        nonlocal elapsed
        start = anyio.current_time()
        got.extend(await stream.read(req(block=timedelta(seconds=20))))
        elapsed = anyio.current_time() - start

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.3)
            await publisher.publish([Message("s", {"wake": True})])
    assert [d.message.body for d in got] == [{"wake": True}], f"Stream rule 6: {got}"
    assert elapsed < 10, f"Stream rule 6: the blocking read took {elapsed:.1f}s of its 20s block"


async def test_max_deliveries_moves_to_dead_letters(stream: Any) -> None:
    """Stream rule 7: the delivery that would exceed max_deliveries goes to dead letters."""
    [mid] = await publish_n(stream, 1)
    short = timedelta(milliseconds=200)
    r = req(visibility=short, max_deliveries=2)
    counts: list[int] = []
    for _ in range(2):
        got = await read_n(stream, r, 1)
        counts.extend(d.delivery_count for d in got)
        await anyio.sleep(0.4)
    assert counts == [1, 2], f"Stream rule 4: delivery counts {counts}"
    assert await stream.read(r) == [], "Stream rule 7: delivered beyond max_deliveries"
    dead = await stream.dead_letters("s", "g")
    assert [(d.id, d.error, d.group) for d in dead] == [(mid, "max deliveries exceeded", "g")], (
        f"Stream rule 7: {dead}"
    )
    assert dead[0].message.body == {"n": 0} and dead[0].delivery_count == 2
    assert await stream.backlog("s", "g") == 0, "Stream rule 7: a dead letter is still pending"


async def test_dead_letter_acks_and_lists_oldest_first(stream: Any) -> None:
    """Stream rule 8: dead_letter acks the delivery; dead_letters lists oldest first, limited."""
    await publish_n(stream, 3)
    got = await read_n(stream, req(count=3), 3)
    for d in got:
        await stream.dead_letter(d, f"boom {d.message.body['n']}")
    dead = await stream.dead_letters("s", "g")
    assert [d.error for d in dead] == ["boom 0", "boom 1", "boom 2"], f"Stream rule 8: {dead}"
    assert [d.id for d in dead] == [d.id for d in got]
    assert len(await stream.dead_letters("s", "g", limit=2)) == 2
    assert await stream.ack("s", "g", [d.id for d in got]) == 0, "Stream rule 8: not acked"
    assert await stream.backlog("s", "g") == 0
    assert await stream.dead_letters("s", "other") == [], "Stream rule 8: dead letters are per group"


async def test_release_makes_pending_deliverable_now(stream: Any) -> None:
    """Stream rule 9: release hands a pending delivery back; the next read counts the delivery."""
    [mid, done] = await publish_n(stream, 2)
    await read_n(stream, req(consumer="c1", count=2), 2)
    await stream.ack("s", "g", [done])
    assert await stream.release("s", "g", [mid]) == 1
    assert await stream.release("s", "g", [done]) == 0, "Stream rule 9: released an acked id"
    got = await read_n(stream, req(consumer="c2"), 1)
    assert [(d.id, d.delivery_count) for d in got] == [(mid, 2)], f"Stream rule 9: {got}"


@requires(Capability.STREAM_DELAY)
async def test_release_with_delay_defers_redelivery(stream: Any) -> None:
    """Stream rule 9: with STREAM_DELAY a delayed release is not deliverable before the delay."""
    [mid] = await publish_n(stream, 1)
    await read_n(stream, req(), 1)
    assert await stream.release("s", "g", [mid], delay=timedelta(milliseconds=700)) == 1
    assert await stream.read(req(consumer="c2")) == [], "Stream rule 9: delivered before the delay"
    await anyio.sleep(1.0)
    got = await read_n(stream, req(consumer="c2"), 1)
    assert [(d.id, d.delivery_count) for d in got] == [(mid, 2)], f"Stream rule 9: {got}"


@forbids(Capability.STREAM_DELAY)
async def test_release_delay_without_capability_raises(stream: Any) -> None:
    """Stream rule 9: a delay without STREAM_DELAY raises CapabilityNotSupportedError."""
    [mid] = await publish_n(stream, 1)
    await read_n(stream, req(), 1)
    with pytest.raises(CapabilityNotSupportedError):
        await stream.release("s", "g", [mid], delay=timedelta(seconds=1))


async def test_length_backlog_and_trim_keep_unacked(stream: Any) -> None:
    """Stream rule 10: length, backlog; trim removes only messages every group acked."""
    ids = await publish_n(stream, 6)
    a = await read_n(stream, req(group="a", count=6), 6)
    await stream.ack("s", "a", [d.id for d in a[:4]])
    b = await read_n(stream, req(group="b", count=2), 2)
    await stream.ack("s", "b", [d.id for d in b])
    assert await stream.length("s") == 6
    assert await stream.backlog("s", "a") == 2 and await stream.backlog("s", "b") == 4
    removed = await stream.trim("s", max_length=0)
    assert removed == 2, f"Stream rule 10: trim removed {removed}, only 2 are acked by every group"
    assert await stream.length("s") == 4
    rest_b = await read_n(stream, req(group="b", count=4), 4)
    assert [d.id for d in rest_b] == ids[2:], "Stream rule 10: trim dropped unacked messages"
    await stream.ack("s", "b", ids[2:])
    await stream.ack("s", "a", ids[4:])
    assert await stream.trim("s", max_length=1) == 3
    assert await stream.length("s") == 1


async def test_unacked_message_survives_trim_and_is_redelivered(stream: Any) -> None:
    """Stream rules 4 and 10: an unacked delivery is never dropped; it comes back."""
    [mid] = await publish_n(stream, 1)
    short = timedelta(milliseconds=200)
    await read_n(stream, req(visibility=short), 1)
    assert await stream.trim("s", max_length=0) == 0, "Stream rule 10: trimmed an unacked message"
    await anyio.sleep(0.4)
    again = await read_n(stream, req(consumer="c2", visibility=short), 1)
    assert [d.id for d in again] == [mid], "Stream rule 4: the unacked message was lost"


@requires(Capability.STREAM_EXTEND)
async def test_extend_keeps_a_delivery_being_worked_on_from_redelivery(stream: Any) -> None:
    """Stream rule 11: a delivery whose lease is renewed is not redelivered past its visibility
    timeout; once renewals stop it comes back (count + 1, same id) after the timeout."""
    assert isinstance(stream, ExtendingStream), "Stream rule 11: STREAM_EXTEND declared without extend()"
    [mid] = await publish_n(stream, 1)
    short = timedelta(milliseconds=600)
    [first] = await read_n(stream, req(consumer="busy", visibility=short), 1)
    for _ in range(5):  # 1.5 s of work, renewed every 0.3 s: 2.5 visibility timeouts
        await anyio.sleep(0.3)
        assert await stream.extend([first], visibility_timeout=short) == 1, "Stream rule 11: not renewed"
        assert await stream.read(req(consumer="c2", visibility=short)) == [], "Stream rule 11: redelivered while renewed"
    assert await stream.extend([], visibility_timeout=short) == 0
    await anyio.sleep(0.3)
    assert await stream.read(req(consumer="c2", visibility=short)) == [], "Stream rule 11: renewal cut short"
    again = await read_n(stream, req(consumer="c2", visibility=short, block=timedelta(seconds=1)), 1)
    assert [(d.id, d.delivery_count) for d in again] == [(mid, 2)], f"Stream rule 4 after 11: {again}"
    assert await stream.ack("s", "g", [mid]) == 1


@requires(Capability.STREAM_EXTEND)
async def test_extend_renews_only_the_current_delivery(stream: Any) -> None:
    """Stream rule 11: a lease lost to a redelivery stays lost, and an acked or dead-lettered
    delivery is not renewed (the fence is the delivery count); neither counts as a delivery."""
    [mid, dead] = await publish_n(stream, 2)
    short = timedelta(milliseconds=300)
    stale = await read_n(stream, req(consumer="slow", count=2, visibility=short), 2)
    await anyio.sleep(0.6)
    current = await read_n(stream, req(consumer="c2", count=2, visibility=LONG), 2)
    assert sorted((d.id, d.delivery_count) for d in current) == sorted([(mid, 2), (dead, 2)])
    assert await stream.extend(stale, visibility_timeout=LONG) == 0, "Stream rule 11: renewed a lost lease"
    assert await stream.extend(current, visibility_timeout=LONG) == 2
    by_id = {d.id: d for d in current}
    assert await stream.ack("s", "g", [mid]) == 1
    await stream.dead_letter(by_id[dead], "poison")
    assert await stream.extend(current, visibility_timeout=LONG) == 0, "Stream rule 11: renewed a settled delivery"
    assert await stream.backlog("s", "g") == 0
    [letter] = await stream.dead_letters("s", "g")
    assert (letter.id, letter.delivery_count) == (dead, 2), "Stream rule 11: extend counted as a delivery"
