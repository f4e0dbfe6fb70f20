"""Expired rows are invisible at once and removed by a bounded sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from conftest import requires_server

from hotmesh.providers import Message, NewJob, Transition, TransitionStatus, Waiter
from hotmesh_postgres import PostgresStore

pytestmark = [pytest.mark.anyio, requires_server]


async def test_sweep_is_bounded_and_removes_expired_rows(url: str, namespace: str) -> None:
    options = {"sweep_interval": 0, "sweep_limit": 3}
    async with PostgresStore(url, namespace=namespace, options=options) as store:
        for i in range(5):
            await store.create_job(NewJob(f"j{i}", {"i": i}, expire=timedelta(milliseconds=200)))
            await store.apply_transition(Transition(f"j{i}", "s", set={"x": 1}))
        await store.create_job(NewJob("keep", {"k": 1}))
        await store.set_cached("c", 1, ttl=timedelta(milliseconds=200))
        await asyncio.sleep(0.3)
        assert await store.get_job("j0") is None, "expired rows are absent before any sweep"
        assert (await store.apply_transition(Transition("j0", "s2"))).status is (
            TransitionStatus.REJECTED
        )
        assert await store.sweep() == 4  # 3 jobs (the limit) + 1 cache row
        assert await store.sweep() == 2
        assert await store.sweep() == 0
        assert await store.get_job("keep") == {"k": 1}
        assert (await store.create_job(NewJob("j0"))).created, "an expired id may be reused"
        assert (await store.apply_transition(Transition("j0", "s"))).status is (
            TransitionStatus.APPLIED
        ), "old step records went with the expired job"
        await store.purge()


async def _backlog(url: str, namespace: str, jobs: int, *, live: int = 0) -> None:
    """``jobs`` expired jobs with two step records and a waiter each, plus ``live`` live jobs."""
    s = f'"hotmesh_{namespace}"'
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            f"INSERT INTO {s}.jobs (job_id, fields, expires_at) SELECT 'x' || i, '{{}}',"
            " now() - interval '1 minute' FROM generate_series(1, %s) i",
            (jobs,),
        )
        await conn.execute(
            f"INSERT INTO {s}.steps (job_id, step) SELECT 'x' || i, st"
            " FROM generate_series(1, %s) i, (VALUES ('a'), ('b')) v(st)",
            (jobs,),
        )
        await conn.execute(
            f"INSERT INTO {s}.waiters (signal_id, job_id, step, message)"
            " SELECT 'sig' || i, 'x' || i, 'w', '{}' FROM generate_series(1, %s) i",
            (jobs,),
        )
        await conn.execute(
            f"INSERT INTO {s}.jobs (job_id) SELECT 'live' || i FROM generate_series(1, %s) i",
            (live,),
        )


async def _counts(url: str, namespace: str) -> tuple[int, int, int]:
    s = f'"hotmesh_{namespace}"'
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT (SELECT count(*) FROM {s}.jobs), (SELECT count(*) FROM {s}.steps),"
            f" (SELECT count(*) FROM {s}.waiters)"
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


async def test_a_backlog_is_swept_in_bounded_batches(url: str, namespace: str) -> None:
    """Each batch deletes at most sweep_limit jobs (one short transaction); a round keeps going
    while batches come back full, so a backlog drains; steps and waiters go with their jobs."""
    options = {"sweep_interval": 0, "sweep_limit": 200}
    async with PostgresStore(url, namespace=namespace, options=options) as store:
        await _backlog(url, namespace, 1_150, live=5)
        assert await store.sweep() == 200, "one batch is bounded by sweep_limit"
        assert await _counts(url, namespace) == (955, 1_900, 950)
        assert await store.sweep_backlog(max_batches=2) == 400, "a round is bounded too"
        assert await store.sweep_backlog() == 550, "a round drains the rest in batches"
        assert await _counts(url, namespace) == (5, 0, 0), "only the live jobs remain"
        assert await store.sweep_backlog() == 0
        await store.purge()


async def test_sweep_skips_rows_a_transaction_holds(url: str, namespace: str) -> None:
    """SKIP LOCKED: a sweep never waits for a row lock; the held row goes on a later sweep."""
    options = {"sweep_interval": 0, "sweep_limit": 10}
    async with PostgresStore(url, namespace=namespace, options=options) as store:
        await _backlog(url, namespace, 3)
        async with await psycopg.AsyncConnection.connect(url) as holder:
            await holder.execute(
                f'SELECT 1 FROM "hotmesh_{namespace}".jobs WHERE job_id = %s FOR UPDATE', ("x1",)
            )
            assert await asyncio.wait_for(store.sweep(), 5) == 2, "the held job is skipped"
            await holder.rollback()
        assert await store.sweep() == 1
        assert await _counts(url, namespace) == (0, 0, 0)
        await store.purge()


async def test_background_sweep_drains_a_backlog(url: str, namespace: str) -> None:
    options = {"sweep_interval": 0.2, "sweep_limit": 100}
    async with PostgresStore(url, namespace=namespace, options=options) as store:
        await _backlog(url, namespace, 1_000, live=1)
        deadline = asyncio.get_running_loop().time() + 10
        while (counts := await _counts(url, namespace)) != (1, 0, 0):
            assert asyncio.get_running_loop().time() < deadline, f"still {counts}"
            await asyncio.sleep(0.1)
        await store.purge()


async def test_delete_job_removes_its_waiters(url: str, namespace: str) -> None:
    async with PostgresStore(url, namespace=namespace, options={"sweep_interval": 0}) as store:
        await store.create_job(NewJob("j"))
        await store.add_waiter("sig", Waiter("j", "s1", Message("q", {"a": 1})))
        assert await store.delete_job("j")
        assert await store.deliver_signal("sig", 1, delivery_id="d1") == []
        await store.purge()


async def test_the_sweep_vacuums_the_namespace_when_autovacuum_is_off(url: str, namespace: str) -> None:
    """Without autovacuum (the shared CI server runs so) dead row versions pile up for ever: the
    store VACUUMs its own tables, one process at a time. ``force`` does it whatever the setting."""
    async with PostgresStore(url, namespace=namespace, options={"sweep_interval": 0}) as store:
        await store.create_job(NewJob("j", {"n": 0}))
        for i in range(20):
            await store.apply_transition(Transition("j", f"s{i}", increment={"n": 1}))
        assert await store.vacuum_if_autovacuum_is_off(force=True) is True
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE schemaname = %s AND last_vacuum IS NOT NULL",
                (f"hotmesh_{namespace}",),
            )
            vacuumed = {r[0] for r in await cur.fetchall()}
            cur = await conn.execute(
                "SELECT reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = 'jobs'",
                (f"hotmesh_{namespace}",),
            )
            row = await cur.fetchone()
        assert {"jobs", "steps", "deliveries"} <= vacuumed, vacuumed
        assert row is not None and "fillfactor=80" in (row[0] or []), "migration v5 (jobs fillfactor)"
        await store.purge()
