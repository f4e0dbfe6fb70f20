"""Expired rows are invisible at once and removed by a bounded sweep."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from conftest import requires_server

from hotmesh.providers import NewJob, Transition, TransitionStatus
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
