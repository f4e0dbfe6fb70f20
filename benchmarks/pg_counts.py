#!/usr/bin/env python
"""PostgreSQL transactions and statements per MeshFlow workflow step (server-side counts).

Creates a private database ``hmcounts_<random>`` on the server (so ``pg_stat_database`` counts
nothing but this script; dropped at the end) and runs two phases there, each with a fresh
namespace, a MeshFlow worker and a client in this process on one connection:

- **A (work)**: open, 5 warm-up workflows, then ``N`` 1-activity workflows one after another
  (then ``M`` 5-activity ones in a second A phase), close.
- **B (idle)**: the same open, warm-up and close, but idle for as long as A's measured part took.

Every backend flushes its statistics when it exits, so after each phase closes its connections
the ``pg_stat_database`` deltas (``xact_commit``, ``xact_rollback``, ``tup_*``) are complete;
``(A - B) / N`` is what the workflows themselves cost: opening, migrating, warming up, the idle
safety polls and the background sweep cancel out. The statements the driver sent
(``psycopg.AsyncCursor.execute`` calls) are counted the same way. Run::

    python benchmarks/pg_counts.py                      # N = 200, M = 100
    python benchmarks/pg_counts.py --n 50 --m 20 --json benchmarks/results/pg-counts-<time>.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from hotmesh import MeshFlow, workflow
from hotmesh.config import HotMeshConfig
from hotmesh.connection import Connection

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
QUEUE = "counts"
STAT_COLUMNS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted", "tup_updated", "tup_deleted")


async def count_echo(value: Any) -> Any:
    return value


acts = workflow.proxy_activities([count_echo])


async def count_one(x: str) -> Any:
    return await acts.count_echo(x)


async def count_seq5(x: str) -> Any:
    value = x
    for _ in range(5):
        value = await acts.count_echo(value)
    return value


class Statements:
    """Counts ``AsyncCursor.execute`` calls (hotmesh-postgres: one statement per call)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = psycopg.AsyncCursor.execute

    def __enter__(self) -> Statements:
        original, me = self._original, self

        async def execute(cur: Any, *args: Any, **kwargs: Any) -> Any:
            me.count += 1
            return await original(cur, *args, **kwargs)

        psycopg.AsyncCursor.execute = execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        psycopg.AsyncCursor.execute = self._original  # type: ignore[method-assign]


def _with_db(url: str, dbname: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{dbname}"))


async def _stats(url: str, dbname: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            f"SELECT {', '.join(STAT_COLUMNS)} FROM pg_stat_database WHERE datname = %s", (dbname,)
        )
        row = await cur.fetchone()
        await conn.execute("SELECT pg_stat_clear_snapshot()")
    assert row is not None
    return dict(zip(STAT_COLUMNS, (int(v) for v in row), strict=True))


async def _phase(db_url: str, admin_url: str, dbname: str, shape: str, n: int, idle_for: float | None) -> dict[str, Any]:
    """One phase in a fresh namespace; returns the server and driver deltas and the run time."""
    namespace = f"hmcounts_{uuid.uuid4().hex[:8]}"
    before = await _stats(admin_url, dbname)
    with Statements() as statements:
        small = {role: {"pool_max_size": 3} for role in ("store", "stream", "sub", "search")}  # a shared server
        conn = await Connection(HotMeshConfig(url=db_url, namespace=namespace, options=small)).open()
        try:
            await MeshFlow.Worker.create(connection=conn, task_queue=QUEUE, workflow=[count_one, count_seq5], concurrency=10)
            client = MeshFlow.Client(conn)

            async def run_one(i: int) -> None:
                handle = await client.workflow.start(workflow_name=shape, args=[f"x{i}"], task_queue=QUEUE, workflow_id=f"{shape}-{uuid.uuid4().hex}")
                await handle.result(timeout=60)

            for i in range(5):
                await run_one(i)
            begin = time.perf_counter()
            if idle_for is None:
                for i in range(n):
                    await run_one(i)
            else:
                await asyncio.sleep(idle_for)
            elapsed = time.perf_counter() - begin
        finally:
            await MeshFlow.shutdown(grace=2.0)
            with contextlib.suppress(Exception):
                for provider in (conn.store, conn.stream, conn.sub):
                    await provider.purge()
            await conn.aclose()
    await asyncio.sleep(1.0)  # backends report their statistics on exit
    after = await _stats(admin_url, dbname)
    return {"elapsed_s": elapsed, "statements": statements.count, **{k: after[k] - before[k] for k in STAT_COLUMNS}}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    dbname = f"hmcounts_{uuid.uuid4().hex[:8]}"
    admin = await psycopg.AsyncConnection.connect(args.url, autocommit=True)
    await admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
    db_url = _with_db(args.url, dbname)
    shapes: dict[str, Any] = {}
    try:
        for shape, n, activities in (("count_one", args.n, 1), ("count_seq5", args.m, 5)):
            work = await _phase(db_url, args.url, dbname, shape, n, None)
            idle = await _phase(db_url, args.url, dbname, shape, n, work["elapsed_s"])
            net = {k: work[k] - idle[k] for k in ("statements", *STAT_COLUMNS)}
            shapes[shape] = {
                "workflows": n,
                "activities": activities,
                "work": work,
                "idle": idle,
                "per_workflow": {k: round(v / n, 2) for k, v in net.items()},
            }
            print(f"{shape}: {n} workflows in {work['elapsed_s']:.1f} s; per workflow "
                  + ", ".join(f"{k} {v}" for k, v in shapes[shape]["per_workflow"].items()), flush=True)
    finally:
        await admin.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(dbname)))
        await admin.close()
    one, five = shapes["count_one"]["per_workflow"], shapes["count_seq5"]["per_workflow"]
    extra = {k: round((five[k] - one[k]) / 4, 2) for k in one}
    print("per extra activity: " + ", ".join(f"{k} {v}" for k, v in extra.items()), flush=True)
    return {
        "bench": "pg_counts",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {tuple(round(x, 2) for x in os.getloadavg())}",
        "url": args.url,
        "shapes": shapes,
        "per_extra_activity": extra,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="a server where CREATE DATABASE is allowed")
    parser.add_argument("--n", type=int, default=200, help="1-activity workflows")
    parser.add_argument("--m", type=int, default=100, help="5-activity workflows")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
