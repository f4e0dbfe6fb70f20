"""Schema: migrations under an advisory lock, many processes at once, purge drops the schema."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psycopg
import pytest
from conftest import requires_server

from hotmesh.providers import Message, NewJob
from hotmesh_postgres import PostgresSearch, PostgresStore, PostgresStream, PostgresSub
from hotmesh_postgres._schema import LATEST_VERSION, SchemaNames, current_version

pytestmark = [pytest.mark.anyio, requires_server]


async def _version(url: str, namespace: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await current_version(conn, SchemaNames.for_namespace(namespace))


async def test_concurrent_first_open_migrates_once(url: str, namespace: str) -> None:
    stores = [PostgresStore(url, namespace=namespace) for _ in range(8)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert await _version(url, namespace) == LATEST_VERSION
        results = await asyncio.gather(*(s.create_job(NewJob("j")) for s in stores))
        assert sum(r.created for r in results) == 1
    finally:
        await asyncio.gather(*(s.aclose() for s in stores))


def test_concurrent_processes_migrate(url: str, namespace: str) -> None:
    """Several processes start at once: the advisory lock serializes their migrations."""
    cmd = [sys.executable, "-m", "hotmesh_postgres", "migrate", url, "--namespace", namespace]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert sum("applied 1" in o for o in outs) == 1, outs


async def test_purge_drops_schema_when_every_role_is_empty(url: str, namespace: str) -> None:
    async with (
        PostgresStore(url, namespace=namespace) as store,
        PostgresStream(url, namespace=namespace) as stream,
    ):
        await store.create_job(NewJob("j"))
        await stream.publish([Message("s", {"a": 1})])
        await store.purge()
        assert await store.is_empty()
        assert not await stream.is_empty(), "purging the store must keep stream data"
        assert await _version(url, namespace) == LATEST_VERSION
        await stream.purge()
        assert await _version(url, namespace) == 0, "schema should be dropped"
        # providers still open re-create the schema on their next call
        assert (await store.create_job(NewJob("j2"))).created
        assert await store.get_job("j2") == {}
        await store.purge()
        for cls in (PostgresSub, PostgresSearch):
            async with cls(url, namespace=namespace) as other:
                assert await other.is_empty()


async def test_namespaces_are_isolated(url: str, namespace: str) -> None:
    other = namespace + "_b"
    try:
        async with (
            PostgresStore(url, namespace=namespace) as a,
            PostgresStore(url, namespace=other) as b,
        ):
            await a.create_job(NewJob("j", {"x": 1}))
            assert await b.get_job("j") is None
            assert (await b.create_job(NewJob("j"))).created
            await b.purge()
            await a.purge()
    finally:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f'DROP SCHEMA IF EXISTS "hotmesh_{other}" CASCADE')


def test_cli_status_and_migrate(url: str, namespace: str) -> None:
    run = [sys.executable, "-m", "hotmesh_postgres"]
    out = subprocess.run([*run, "status", url, "--namespace", namespace],
                         capture_output=True, text=True, check=True).stdout
    assert "schema version 0" in out
    out = subprocess.run([*run, "migrate", url, "--namespace", namespace],
                         capture_output=True, text=True, check=True).stdout
    assert f"schema version {LATEST_VERSION}" in out
    bad = subprocess.run([*run, "status", "postgresql://u:pw@127.0.0.1:1/x"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "pw" not in bad.stderr


def test_hotmesh_cli_migrate_then_provider_status(url: str, namespace: str) -> None:
    """``python -m hotmesh migrate --url`` runs this provider's migrations; status agrees."""
    out = subprocess.run(
        [sys.executable, "-m", "hotmesh", "migrate", "--url", url, "--namespace", namespace],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "ready" in out.stdout and "postgres" in out.stdout
    status = subprocess.run(
        [sys.executable, "-m", "hotmesh_postgres", "status", "--url", url, "--namespace", namespace],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert f"schema version {LATEST_VERSION} (up to date)" in status
    again = subprocess.run(
        [sys.executable, "-m", "hotmesh_postgres", "migrate", "--url", url, "--namespace", namespace],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    assert "applied none (up to date)" in again
    both = subprocess.run(
        [sys.executable, "-m", "hotmesh_postgres", "status", url, "--url", url],
        capture_output=True, text=True, timeout=60,
    )
    assert both.returncode == 2 and "once" in both.stderr
