"""NatsStream against the Stream rules (until the conformance kit covers them)."""

from __future__ import annotations

import time
from datetime import timedelta

import anyio
import pytest

from hotmesh.errors import SerializationError
from hotmesh.providers import Message, ReadRequest
from hotmesh_nats.stream import NatsStream

pytestmark = pytest.mark.anyio
VIS = timedelta(seconds=1)


def req(count: int = 10, **kw: object) -> ReadRequest:
    return ReadRequest("q", "g", "c1", count=count, visibility_timeout=VIS, **kw)  # type: ignore[arg-type]


async def test_publish_read_ack_in_order(stream: NatsStream) -> None:
    """Rules 1, 2, 3, 5."""
    ids = await stream.publish([Message("q", {"i": i}, {"h": "v"}) for i in range(5)])
    assert len(ids) == 5
    got = await stream.read(req())
    assert [d.id for d in got] == ids
    assert [d.message.body["i"] for d in got] == list(range(5))
    assert got[0].message.headers == {"h": "v"} and got[0].delivery_count == 1
    assert await stream.ack("q", "g", ids) == 5
    assert await stream.ack("q", "g", ids) == 0
    assert await stream.backlog("q", "g") == 0
    assert await stream.length("q") == 5
    other = await stream.read(ReadRequest("q", "g2", "c", count=10))
    assert [d.id for d in other] == ids  # rule 2: groups are independent


async def test_bad_body_writes_nothing(stream: NatsStream) -> None:
    """Bad input is rejected before the first write."""
    with pytest.raises(SerializationError):
        await stream.publish([Message("q", {"ok": 1}), Message("q", {"bad": object()})])  # type: ignore[dict-item]
    assert await stream.length("q") == 0


async def test_visibility_timeout_redelivers(stream: NatsStream) -> None:
    """Rule 4."""
    [mid] = await stream.publish([Message("q", {"x": 1})])
    assert [d.id for d in await stream.read(req())] == [mid]
    assert await stream.read(req()) == []
    await anyio.sleep(1.3)
    again = await stream.read(req())
    assert [(d.id, d.delivery_count) for d in again] == [(mid, 2)]


async def test_block_wakes_on_publish(stream: NatsStream) -> None:
    """Rule 6."""
    async def later() -> None:
        await anyio.sleep(0.3)
        await stream.publish([Message("q", {"late": True})])

    async with anyio.create_task_group() as tg:
        tg.start_soon(later)
        start = time.monotonic()
        got = await stream.read(req(block=timedelta(seconds=5)))
    assert len(got) == 1 and time.monotonic() - start < 2
    start = time.monotonic()
    assert await stream.read(req(block=timedelta(seconds=0.4))) == []
    assert 0.3 < time.monotonic() - start < 2


async def test_max_deliveries_dead_letters(stream: NatsStream) -> None:
    """Rules 7, 8."""
    [mid] = await stream.publish([Message("q", {"x": 1})])
    assert len(await stream.read(req(max_deliveries=1))) == 1
    await anyio.sleep(1.3)
    assert await stream.read(req(max_deliveries=1)) == []
    [dead] = await stream.dead_letters("q", "g")
    assert dead.id == mid and dead.error == "max deliveries exceeded" and dead.delivery_count == 1
    assert await stream.backlog("q", "g") == 0
    [mid2] = await stream.publish([Message("q", {"y": 2})])
    [d] = await stream.read(req())
    await stream.dead_letter(d, "boom")
    letters = await stream.dead_letters("q", "g")
    assert [(x.id, x.error) for x in letters] == [(mid, "max deliveries exceeded"), (mid2, "boom")]


async def test_release_now_and_delayed(stream: NatsStream) -> None:
    """Rule 9."""
    [mid] = await stream.publish([Message("q", {"x": 1})])
    [d] = await stream.read(req())
    assert await stream.release("q", "g", [mid]) == 1
    [d2] = await stream.read(req())
    assert d2.delivery_count == 2
    assert await stream.release("q", "g", [mid], delay=timedelta(seconds=0.5)) == 1
    assert await stream.read(req()) == []
    start = time.monotonic()
    [d3] = await stream.read(req(block=timedelta(seconds=3)))
    assert d3.id == mid and time.monotonic() - start < 1.5


async def test_trim_keeps_unacked(stream: NatsStream) -> None:
    """Rule 10."""
    ids = await stream.publish([Message("q", {"i": i}) for i in range(6)])
    got = await stream.read(req(count=3))
    await stream.ack("q", "g", [got[0].id, got[1].id])
    assert await stream.trim("q", max_length=0) == 2
    assert await stream.length("q") == 4
    rest = await stream.read(req())
    await stream.ack("q", "g", [got[2].id] + [d.id for d in rest])
    assert await stream.trim("q", max_length=1) == 3
    assert await stream.length("q") == 1
    assert ids


async def test_ack_from_another_instance(stream: NatsStream, namespace: str) -> None:
    """Ack by id works from a process that did not read the message."""
    [mid] = await stream.publish([Message("q", {"x": 1})])
    await stream.read(req())
    async with NatsStream("nats://127.0.0.1:4222", namespace=namespace, options={}) as other:
        assert await other.ack("q", "g", [mid]) == 1
    assert await stream.backlog("q", "g") == 0


async def test_extend_is_fenced_per_process(stream: NatsStream, namespace: str) -> None:
    """Rule 11: a delivery read by another process is unknown here, so it is not renewed (the
    server's +WPI would renew whatever delivery is pending); its own reader still can."""
    [mid] = await stream.publish([Message("q", {"x": 1})])
    short = timedelta(milliseconds=500)
    [d] = await stream.read(ReadRequest("q", "g", "c1", visibility_timeout=short))
    async with NatsStream("nats://127.0.0.1:4222", namespace=namespace, options={}) as other:
        assert await other.extend([d], visibility_timeout=short) == 0
    assert await stream.extend([d, d], visibility_timeout=short) == 2, "each occurrence counts"
    await anyio.sleep(0.8)
    [again] = await stream.read(
        ReadRequest("q", "g", "c2", visibility_timeout=short, block=timedelta(seconds=1))
    )
    assert (again.id, again.delivery_count) == (mid, 2)
    assert await stream.extend([d], visibility_timeout=short) == 0, "renewed a lost lease"
    assert await stream.ack("q", "g", [mid]) == 1


async def test_extend_after_the_consumer_is_gone(stream: NatsStream, namespace: str) -> None:
    """Rule 11: when another process purged the namespace, the delivery is gone: 0, no error."""
    await stream.publish([Message("q", {"x": 1})])
    [d] = await stream.read(req())
    async with NatsStream("nats://127.0.0.1:4222", namespace=namespace, options={}) as other:
        await other.purge()
    assert await stream.extend([d], visibility_timeout=VIS) == 0


def test_delivery_count_of_ack_subjects() -> None:
    """Both ack subject layouts JetStream uses carry the delivery count; others give None."""
    from hotmesh_nats.stream import _delivered

    assert _delivered("$JS.ACK.hotmesh_t.c.3.7.9.1700000000000000000.0") == 3
    assert _delivered("$JS.ACK.dom.ACC.hotmesh_t.c.4.7.9.1700000000000000000.0.rnd") == 4
    assert _delivered("$JS.ACK.dom.ACC.hotmesh_t.c.5.7.9.1700000000000000000.0") == 5
    assert _delivered("_INBOX.abc") is None
    assert _delivered("$JS.ACK.hotmesh_t.c.x.7.9.1.0") is None
