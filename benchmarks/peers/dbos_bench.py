#!/usr/bin/env python
"""DBOS peer: the same three workflow shapes as ``meshflow_bench.py``, on PostgreSQL and SQLite.

``wf_one`` (1 step), ``wf_seq5`` (5 sequential steps), ``wf_par5`` (``asyncio.gather`` of 5
steps); every step an ``async def`` returning its argument. DBOS is a library: the workflows run in
this process, in two ways:

- *direct*: ``await wf(x)`` (the workflow runs in the caller's process and event loop);
- *queue*: ``await queue.enqueue_async(wf, x)`` then ``await handle.get_result()``; the queue is
  registered with ``polling_interval_sec`` (default here 0.01 s; DBOS's default is 1 s) and is
  served by this same process's queue thread (DBOS's model: the process that launched DBOS
  dequeues); ``get_result`` polls the workflow status at the same interval (its default is 1 s).

For each: start->result p50/p95 one at a time, and workflows/s with ``inflight`` started at once.
Backend operations: on PostgreSQL the ``pg_stat_database`` ``xact_commit`` delta of DBOS's private
database around sequential 1-step workflows, minus an idle window of the same length (DBOS's queue
thread and notification listener poll: shown apart as idle commits/s).

Run as a separate process per system database (DBOS is a process-wide singleton)::

    python benchmarks/peers/dbos_bench.py --url postgresql://postgres@127.0.0.1:5432/test --quick --json /tmp/d.json
    python benchmarks/peers/dbos_bench.py --url sqlite --quick

PostgreSQL: a private database ``hmbench_dbos_<random>`` is created and dropped at the end. SQLite: a
file in a temporary directory, removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _common import (  # noqa: E402
    counter_delta,
    create_database,
    drop_database,
    log,
    now_iso,
    package_versions,
    pct,
    pg_database_stats,
    uid,
    write_json,
)


@DBOS.step()
async def echo_step(x: Any) -> Any:
    return x


@DBOS.workflow()
async def wf_one(x: str) -> Any:
    return await echo_step(x)


@DBOS.workflow()
async def wf_seq5(x: str) -> Any:
    value = x
    for i in range(5):
        value = await echo_step(f"{value}.{i}" if i == 4 else value)
    return value


@DBOS.workflow()
async def wf_par5(x: str) -> Any:
    return list(await asyncio.gather(*(echo_step(f"{x}.{i}") for i in range(5))))


WORKFLOWS = {"wf_one": wf_one, "wf_seq5": wf_seq5, "wf_par5": wf_par5}
EXPECTED = {"wf_one": lambda x: x, "wf_seq5": lambda x: f"{x}.4", "wf_par5": lambda x: [f"{x}.{i}" for i in range(5)]}
QUEUE = "hmbench_q"
PG_STATS_SETTLE_S = 11.0
"""PostgreSQL 15 backends flush their statistics when idle, at most every 1 s and at the latest after 10 s
(PGSTAT_IDLE_INTERVAL): wait that long before reading pg_stat_database."""


POLL_S = 0.01


async def _one(mode: str, queue: Any, name: str, x: str) -> None:
    fn = WORKFLOWS[name]
    if mode == "direct":
        result = await fn(x)
    else:
        handle = await queue.enqueue_async(fn, x)
        result = await handle.get_result(polling_interval_sec=POLL_S)
    if result != EXPECTED[name](x):
        raise RuntimeError(f"{name}({x!r}) returned {result!r}")


async def latency(mode: str, queue: Any, name: str, n: int, warmup: int, cap_s: float) -> dict[str, Any]:
    for i in range(warmup):
        await _one(mode, queue, name, f"w{i}")
    samples: list[float] = []
    deadline = time.perf_counter() + cap_s
    for i in range(n):
        begin = time.perf_counter()
        await _one(mode, queue, name, f"l{uuid.uuid4().hex[:6]}{i}")
        samples.append(time.perf_counter() - begin)
        if time.perf_counter() > deadline:
            break
    return pct(samples)


async def throughput(mode: str, queue: Any, name: str, inflight: int) -> dict[str, Any]:
    errors: dict[str, int] = {}
    begin = time.perf_counter()

    async def one(i: int) -> None:
        try:
            await asyncio.wait_for(_one(mode, queue, name, f"t{uuid.uuid4().hex[:6]}{i}"), 180)
        except Exception as exc:
            key = f"{type(exc).__name__}: {exc}"[:120]
            errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(one(i) for i in range(inflight)))
    seconds = time.perf_counter() - begin
    done = inflight - sum(errors.values())
    return {"inflight": inflight, "seconds": seconds, "wf_per_s": done / seconds if seconds else 0.0, "errors": errors}


async def server_ops(db_url: str, queue: Any, count: int, modes: tuple[str, ...]) -> dict[str, Any]:
    """xact_commit per sequential 1-step workflow (direct and queued), idle window subtracted."""
    out: dict[str, Any] = {}
    for mode in modes:
        await asyncio.sleep(PG_STATS_SETTLE_S)
        before = await pg_database_stats(db_url)
        begin = time.perf_counter()
        for i in range(count):
            await _one(mode, queue, "wf_one", f"c{i}")
        window = time.perf_counter() - begin
        await asyncio.sleep(PG_STATS_SETTLE_S)
        after = await pg_database_stats(db_url)
        idle0 = after
        await asyncio.sleep(window + PG_STATS_SETTLE_S)
        idle1 = await pg_database_stats(db_url)
        busy, idle = counter_delta(before, after), counter_delta(idle0, idle1)
        # the idle window is window + settle long; scale it to the busy window (window + settle too)
        commits, idle_commits = busy.get("xact_commit", 0), idle.get("xact_commit", 0)
        out[mode] = {
            "workflows": count, "window_s": window,
            "xact_commit_per_wf_raw": commits / count,
            "xact_commit_per_wf_net": (commits - idle_commits) / count,
            "idle_xact_commit_per_s": idle_commits / (window + PG_STATS_SETTLE_S),
            "tup_inserted_per_wf": busy.get("tup_inserted", 0) / count,
            "tup_updated_per_wf": busy.get("tup_updated", 0) / count,
            "rows_written_per_wf": sum(busy.get(k, 0) - idle.get(k, 0)
                                       for k in ("tup_inserted", "tup_updated", "tup_deleted")) / count,
        }
    return out


async def measure(db_url: str, settings: dict[str, Any], repeat: int) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    if db_url.startswith("postgres"):
        # direct mode first, before our 10 ms queue exists (its polling would dominate the idle window)
        for i in range(3):
            await _one("direct", None, "wf_one", f"w{i}")
        ops = await server_ops(db_url, None, settings["count"], ("direct",))
    queue = await DBOS.register_queue_async(QUEUE, polling_interval_sec=settings["poll_s"])
    runs = []
    for rep in range(repeat):
        entry: dict[str, Any] = {}
        for mode in ("direct", "queue"):
            for name in WORKFLOWS:
                entry[f"{mode}_lat_{name}"] = await latency(mode, queue, name, settings["n_latency"], settings["warmup"],
                                                            settings["time_cap"])
            for name in WORKFLOWS:
                entry[f"{mode}_tput_{name}"] = await throughput(mode, queue, name, settings["inflight"])
        log(f"  dbos rep {rep + 1}: direct wf_one p50 {entry['direct_lat_wf_one']['p50_ms']:.1f} ms, "
            f"{entry['direct_tput_wf_one']['wf_per_s']:.0f} wf/s; queue wf_one p50 "
            f"{entry['queue_lat_wf_one']['p50_ms']:.1f} ms, {entry['queue_tput_wf_one']['wf_per_s']:.0f} wf/s")
        runs.append(entry)
    out: dict[str, Any] = {"runs": runs}
    if db_url.startswith("postgres"):
        out["server_ops"] = {**ops, **await server_ops(db_url, queue, settings["count"], ("queue",))}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL server URL (a private database is made) or 'sqlite'")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--inflight", type=int, help="workflows started at once (default 50, quick 20)")
    parser.add_argument("--poll", type=float, default=0.01, help="queue polling interval, seconds")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    settings = (dict(n_latency=8, warmup=1, inflight=20, count=10, time_cap=3.0) if args.quick
                else dict(n_latency=40, warmup=3, inflight=50, count=30, time_cap=8.0))
    if args.inflight:
        settings["inflight"] = args.inflight
    settings["poll_s"] = args.poll
    global POLL_S
    POLL_S = args.poll
    logging.getLogger("dbos").setLevel(logging.WARNING)
    tmp: str | None = None
    dbname: str | None = None
    if args.url == "sqlite" or args.url.startswith("sqlite"):
        tmp = tempfile.mkdtemp(prefix="hmbench-dbos-")
        db_url = f"sqlite:///{tmp}/dbos.sqlite"
        label = "sqlite"
    else:
        dbname = uid("hmbench_dbos")
        db_url = create_database(args.url, dbname)
        label = "postgres"
    started = time.perf_counter()
    try:
        config: DBOSConfig = {
            "name": "hmbench", "system_database_url": db_url, "log_level": "WARNING",
            "application_version": "hmbench", "executor_id": uid("exec"), "sys_db_pool_size": 20,
        }
        DBOS(config=config)
        DBOS.launch()
        result = asyncio.run(measure(db_url, settings, args.repeat))
    finally:
        DBOS.destroy(destroy_registry=False)
        if dbname:
            drop_database(args.url, dbname)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result.update({
        "bench": "dbos", "backend": label, "date": now_iso(), "settings": settings,
        "versions": package_versions(("dbos", "SQLAlchemy", "psycopg")),
        "mode_notes": {"direct": "await wf(x) in this process",
                       "queue": f"enqueue_async + get_result; the queue and the result polled every {args.poll} s"
                                " (DBOS defaults: 1 s) by this process"},
        "seconds": time.perf_counter() - started,
    })
    if args.json:
        write_json(args.json, result)
    else:
        import json

        print(json.dumps(result, indent=2, default=str))
    os._exit(0)  # DBOS leaves non-daemon threads behind after destroy on some paths


if __name__ == "__main__":
    raise SystemExit(main())
