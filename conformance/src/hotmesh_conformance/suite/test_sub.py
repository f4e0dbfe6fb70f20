"""Sub rules 1-5 (hotmesh/providers/sub.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from hotmesh.errors import CapabilityNotSupportedError
from hotmesh.providers import Capability, SubMessage
from hotmesh_conformance.helpers import forbids, new_namespace, requires

pytestmark = pytest.mark.anyio

WAIT = 5.0  # generous: a message that does arrive arrives long before this
QUIET = 0.4  # how long we wait to be convinced nothing arrives


async def test_subscriber_receives_in_publish_order(sub: Any, make_provider: Any) -> None:
    """Sub rule 1: after subscribe returns, messages from another connection arrive in order."""
    publisher = await make_provider("sub")
    subscription = await sub.subscribe("jobs.done")
    try:
        for i in range(10):
            await publisher.publish("jobs.done", {"i": i})
        got = [await subscription.get(WAIT) for _ in range(10)]
        assert [m and m.payload for m in got] == [{"i": i} for i in range(10)], f"Sub rule 1: {got}"
        assert all(isinstance(m, SubMessage) and m.topic == "jobs.done" for m in got)
    finally:
        await subscription.aclose()


async def test_nothing_is_stored(sub: Any) -> None:
    """Sub rule 1: a message published before anyone subscribed is gone."""
    await sub.publish("early", {"x": 1})
    subscription = await sub.subscribe("early")
    try:
        assert await subscription.get(QUIET) is None, "Sub rule 1: a message was stored"
    finally:
        await subscription.aclose()


async def test_other_topics_are_not_received(sub: Any) -> None:
    """Sub rule 1: only matching topics are received."""
    subscription = await sub.subscribe("a")
    try:
        await sub.publish("b", {"x": 1})
        await sub.publish("a", {"x": 2})
        got = await subscription.get(WAIT)
        assert got is not None and got.payload == {"x": 2}, f"Sub rule 1: {got}"
    finally:
        await subscription.aclose()


async def test_fan_out_to_every_subscription(sub: Any, make_provider: Any) -> None:
    """Sub rule 2: every open subscription (this process, other connections) gets each message."""
    other = await make_provider("sub")
    subs = [await sub.subscribe("t"), await sub.subscribe("t"), await other.subscribe("t")]
    try:
        await sub.publish("t", {"n": 1})
        for s in subs:
            got = await s.get(WAIT)
            assert got is not None and got.payload == {"n": 1}, f"Sub rule 2: {got}"
    finally:
        for s in subs:
            await s.aclose()


async def test_namespaces_do_not_hear_each_other(sub: Any, make_provider: Any) -> None:
    """Sub rule 1 with Provider rule 3: a topic in another namespace is another topic."""
    stranger = await make_provider("sub", namespace=new_namespace())
    subscription = await sub.subscribe("t")
    try:
        await stranger.publish("t", {"leak": True})
        assert await subscription.get(QUIET) is None, "Provider rule 3: heard another namespace"
    finally:
        await subscription.aclose()


@requires(Capability.SUB_PATTERNS)
async def test_pattern_subscription(sub: Any) -> None:
    """Sub rule 3: ``*`` stands for any run of characters."""
    subscription = await sub.subscribe("job.*.done", pattern=True)
    try:
        for topic in ("job.a.done", "other.a.done", "job.b.c.done", "job.x.failed"):
            await sub.publish(topic, {"topic": topic})
        first, second = await subscription.get(WAIT), await subscription.get(WAIT)
        topics = [m and m.topic for m in (first, second)]
        assert topics == ["job.a.done", "job.b.c.done"], f"Sub rule 3: {topics}"
        assert await subscription.get(QUIET) is None, "Sub rule 3: a non-matching topic arrived"
    finally:
        await subscription.aclose()


@forbids(Capability.SUB_PATTERNS)
async def test_pattern_without_capability_raises(sub: Any) -> None:
    """Sub rule 3: without SUB_PATTERNS, ``pattern=True`` raises CapabilityNotSupportedError."""
    with pytest.raises(CapabilityNotSupportedError):
        await sub.subscribe("job.*", pattern=True)


async def test_aclose_stops_delivery_and_ends_iteration(sub: Any) -> None:
    """Sub rule 4: after aclose() nothing more is received and ``async for`` ends."""
    subscription = await sub.subscribe("t")
    received: list[SubMessage] = []
    ended = anyio.Event()

    async def iterate() -> None:
        async for message in subscription:
            received.append(message)
        ended.set()

    with anyio.fail_after(WAIT * 2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(iterate)
            await sub.publish("t", {"n": 1})
            while not received:
                await anyio.sleep(0.01)
            await subscription.aclose()
            await subscription.aclose()  # idempotent
            await sub.publish("t", {"n": 2})
            await ended.wait()
    assert [m.payload for m in received] == [{"n": 1}], f"Sub rule 4: {received}"


async def test_payload_round_trip(sub: Any) -> None:
    """Sub rule 5: payloads arrive equal to what was published."""
    payload = {"s": "é \"q\" {b} @*|--;%", "n": [1, 2.5, None, True], "o": {"k": {"deep": []}}}
    subscription = await sub.subscribe("t")
    try:
        await sub.publish("t", payload)
        got = await subscription.get(WAIT)
        assert got is not None and got.payload == payload, f"Sub rule 5: {got}"
    finally:
        await subscription.aclose()
