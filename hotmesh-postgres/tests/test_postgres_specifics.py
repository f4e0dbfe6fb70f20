"""Behaviour the kit cannot see: outbox in one transaction, NOTIFY wake-ups, large payloads."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from conftest import requires_server

from hotmesh.providers import JSONValue, Message, NewJob, ReadRequest, Transition, TransitionStatus
from hotmesh_postgres import PostgresStore, PostgresStream, PostgresSub
from hotmesh_postgres._sub import MAX_INLINE_BYTES

pytestmark = [pytest.mark.anyio, requires_server]


async def test_outbox_only_for_same_database_and_namespace(url: str, namespace: str) -> None:
    async with (
        PostgresStore(url, namespace=namespace) as store,
        PostgresStream(url, namespace=namespace) as stream,
    ):
        other = PostgresStream(url, namespace=namespace + "x")
        elsewhere = PostgresStream("postgresql://postgres@10.0.0.1:5432/test", namespace=namespace)
        assert store.can_publish_to(stream)
        assert not store.can_publish_to(other)
        assert not store.can_publish_to(elsewhere)
        assert not store.can_publish_to(object())
        created = await store.create_job(NewJob("j", messages=(Message("q", {"n": 0}),)), stream=stream)
        assert created.published
        t = Transition("j", "1", increment={"n": 1}, messages=(Message("q", {"n": 1}),))
        first = await store.apply_transition(t, stream=stream)
        again = await store.apply_transition(t, stream=stream)
        assert first.status is TransitionStatus.APPLIED and first.published
        assert again.status is TransitionStatus.DUPLICATE and not again.published
        assert again.messages == t.messages, "re-emitted by the engine (Store rule 3)"
        got = await stream.read(ReadRequest("q", "g", "c", count=10))
        assert [d.message.body for d in got] == [{"n": 0}, {"n": 1}], "no duplicate enqueue"
        await store.purge()
        await stream.purge()


async def test_rejected_transition_enqueues_nothing(url: str, namespace: str) -> None:
    async with (
        PostgresStore(url, namespace=namespace) as store,
        PostgresStream(url, namespace=namespace) as stream,
    ):
        await store.create_job(NewJob("j", {"s": "a"}))
        t = Transition("j", "1", require={"s": "b"}, messages=(Message("q", {}),))
        assert (await store.apply_transition(t, stream=stream)).status is TransitionStatus.REJECTED
        assert await stream.length("q") == 0
        await store.purge()
        await stream.purge()


async def test_blocked_read_wakes_on_publish_from_another_provider(url: str, namespace: str) -> None:
    async with (
        PostgresStream(url, namespace=namespace, options={"poll_interval": 30}) as reader,
        PostgresStream(url, namespace=namespace) as writer,
    ):
        await reader.read(ReadRequest("q", "g", "c"))  # creates the group

        async def publish_later() -> float:
            await asyncio.sleep(0.3)
            await writer.publish([Message("q", {"x": 1})])
            return time.monotonic()

        task = asyncio.create_task(publish_later())
        got = await reader.read(ReadRequest("q", "g", "c", block=timedelta(seconds=10)))
        woke = time.monotonic()
        sent = await task
        assert [d.message.body for d in got] == [{"x": 1}]
        assert woke - sent < 0.5, "woken by NOTIFY, not by the 30 s safety poll"
        await reader.purge()


async def test_blocked_read_wakes_when_visibility_timeout_passes(url: str, namespace: str) -> None:
    async with PostgresStream(url, namespace=namespace, options={"poll_interval": 30}) as s:
        await s.publish([Message("q", {})])
        first = await s.read(ReadRequest("q", "g", "a", visibility_timeout=timedelta(seconds=0.5)))
        start = time.monotonic()
        again = await s.read(ReadRequest("q", "g", "b", block=timedelta(seconds=5)))
        assert again and again[0].id == first[0].id and again[0].delivery_count == 2
        assert time.monotonic() - start < 1.5
        await s.purge()


async def test_large_sub_payload_goes_by_reference(url: str, namespace: str) -> None:
    async with PostgresSub(url, namespace=namespace) as pub, PostgresSub(url, namespace=namespace) as sub:
        subscription = await sub.subscribe("big")
        big: dict[str, JSONValue] = {"blob": "é" * (MAX_INLINE_BYTES * 2), "n": 1}
        await pub.publish("big", {"small": True})
        await pub.publish("big", big)
        assert (await subscription.get(5)) is not None
        got = await subscription.get(5)
        assert got is not None and got.payload == big
        assert not await pub.is_empty()
        await subscription.aclose()
        await pub.purge()
        assert await pub.is_empty()
