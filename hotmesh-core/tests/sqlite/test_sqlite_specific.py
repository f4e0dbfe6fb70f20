"""Behaviour specific to the SQLite providers: durability, one file, wake-ups, outbox."""

from __future__ import annotations

import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from hotmesh.backends.sqlite import SqliteSearch, SqliteStore, SqliteStream, SqliteSub
from hotmesh.errors import SerializationError
from hotmesh.providers import (
    Condition,
    FieldType,
    IndexSpec,
    Message,
    NewJob,
    Op,
    Query,
    ReadRequest,
    SearchField,
    Transition,
    TransitionStatus,
)


@pytest.mark.anyio
async def test_data_survives_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/d.db"
    async with SqliteStore(url, namespace="t_d") as store, SqliteStream(url, namespace="t_d") as s:
        await store.create_job(NewJob("j", {"a": 1}))
        await s.publish([Message("q", {"x": 1})])
    async with SqliteStore(url, namespace="t_d") as store, SqliteStream(url, namespace="t_d") as s:
        assert await store.get_job("j") == {"a": 1}
        assert [d.message.body for d in await s.read(ReadRequest("q", "g", "c"))] == [{"x": 1}]


@pytest.mark.anyio
async def test_outbox_only_on_the_same_file_and_namespace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    async with (
        SqliteStore(url, namespace="t_o") as store,
        SqliteStream(url, namespace="t_o") as same,
        SqliteStream(f"sqlite:///{tmp_path}/other.db", namespace="t_o") as other,
        SqliteStream(url, namespace="t_other") as other_ns,
    ):
        assert store.can_publish_to(same)
        assert not store.can_publish_to(other) and not store.can_publish_to(other_ns)
        await store.create_job(NewJob("j"))
        result = await store.apply_transition(
            Transition("j", "s1", set={"a": 1}, messages=(Message("q", {"n": 1}),)), stream=same
        )
        assert result.status is TransitionStatus.APPLIED and result.published
        assert await same.length("q") == 1
        # A transition with a bad message is rejected before any write: no field, no message.
        with pytest.raises(SerializationError):
            await store.apply_transition(
                Transition("j", "s2", set={"b": 1}, messages=(Message("q", {"n": object()}),)),  # type: ignore[dict-item]
                stream=same,
            )
        assert await store.get_job("j") == {"a": 1} and await same.length("q") == 1
        for provider in (store, same, other, other_ns):
            await provider.purge()


@pytest.mark.anyio
async def test_expired_job_frees_its_id_and_steps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    async with SqliteStore(url, namespace="t_e") as store:
        assert (await store.create_job(NewJob("j", expire=timedelta(milliseconds=50)))).created
        await store.apply_transition(Transition("j", "s1", set={"a": 1}))
        await anyio.sleep(0.1)
        assert await store.get_job("j") is None
        assert (await store.create_job(NewJob("j"))).created
        result = await store.apply_transition(Transition("j", "s1", set={"a": 2}))
        assert result.status is TransitionStatus.APPLIED  # the old step record went with the job
        await store.purge()


PUBLISHER = """
import sys, anyio
from hotmesh.backends.sqlite import SqliteStream, SqliteSub
from hotmesh.providers import Message
async def main():
    async with SqliteStream(sys.argv[1], namespace="t_x") as s, SqliteSub(sys.argv[1], namespace="t_x") as p:
        await s.publish([Message("q", {"from": "other"})])
        await p.publish("topic", {"from": "other"})
anyio.run(main)
"""


@pytest.mark.anyio
async def test_blocked_readers_see_other_processes_within_a_poll(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    options = {"poll_interval_ms": 20}
    async with (
        SqliteStream(url, namespace="t_x", options=options) as stream,
        SqliteSub(url, namespace="t_x", options=options) as sub,
    ):
        subscription = await sub.subscribe("topic")
        await stream.read(ReadRequest("q", "g", "c"))  # create the group
        proc = await anyio.open_process([sys.executable, "-c", PUBLISHER, url])
        started = time.monotonic()
        deliveries = await stream.read(ReadRequest("q", "g", "c", block=timedelta(seconds=20)))
        assert [d.message.body for d in deliveries] == [{"from": "other"}]
        message = await subscription.get(timeout=20)
        assert message is not None and message.payload == {"from": "other"}
        assert time.monotonic() - started < 20
        assert await proc.wait() == 0
        await subscription.aclose()
        await stream.purge()
        await sub.purge()


@pytest.mark.anyio
async def test_same_process_publish_wakes_reader_without_waiting_for_a_poll(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    async with SqliteStream(url, namespace="t_w", options={"poll_interval_ms": 5000}) as stream:
        await stream.read(ReadRequest("q", "g", "c"))
        elapsed: list[float] = []

        async def reader() -> None:
            started = time.monotonic()
            found = await stream.read(ReadRequest("q", "g", "c", block=timedelta(seconds=10)))
            elapsed.append(time.monotonic() - started)
            assert len(found) == 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await anyio.sleep(0.1)
            await stream.publish([Message("q", {})])
        assert elapsed[0] < 2.0  # far below the 5 s poll: woken by the in-process notifier
        await stream.purge()


@pytest.mark.anyio
async def test_fts_values_are_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    async with SqliteSearch(url, namespace="t_s") as search:
        await search.create_index(
            IndexSpec("i", (SearchField("t", FieldType.TEXT), SearchField("g", FieldType.TAG)))
        )
        await search.upsert("i", "a", {"t": "alpha NEAR beta", "g": "x' OR 1=1 --"})
        await search.upsert("i", "b", {"t": "gamma", "g": "y"})
        for text in ['"', "alpha OR gamma", "NEAR(alpha beta)", "t:alpha", "*", "alp*", "-gamma"]:
            result = await search.query(Query("i", where=Condition("t", Op.MATCH, text)))
            # Words only: "-gamma" is the word gamma (not a negation), "OR" a word to find.
            expected = {"NEAR(alpha beta)": 1, "-gamma": 1}.get(text, 0)
            assert result.total == expected, text
        tag = await search.query(Query("i", where=Condition("g", Op.EQ, "x' OR 1=1 --")))
        assert [h.doc_id for h in tag.hits] == ["a"]
        await search.purge()
        assert await search.is_empty()


@pytest.mark.anyio
async def test_expired_rows_are_swept_lazily(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sweep.db"
    async with SqliteStore(url, namespace="t_sw") as store:
        for i in range(10):
            await store.create_job(NewJob(f"old{i}", expire=timedelta(milliseconds=1)))
            await store.set_cached(f"k{i}", i, ttl=timedelta(milliseconds=1))
        await anyio.sleep(0.05)
        for i in range(70):  # past the sweep period of job creations and cache writes
            await store.create_job(NewJob(f"new{i}"))
            await store.set_cached(f"n{i}", i, ttl=None)

        def count(conn: sqlite3.Connection) -> tuple[int, int]:
            jobs = conn.execute("SELECT COUNT(*) FROM hm_jobs WHERE job_id LIKE 'old%'").fetchone()
            cache = conn.execute("SELECT COUNT(*) FROM hm_cache WHERE key LIKE 'k%'").fetchone()
            return int(jobs[0]), int(cache[0])

        assert await store._db.read(count) == (0, 0)
        await store.purge()
