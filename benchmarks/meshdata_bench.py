#!/usr/bin/env python
"""MeshData benchmarks: find_where latency at 10k and 100k records, and the cost of one set().

- **find_where p50/p95**: ``MeshData.find_where`` on an index holding N records (N = 10,000, then
  100,000: the same index grown), for four query kinds: a selective TAG equality (1 hit), a broad
  TAG equality (half the records match; first page of 10), a NUMERIC range sorted descending
  (first page of 10), and a TAG AND NUMERIC range. The records are loaded straight into the search
  provider (``search.upsert``, 32 concurrent) because ``find_where`` reads only the index; loading
  through ``MeshData.exec`` would measure workflows, not queries (``meshflow_bench.py`` does that).
- **set() cost**: one ``MeshData.set(entity, id, {...})`` on an indexed record, sequential: the
  provider calls (store/stream/sub and search, through ``meshcall_bench.CountingProxy``) and what
  the driver sent (``meshcall_bench.WireCounter``), and its p50.

Backends: SQLite and PostgreSQL (their search providers); Redis only with the query engine
(Redis 8 or redis-stack): the shared Redis 7 has none, so it is skipped with a note. Fresh
namespace per backend, purged at the end. Run::

    python benchmarks/meshdata_bench.py --quick
    python benchmarks/meshdata_bench.py --url sqlite --url postgresql://postgres@127.0.0.1:5432/test --json /tmp/md.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from floors import measure_floors_async
from meshcall_bench import OP, CountingProxy, Tally, WireCounter, _purge, side
from meshflow_bench import _stats

from hotmesh import MeshData, MeshFlow
from hotmesh.config import HotMeshConfig
from hotmesh.connection import Connection
from hotmesh.providers import Role, default_registry

__all__ = ["Settings", "bench_backend", "run"]

DEFAULT_URLS = ("sqlite", "postgresql://postgres@127.0.0.1:5432/test")
ENTITY = "bench"
SCHEMA = {
    "schema": {
        "id": {"type": "TAG", "sortable": False},
        "first": {"type": "TEXT", "sortable": False, "nostem": True},
        "active": {"type": "TAG", "sortable": False},
        "group": {"type": "TAG", "sortable": False},
        "created": {"type": "NUMERIC", "sortable": True},
    },
    "index": ENTITY,
    "prefix": [ENTITY],
}
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Dennis", "Margaret", "John"]


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...] = (10_000, 100_000)
    queries: int = 50
    warmup: int = 5
    set_calls: int = 30
    load_concurrency: int = 32


FULL = Settings()
QUICK = Settings(sizes=(1_000, 5_000), queries=10, warmup=2, set_calls=5)


def _doc(i: int) -> dict[str, Any]:
    return {
        "id": f"r{i}",
        "first": NAMES[i % len(NAMES)],
        "active": "yes" if i % 2 == 0 else "no",
        "group": f"g{i % 100}",
        "created": i,
    }


async def _load(search: Any, start: int, stop: int, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            await search.upsert(ENTITY, f"r{i}", _doc(i))

    for chunk in range(start, stop, 2000):  # bounded task creation
        await asyncio.gather(*(one(i) for i in range(chunk, min(stop, chunk + 2000))))


def _queries(n: int) -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(n)
    pick = rng.randrange(n)
    low = rng.randrange(max(1, n - 1000))
    return [
        ("id = r<k> (TAG, 1 hit)", {"query": [{"field": "id", "is": "=", "value": f"r{pick}"}]}),
        ("active = yes (TAG, half; page of 10)", {"query": [{"field": "active", "is": "=", "value": "yes"}], "limit": {"start": 0, "size": 10}}),
        (
            "created in [a, a+1000] sort DESC (NUMERIC; page of 10)",
            {"query": [{"field": "created", "is": "[]", "value": [low, low + 1000]}], "sort": {"field": "created", "order": "DESC"}, "limit": {"start": 0, "size": 10}},
        ),
        (
            "group = g7 AND created > n/2 (TAG + NUMERIC; page of 10)",
            {"query": [{"field": "group", "is": "=", "value": "g7"}, {"field": "created", "is": ">", "value": n // 2}], "limit": {"start": 0, "size": 10}},
        ),
    ]


async def _time_queries(mesh: MeshData, n: int, settings: Settings) -> list[dict[str, Any]]:
    out = []
    for name, kwargs in _queries(n):
        for _ in range(settings.warmup):
            found = await mesh.find_where(ENTITY, **kwargs)
        samples = []
        for _ in range(settings.queries):
            begin = time.perf_counter()
            found = await mesh.find_where(ENTITY, **kwargs)
            samples.append(time.perf_counter() - begin)
        out.append({"query": name, "count": found.count, **_stats(samples)})
    return out


async def _set_cost(config: HotMeshConfig, settings: Settings) -> dict[str, Any]:
    """Provider calls (incl. search) and wire round trips per MeshData.set on an indexed record."""
    tally = Tally()
    registry = default_registry()
    opened, proxies = [], {}
    wire = WireCounter()
    wire.install(urlsplit(config.url_for(Role.STORE)).scheme.lower())
    try:
        for role in (Role.STORE, Role.STREAM, Role.SUB, Role.SEARCH):
            provider = registry.create(role, config.url_for(role), namespace=config.namespace, options=config.options.get(role.value, {}))
            await provider.open()
            opened.append(provider)
            proxies[role] = CountingProxy(provider, role.value, tally)
        connection = Connection(
            config, store=proxies[Role.STORE], stream=proxies[Role.STREAM], sub=proxies[Role.SUB], search=proxies[Role.SEARCH],  # type: ignore[arg-type]
        )
        await connection.open()
        mesh = MeshData(connection, SCHEMA)
        with side("caller"):
            record = f"set-{uuid.uuid4().hex[:8]}"
            await mesh.exec(ENTITY, ["x"], id=record, search={"data": _doc(0) | {"id": record}}, await_=False)
            for i in range(3):
                await mesh.set(ENTITY, record, {"created": -i})
            before, wire_before = tally.snapshot(), Counter(wire.counts)
            samples = []
            for i in range(settings.set_calls):
                begin = time.perf_counter()
                await mesh.set(ENTITY, record, {"created": i, "first": NAMES[i % len(NAMES)]})
                samples.append(time.perf_counter() - begin)
            after, wire_after = tally.snapshot(), Counter(wire.counts)
        n = settings.set_calls
        delta = after[0] - before[0]
        by_call = {name: round(v / n, 2) for (name, kind), v in delta.items() if kind == OP}
        wire_delta = wire_after - wire_before
        wire_ops = sum(v for (_lab, s, kind), v in wire_delta.items() if s == "caller" and kind == OP)
        return {
            "provider_ops": sum(v for k, v in by_call.items() if not k.startswith("search.")),
            "search_ops": sum(v for k, v in by_call.items() if k.startswith("search.")),
            "by_call": by_call,
            "wire_ops": round(wire_ops / n, 2) if wire_delta else None,
            "wire_by_label": {lab: round(v / n, 2) for (lab, s, kind), v in wire_delta.items() if s == "caller"},
            **_stats(samples),
        }
    finally:
        wire.restore()
        with contextlib.suppress(Exception):
            await connection.aclose()
        for provider in reversed(opened):
            with contextlib.suppress(Exception):
                await provider.aclose()


@dataclass
class BackendResult:
    url: str
    namespace: str
    sizes: list[dict[str, Any]] = field(default_factory=list)
    set_cost: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


async def bench_backend(url: str, settings: Settings) -> BackendResult:
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    result = BackendResult(url=url, namespace=namespace)
    config = HotMeshConfig(url=url, namespace=namespace)
    try:
        mesh = MeshData(config, SCHEMA)
        await mesh.create_search_index(ENTITY)
        search = (await mesh._connection(None)).search
        loaded = 0
        for size in settings.sizes:
            begin = time.perf_counter()
            await _load(search, loaded, size, settings.load_concurrency)
            load_s = time.perf_counter() - begin
            loaded = size
            queries = await _time_queries(mesh, size, settings)
            result.sizes.append({"records": size, "load_seconds": load_s, "queries": queries})
            print(f"  {size:,} records (loaded in {load_s:.1f} s): " + "; ".join(f"{q['query'][:14]} p50 {q['p50_ms']:.2f} ms" for q in queries), flush=True)
        await MeshFlow.shutdown(grace=1.0)
        result.set_cost = await _set_cost(config, settings)
        print(f"  set(): {result.set_cost['by_call']} wire {result.set_cost['wire_ops']} p50 {result.set_cost['p50_ms']:.2f} ms", flush=True)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        print(f"  ERROR {result.error}", flush=True)
    finally:
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=1.0)
        try:
            await _purge(url, namespace)
        except Exception as exc:
            result.notes.append(f"purge failed: {type(exc).__name__}: {exc}")
    return result


async def run(urls: Sequence[str], settings: Settings, *, note: str = "") -> dict[str, Any]:
    cleanup, resolved = [], []
    for url in urls:
        if url == "sqlite":
            tmp = tempfile.mkdtemp(prefix="hmbench-")
            cleanup.append(tmp)
            url = f"sqlite:///{tmp}/bench.db"
        resolved.append(url)
    try:
        floors = await measure_floors_async(resolved, 100)
        results = []
        for url in resolved:
            print(f"{url} ...", flush=True)
            results.append(await bench_backend(url, settings))
    finally:
        for tmp in cleanup:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "bench": "meshdata",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "note": note,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {tuple(round(x, 2) for x in os.getloadavg())}",
        "settings": asdict(settings),
        "floors": floors,
        "results": [asdict(r) for r in results],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", action="append", help="backend URL (repeatable); 'sqlite' = a temp file")
    parser.add_argument("--quick", action="store_true", help="1k and 5k records: a smoke run")
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--note", default="")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report = asyncio.run(run(args.url or list(DEFAULT_URLS), QUICK if args.quick else FULL, note=args.note))
    from report import meshdata_markdown

    print(f"\ndate {report['date']}  python {report['python']}  {report['machine']}")
    print(meshdata_markdown([report]))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 1 if any(r["error"] for r in report["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
