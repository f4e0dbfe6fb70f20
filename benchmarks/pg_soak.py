#!/usr/bin/env python
"""PostgreSQL bloat soak: MeshFlow, MeshCall and MeshData work with expiry, run for a long time.

Runs continuously against one PostgreSQL namespace (fresh, ``hmsoak_<random>``, purged at the end):

- **MeshFlow**: ``--flows`` drivers, each starting 1-activity workflows one after another with
  ``expire=--expire`` seconds and awaiting the result (the finished job expires, the store's bounded
  background sweep deletes it with its steps).
- **MeshCall**: ``--calls`` drivers calling ``exec(topic, [i], id=<unique>, ttl=--expire)`` (the
  call's job expires after its timeout + grace; the cached result after ``ttl``).
- **MeshData**: ``--records`` drivers running ``exec(entity, ..., ttl=--expire, search=...)``; the
  record (job and search document) is removed ``ttl`` after its workflow finishes (a durable timer).

The workers run in this process on the same connection. Every ``--sample-seconds`` (60) it
records, per table of the namespace schema: ``pg_total_relation_size`` (table + indexes + TOAST),
the heap and index sizes, ``n_live_tup`` / ``n_dead_tup`` and the (auto)vacuum/analyze counts from
``pg_stat_user_tables``; the rows of the main tables (exact counts), the expired jobs not yet
swept, what the background sweep deleted since the last sample; and throughput and p50/p95
latency per kind. At the end it prints a table and writes JSON (default
``benchmarks/results/pg-soak-<UTC time>.json``).

``--vacuum-every S`` runs ``VACUUM (ANALYZE, SKIP_LOCKED)`` on the namespace's tables every S
seconds from this script, standing in for autovacuum on a server where it is off (the shared
test server has ``autovacuum = off``; the script reports the setting). Run::

    python benchmarks/pg_soak.py --minutes 30
    python benchmarks/pg_soak.py --minutes 2 --sample-seconds 20     # a smoke run
    python benchmarks/pg_soak.py --minutes 15 --vacuum-every 60       # with vacuum, autovacuum off
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import psycopg

from hotmesh import MeshCall, MeshData, MeshFlow, workflow
from hotmesh.config import HotMeshConfig
from hotmesh.connection import Connection

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
QUEUE = "soak"
TOPIC = "soak-echo"
ENTITY = "soakrec"
SCHEMA = {
    "schema": {
        "id": {"type": "TAG", "sortable": False},
        "name": {"type": "TEXT", "sortable": False},
        "kind": {"type": "TAG", "sortable": False},
        "n": {"type": "NUMERIC", "sortable": True},
    },
    "index": ENTITY,
    "prefix": [ENTITY],
}
COUNTED = ("jobs", "steps", "timers", "cache", "messages", "deliveries", "dead_letters", "sub_payloads", "search_docs", "signals", "waiters")


async def soak_echo(value: Any) -> Any:
    """The activity: returns its argument."""
    return value


acts = workflow.proxy_activities([soak_echo])


async def soak_one(x: str) -> Any:
    return await acts.soak_echo(x)


async def soak_record(x: str) -> Any:
    """A MeshData record's workflow: one field written through the record, then done."""
    record = await MeshData.workflow.search()
    await record.set("kind", "done")
    return x


async def echo(value: Any) -> Any:
    return value


class Tally:
    """Completions per kind since the last sample (latencies in seconds) and errors."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.total: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_examples: list[str] = []

    def done(self, kind: str, seconds: float) -> None:
        self.samples[kind].append(seconds)
        self.total[kind] += 1

    def failed(self, kind: str, exc: BaseException) -> None:
        self.errors[kind] += 1
        if len(self.error_examples) < 20:
            self.error_examples.append(f"{kind}: {type(exc).__name__}: {exc}"[:300])

    def take(self, seconds: float) -> dict[str, Any]:
        out = {}
        for kind in ("flow", "call", "record"):
            got = sorted(self.samples.pop(kind, []))
            out[kind] = {
                "n": len(got),
                "per_s": round(len(got) / seconds, 2) if seconds > 0 else None,
                "p50_ms": round(statistics.median(got) * 1000, 2) if got else None,
                "p95_ms": round(got[min(len(got) - 1, round(0.95 * len(got)) - 1)] * 1000, 2) if got else None,
            }
        return out


class SweepWatch:
    """Wraps the store's ``sweep_backlog`` (the background sweep calls it) to record each round."""

    def __init__(self, store: Any) -> None:
        self.rounds: list[dict[str, Any]] = []
        original = getattr(store, "sweep_backlog", None)
        self.installed = original is not None
        if original is None:
            return

        async def watched(*args: Any, **kwargs: Any) -> int:
            begin = time.perf_counter()
            try:
                deleted = await original(*args, **kwargs)
            except Exception as exc:
                self.rounds.append({"at": time.time(), "error": f"{type(exc).__name__}: {exc}"[:200]})
                raise
            self.rounds.append({"at": time.time(), "deleted": deleted, "ms": round((time.perf_counter() - begin) * 1000, 1)})
            return deleted

        store.sweep_backlog = watched

    def take(self) -> dict[str, Any]:
        rounds, self.rounds = self.rounds, []
        return {
            "rounds": len(rounds),
            "deleted": sum(r.get("deleted", 0) for r in rounds),
            "max_ms": max((r["ms"] for r in rounds if "ms" in r), default=None),
            "errors": [r["error"] for r in rounds if "error" in r],
        }


async def _db_sample(url: str, schema: str) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid),"
            " s.n_live_tup, s.n_dead_tup, s.autovacuum_count, s.autoanalyze_count, s.vacuum_count,"
            " s.n_tup_ins, s.n_tup_upd, s.n_tup_hot_upd, s.n_tup_del"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
            (schema,),
        )
        tables = {}
        for row in await cur.fetchall():
            tables[row[0]] = dict(
                zip(
                    ("total_bytes", "heap_bytes", "index_bytes", "live", "dead", "autovacuum", "autoanalyze", "vacuum", "ins", "upd", "hot_upd", "del"),
                    row[1:],
                    strict=True,
                )
            )
        rows = {}
        q = psycopg.sql
        for table in COUNTED:
            if table in tables:
                cur = await conn.execute(q.SQL("SELECT count(*) FROM {}.{}").format(q.Identifier(schema), q.Identifier(table)))
                rows[table] = (await cur.fetchone())[0]
        cur = await conn.execute(
            "SELECT indexrelname, pg_relation_size(indexrelid), idx_scan FROM pg_stat_user_indexes"
            " WHERE schemaname = %s ORDER BY indexrelname",
            (schema,),
        )
        indexes = {r[0]: {"bytes": r[1], "scans": r[2]} for r in await cur.fetchall()}
        # The oldest snapshot in this database: VACUUM cannot remove rows dead after it.
        cur = await conn.execute(
            "SELECT max(age(backend_xmin)), max(extract(epoch FROM now() - xact_start))"
            " FROM pg_stat_activity WHERE datname = current_database() AND backend_xmin IS NOT NULL"
        )
        horizon = await cur.fetchone()
        expired = None
        if "jobs" in tables:
            cur = await conn.execute(
                q.SQL("SELECT count(*) FROM {}.jobs WHERE expires_at <= clock_timestamp()").format(q.Identifier(schema))
            )
            expired = (await cur.fetchone())[0]
        return {
            "tables": tables,
            "indexes": indexes,
            "rows": rows,
            "expired_unswept_jobs": expired,
            "oldest_xmin_age": horizon[0] if horizon else None,
            "oldest_xact_seconds": round(float(horizon[1]), 1) if horizon and horizon[1] is not None else None,
        }


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1048576:.2f}"


def _print_sample(s: dict[str, Any]) -> None:
    t = s["tables"]
    total = sum(v["total_bytes"] for v in t.values())
    big = sorted(t.items(), key=lambda kv: -kv[1]["total_bytes"])[:5]
    tp = s["throughput"]
    print(
        f"[{s['minute']:6.1f} min] total {_mib(total)} MiB | "
        + " ".join(f"{k} {_mib(v['total_bytes'])}M l{v['live']}/d{v['dead']} v{v['autovacuum']}+{v['vacuum']}" for k, v in big)
        + f" | flow {tp['flow']['per_s']}/s p50 {tp['flow']['p50_ms']} | call {tp['call']['per_s']}/s p50 {tp['call']['p50_ms']}"
        + f" | rec {tp['record']['per_s']}/s p50 {tp['record']['p50_ms']} | sweep {s['sweep']['deleted']} in {s['sweep']['rounds']} rounds"
        + f" | expired unswept {s['expired_unswept_jobs']} | oldest xmin age {s['oldest_xmin_age']} ({s['oldest_xact_seconds']} s)",
        flush=True,
    )


def summary_table(report: dict[str, Any]) -> str:
    """Markdown: per table, size (MiB) and live/dead tuples at each sample minute."""
    samples = report["samples"]
    if not samples:
        return "(no samples)"
    if len(samples) > 8:  # the first, every fifth minute, the last
        keep = [samples[0]] + [s for s in samples[1:-1] if round(s["minute"]) % 5 == 0] + [samples[-1]]
        samples = list({id(s): s for s in keep}.values())
    names = sorted({n for s in samples for n in s["tables"]})
    head = "| table | " + " | ".join(f"{s['minute']:.1f} min" for s in samples) + " |"
    lines = [head, "|---|" + "---:|" * len(samples)]
    for name in names:
        cells = []
        for s in samples:
            v = s["tables"].get(name)
            cells.append("-" if v is None else f"{_mib(v['total_bytes'])} ({v['live']}/{v['dead']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **all** | " + " | ".join(f"**{_mib(sum(v['total_bytes'] for v in s['tables'].values()))}**" for s in samples) + " |")
    lines.append("| wf/s, call/s, rec/s | " + " | ".join(
        f"{s['throughput']['flow']['per_s']}, {s['throughput']['call']['per_s']}, {s['throughput']['record']['per_s']}" for s in samples) + " |")
    lines.append("| flow p50 ms | " + " | ".join(f"{s['throughput']['flow']['p50_ms']}" for s in samples) + " |")
    lines.append("| swept rows | " + " | ".join(f"{s['sweep']['deleted']}" for s in samples) + " |")
    lines.append("| expired unswept jobs | " + " | ".join(f"{s['expired_unswept_jobs']}" for s in samples) + " |")
    return "\n".join(lines)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    namespace = args.namespace or f"hmsoak_{uuid.uuid4().hex[:10]}"
    # Small pools: the server is shared (max_connections 100 here); about 4 x pool_max + 4.
    options: dict[str, dict[str, Any]] = {r: {"pool_max_size": args.pool_max} for r in ("store", "stream", "sub", "search")}
    if args.sweep_interval is not None:
        options["store"]["sweep_interval"] = args.sweep_interval
    config = HotMeshConfig(url=args.url, namespace=namespace, options=options)
    conn = await Connection(config).open()
    schema = conn.store.names.schema if hasattr(conn.store, "names") else f"hotmesh_{namespace}"
    watch = SweepWatch(conn.store)
    tally = Tally()
    stop = asyncio.Event()
    async with await psycopg.AsyncConnection.connect(args.url, autocommit=True) as sc:
        cur = await sc.execute("SELECT current_setting('autovacuum'), current_setting('autovacuum_naptime'), current_setting('server_version')")
        autovacuum, naptime, server = await cur.fetchone()
    print(f"server {server}: autovacuum={autovacuum} naptime={naptime}s", flush=True)
    print(f"namespace {namespace} (schema {schema}); {args.minutes} min; flows {args.flows}, calls {args.calls}, records {args.records}; expire {args.expire} s", flush=True)

    await MeshFlow.Worker.create(connection=conn, task_queue=QUEUE, workflow=[soak_one], concurrency=50)
    await MeshCall.connect(TOPIC, echo, connection=conn, concurrency=20)
    mesh = MeshData(conn, SCHEMA)
    await mesh.create_search_index(ENTITY)
    await mesh.connect(ENTITY, soak_record, concurrency=20)
    client = MeshFlow.Client(conn)

    async def flows(d: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            begin = time.perf_counter()
            try:
                h = await client.workflow.start(soak_one, args=[f"{d}.{i}"], task_queue=QUEUE, workflow_id=f"f{d}-{i}-{uuid.uuid4().hex[:6]}", expire=args.expire)
                await h.result(timeout=120)
                tally.done("flow", time.perf_counter() - begin)
            except Exception as exc:
                tally.failed("flow", exc)
                await asyncio.sleep(1)

    async def calls(d: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            begin = time.perf_counter()
            try:
                await MeshCall.exec(TOPIC, [i], connection=conn, id=f"c{d}-{i}-{uuid.uuid4().hex[:6]}", ttl=args.expire, timeout=60)
                tally.done("call", time.perf_counter() - begin)
            except Exception as exc:
                tally.failed("call", exc)
                await asyncio.sleep(1)

    async def records(d: int) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            rid = f"r{d}-{i}-{uuid.uuid4().hex[:6]}"
            begin = time.perf_counter()
            try:
                await mesh.exec(ENTITY, [rid], id=rid, ttl=args.expire, timeout=120,
                                search={"data": {"id": rid, "name": f"soak record {i}", "kind": "new", "n": i}})
                tally.done("record", time.perf_counter() - begin)
            except Exception as exc:
                tally.failed("record", exc)
                await asyncio.sleep(1)

    vacuums: list[dict[str, Any]] = []

    async def vacuum_loop() -> None:
        q = psycopg.sql
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.vacuum_every)
            if stop.is_set():
                return
            begin = time.perf_counter()
            try:
                async with await psycopg.AsyncConnection.connect(args.url, autocommit=True) as vc:
                    cur = await vc.execute(
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = %s AND c.relkind = 'r'", (schema,))
                    for (table,) in await cur.fetchall():
                        await vc.execute(q.SQL("VACUUM (ANALYZE, SKIP_LOCKED) {}.{}").format(q.Identifier(schema), q.Identifier(table)))
                vacuums.append({"at": time.time(), "ms": round((time.perf_counter() - begin) * 1000, 1)})
            except Exception as exc:
                vacuums.append({"at": time.time(), "error": f"{type(exc).__name__}: {exc}"[:200]})

    drivers = [asyncio.create_task(flows(d)) for d in range(args.flows)]
    if args.vacuum_every:
        drivers.append(asyncio.create_task(vacuum_loop()))
    drivers += [asyncio.create_task(calls(d)) for d in range(args.calls)]
    drivers += [asyncio.create_task(records(d)) for d in range(args.records)]
    halt = asyncio.Event()  # SIGINT/SIGTERM: stop early, still drain, purge and report
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, halt.set)
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    last = started
    try:
        end = started + args.minutes * 60
        while True:
            now = time.monotonic()
            if now >= end:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(halt.wait(), min(args.sample_seconds, end - now))
            if halt.is_set():
                print("interrupted: stopping early (the report keeps the samples so far)", flush=True)
                break
            now = time.monotonic()
            try:
                db = await _db_sample(args.url, schema)
            except Exception as exc:  # a busy shared server: note it, sample again next time
                print(f"sample failed: {type(exc).__name__}: {exc}", flush=True)
                continue
            sample = {
                "minute": round((now - started) / 60, 2),
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "load": [round(x, 2) for x in os.getloadavg()],
                **db,
                "throughput": tally.take(now - last),
                "sweep": watch.take(),
                "script_vacuums": [vacuums.pop(0) for _ in range(len(vacuums))],
                "errors": dict(tally.errors),
            }
            last = now
            samples.append(sample)
            _print_sample(sample)
    finally:
        stop.set()
        await asyncio.wait(drivers, timeout=150)
        for task in drivers:
            task.cancel()
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=5.0)
        if not args.keep:
            await _purge(conn)
    report = {
        "bench": "pg_soak",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "url": args.url,
        "namespace": namespace,
        "schema": schema,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "sweep_hook": watch.installed,
        "server": {"version": server, "autovacuum": autovacuum, "autovacuum_naptime": naptime},
        "totals": dict(tally.total),
        "errors": dict(tally.errors),
        "error_examples": tally.error_examples,
        "samples": samples,
    }
    with contextlib.suppress(Exception):
        await conn.aclose()
    return report


async def _purge(conn: Connection) -> None:
    for provider in (conn.store, conn.stream, conn.sub, conn.search):
        with contextlib.suppress(Exception):
            await provider.purge()


def _commit() -> str | None:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--sample-seconds", type=float, default=60.0)
    parser.add_argument("--flows", type=int, default=8, help="concurrent MeshFlow drivers")
    parser.add_argument("--calls", type=int, default=2, help="concurrent MeshCall drivers")
    parser.add_argument("--records", type=int, default=2, help="concurrent MeshData drivers")
    parser.add_argument("--expire", type=float, default=60.0, help="seconds finished work is kept (expire / ttl)")
    parser.add_argument("--sweep-interval", type=float, default=None, help="store sweep_interval option (default: the provider's, 60 s)")
    parser.add_argument("--vacuum-every", type=float, default=0.0, help="run VACUUM (ANALYZE) on the namespace's tables every S seconds (0: never)")
    parser.add_argument("--pool-max", type=int, default=4, help="pool_max_size of each role's provider")
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--keep", action="store_true", help="do not purge the namespace at the end")
    parser.add_argument("--json", default=None, help="output file (default benchmarks/results/pg-soak-<time>.json)")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    report = asyncio.run(soak(args))
    print()
    print(summary_table(report))
    print(f"\ntotals {report['totals']} errors {report['errors']}")
    path = args.json or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results", f"pg-soak-{dt.datetime.now(dt.UTC):%Y-%m-%dT%H%M}.json"
    )
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, default=str)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
