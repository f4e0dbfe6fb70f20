#!/usr/bin/env python
"""MeshFlow benchmarks: workflows/s, start->result latency, signal wake-up, round trips, memory.

Three workflow shapes, each activity an ``async def`` returning its argument (only MeshFlow's own
cost is measured): ``wf_one`` (1 activity), ``wf_seq5`` (5 sequential activities) and ``wf_par5``
(``asyncio.gather`` of 5 activities), plus ``wf_signal`` (waits on ``workflow.wait_for(id)``).

- **workflows/s**: ``inflight`` workflows started at once (starts issued concurrently), then every
  result awaited; wall time from the first start to the last result.
- **start->result p50/p95**: one workflow at a time, ``start`` then ``handle.result()``.
- **signal wake-up**: a workflow already waiting on ``wait_for(id)`` (started, then given time to
  suspend); time from ``client.signal(id)`` to ``handle.result()`` returning (``result()`` is
  already subscribed when the signal goes out).
- **round trips** per 1-activity workflow and per extra activity (``wf_seq5`` minus ``wf_one``,
  divided by 4): the counting proxies and wire counters of ``meshcall_bench.py``, client and worker
  on separate connections in this process.
- **memory per 10,000 suspended workflows**: the worker process's RSS before and after 10,000
  ``wf_signal`` workflows have suspended, plus the store's growth where easy (redis ``INFO memory``
  ``used_memory`` delta -- a shared server, so approximate; SQLite file size).

The worker runs in a separate process (``--worker``) like a real deployment, and again in this
process (same-process rows; ``memory://`` has only those). Every backend runs in a fresh namespace
that is purged at the end. Run::

    python benchmarks/meshflow_bench.py --quick                 # every default backend, < 60 s
    python benchmarks/meshflow_bench.py --url redis://127.0.0.1:6379/0 --json /tmp/mf.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import config_for, schemes_of
from floors import measure_floors_async
from meshcall_bench import (
    BACKGROUND,
    DEFAULT_URLS,
    OP,
    WAIT,
    Tally,
    WireCounter,
    _proxied_connection,
    _purge,
    side,
)

from hotmesh import MeshFlow, workflow

__all__ = ["Settings", "bench_backend", "count_workflow_round_trips", "run"]

QUEUE_REMOTE = "mfb-remote"
QUEUE_LOCAL = "mfb-local"
QUEUE_COUNT = "mfb-count"
QUEUE_MEM = "mfb-mem"


# ---------------------------------------------------------------------------------------------
# The benchmarked workflows (importable by the worker process, which runs this file)
# ---------------------------------------------------------------------------------------------


async def bench_echo(value: Any) -> Any:
    """The activity: returns its argument."""
    return value


acts = workflow.proxy_activities([bench_echo])


async def wf_one(x: str) -> Any:
    return await acts.bench_echo(x)


async def wf_seq5(x: str) -> Any:
    value = x
    for i in range(5):
        value = await acts.bench_echo(f"{value}.{i}" if i == 4 else value)
    return value


async def wf_par5(x: str) -> Any:
    return list(await asyncio.gather(*(acts.bench_echo(f"{x}.{i}") for i in range(5))))


async def wf_signal(signal_id: str) -> Any:
    return await workflow.wait_for(signal_id)


WORKFLOWS = [wf_one, wf_seq5, wf_par5, wf_signal]
EXPECTED: dict[str, Callable[[str], Any]] = {
    "wf_one": lambda x: x,
    "wf_seq5": lambda x: f"{x}.4",
    "wf_par5": lambda x: [f"{x}.{i}" for i in range(5)],
}
SHAPES = ("wf_one", "wf_seq5", "wf_par5")


@dataclass(frozen=True)
class Settings:
    """How much to measure (per shape, per run)."""

    n_latency: int = 40
    warmup: int = 3
    inflight_fast: int = 300
    """Workflows started at once on redis, NATS and memory."""
    inflight_slow: int = 50
    """... on postgres and SQLite."""
    n_signal: int = 30
    count_workflows: int = 20
    repeat: int = 2
    time_cap: float = 6.0
    suspended: int = 10_000
    suspended_urls: tuple[str, ...] = ("redis", "sqlite")
    worker_concurrency: int = 50


FULL = Settings()
QUICK = Settings(
    n_latency=8,
    warmup=1,
    inflight_fast=60,
    inflight_slow=20,
    n_signal=4,
    count_workflows=3,
    repeat=1,
    time_cap=2.0,
    suspended=0,
)


def _inflight(url: str, settings: Settings) -> int:
    scheme = urlsplit(url).scheme.lower()
    return settings.inflight_slow if scheme in ("sqlite", "postgresql", "postgres") else settings.inflight_fast


def _stats(samples: Sequence[float]) -> dict[str, Any]:
    """n, p50, p95, p99 (nearest rank) in ms."""
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {"n": len(ordered), "p50_ms": statistics.median(ordered) * 1000, "p95_ms": rank(0.95), "p99_ms": rank(0.99)}


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


async def _run_one(client: Any, queue: str, name: str, x: str, timeout: float = 120.0) -> None:
    handle = await client.workflow.start(workflow_name=name, args=[x], task_queue=queue, workflow_id=f"{name}-{uuid.uuid4().hex}")
    result = await handle.result(timeout=timeout)
    if result != EXPECTED[name](x):
        raise RuntimeError(f"{name}({x!r}) returned {result!r}")


async def latency(client: Any, queue: str, name: str, settings: Settings) -> dict[str, Any]:
    """start -> result, one workflow at a time."""
    for i in range(settings.warmup):
        await _run_one(client, queue, name, f"w{i}")
    samples: list[float] = []
    deadline = time.perf_counter() + settings.time_cap
    for i in range(settings.n_latency):
        begin = time.perf_counter()
        await _run_one(client, queue, name, f"l{i}")
        samples.append(time.perf_counter() - begin)
        if time.perf_counter() > deadline:
            break
    return _stats(samples)


async def throughput(client: Any, queue: str, name: str, inflight: int) -> dict[str, Any]:
    """``inflight`` workflows started concurrently; wall time until every result is in."""
    errors: Counter[str] = Counter()
    begin = time.perf_counter()

    async def one(i: int) -> None:
        try:
            await _run_one(client, queue, name, f"t{i}", timeout=180.0)
        except Exception as exc:
            errors[f"{type(exc).__name__}: {exc}"[:160]] += 1

    await asyncio.gather(*(one(i) for i in range(inflight)))
    seconds = time.perf_counter() - begin
    done = inflight - sum(errors.values())
    return {"inflight": inflight, "seconds": seconds, "wf_per_s": done / seconds if seconds else 0.0, "errors": dict(errors)}


async def signal_latency(client: Any, queue: str, settings: Settings) -> dict[str, Any]:
    """client.signal(id) -> handle.result() for workflows already suspended in wait_for(id)."""
    samples: list[float] = []
    buffered = 0
    batch = settings.n_signal
    handles = []
    for _ in range(batch):
        sig = f"mfb-sig-{uuid.uuid4().hex}"
        handle = await client.workflow.start(workflow_name="wf_signal", args=[sig], task_queue=queue, workflow_id=sig)
        handles.append((sig, handle))
    for _sig, handle in handles:  # the job exists; then give every first task time to reach wait_for
        await handle.status()
    await asyncio.sleep(1.0)
    for i, (sig, handle) in enumerate(handles):
        waiter = asyncio.create_task(handle.result(timeout=60))
        await asyncio.sleep(0.02)  # let result() subscribe before the signal goes out
        begin = time.perf_counter()
        woken = await client.signal(sig, {"i": i})
        result = await waiter
        samples.append(time.perf_counter() - begin)
        if woken == 0:
            buffered += 1
        if result != {"i": i}:
            raise RuntimeError(f"wf_signal returned {result!r}")
    return {**_stats(samples), "buffered": buffered}


async def _measure_set(client: Any, queue: str, url: str, settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SHAPES:
        out[f"lat_{name}"] = await latency(client, queue, name, settings)
    for name in SHAPES:
        out[f"tput_{name}"] = await throughput(client, queue, name, _inflight(url, settings))
    out["signal"] = await signal_latency(client, queue, settings)
    return out


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        parts = handle.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class WorkerProcess:
    """A separate Python process running ``MeshFlow.Worker`` for the benchmark workflows."""

    def __init__(self, url: str, namespace: str, queue: str, concurrency: int) -> None:
        self.command = [
            sys.executable, os.path.abspath(__file__), "--worker", "--url", url,
            "--namespace", namespace, "--queue", queue, "--concurrency", str(concurrency),
        ]
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout: float = 60.0) -> None:
        self.process = await asyncio.create_subprocess_exec(*self.command, stdout=asyncio.subprocess.PIPE)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if line.strip() != b"ready":
            await self.stop()
            raise RuntimeError(f"worker process did not start (said {line!r})")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def worker_main(url: str, namespace: str, queue: str, concurrency: int) -> None:
    """Entry point of the worker process."""
    config = config_for(url, namespace)
    worker = await MeshFlow.Worker.create(
        connection=config, task_queue=queue, workflow=WORKFLOWS, concurrency=concurrency, activity_concurrency=concurrency
    )
    print("ready", flush=True)
    await worker.run(grace=2.0)


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------


def _split(delta: Counter[tuple[str, str]], seconds: dict[tuple[str, str], float] | None, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {OP: {}, WAIT: {}, BACKGROUND: {}, "ms": {}}
    for (name, kind), value in sorted(delta.items()):
        out[kind][name] = round(value / n, 3)
        if seconds is not None and "(block," not in name:
            out["ms"][f"{kind}:{name}"] = round(seconds.get((name, kind), 0.0) / n * 1000, 3)
    out["total_ops"] = {"round trips": round(sum(out[OP].values()), 3)}
    return out


async def count_workflow_round_trips(url: str, namespace: str, settings: Settings) -> dict[str, Any]:
    """Provider calls and wire traffic per sequential workflow, split client / worker, per shape."""
    config = config_for(url, namespace)
    client_tally, worker_tally = Tally(), Tally()
    wire = WireCounter()
    for scheme_ in schemes_of(url):
        wire.install(scheme_)
    opened: list[Any] = []
    connections: list[Any] = []
    out: dict[str, Any] = {"workflows": settings.count_workflows}
    try:
        with side("worker"):
            worker_conn, worker_opened = await _proxied_connection(config, worker_tally)
            connections.append(worker_conn)
            opened += worker_opened
            await MeshFlow.Worker.create(connection=worker_conn, task_queue=QUEUE_COUNT, workflow=WORKFLOWS, concurrency=10)
        with side("caller"):
            client_conn, client_opened = await _proxied_connection(config, client_tally)
            connections.append(client_conn)
            opened += client_opened
            client = MeshFlow.Client(client_conn)
            for name in ("wf_one", "wf_seq5"):
                for i in range(2):
                    await _run_one(client, QUEUE_COUNT, name, f"cw{i}")
                await asyncio.sleep(0.3)
                before = (client_tally.snapshot(), worker_tally.snapshot(), Counter(wire.counts))
                for i in range(settings.count_workflows):
                    await _run_one(client, QUEUE_COUNT, name, f"c{i}")
                await asyncio.sleep(0.5)  # let the last acks land
                after = (client_tally.snapshot(), worker_tally.snapshot(), Counter(wire.counts))
                n = settings.count_workflows
                wire_delta = after[2] - before[2]
                entry: dict[str, Any] = {}
                for label, idx in (("caller", 0), ("worker", 1)):
                    now, then = after[idx], before[idx]
                    seconds = {k: v - then[1].get(k, 0.0) for k, v in now[1].items()}
                    entry[label] = _split(now[0] - then[0], seconds, n)
                if wire_delta:
                    entry["wire"] = {
                        s: _split(Counter({(lab, kind): v for (lab, sd, kind), v in wire_delta.items() if sd == s}), None, n)
                        for s in ("caller", "worker")
                    }
                out[name] = entry
    finally:
        wire.restore()
        await MeshFlow.shutdown(grace=2.0)
        for connection in connections:
            with contextlib.suppress(Exception):
                await connection.aclose()
        for provider in reversed(opened):
            with contextlib.suppress(Exception):
                await provider.aclose()
    return out


def summarize_round_trips(trips: dict[str, Any]) -> dict[str, Any]:
    """Per 1-activity workflow and per extra activity: provider ops, wire ops, waits (both sides)."""
    def totals(entry: dict[str, Any]) -> dict[str, float | None]:
        prov = entry["caller"]["total_ops"]["round trips"] + entry["worker"]["total_ops"]["round trips"]
        waits = sum(entry["caller"][WAIT].values()) + sum(entry["worker"][WAIT].values())
        wire = entry.get("wire")
        wire_ops = (wire["caller"]["total_ops"]["round trips"] + wire["worker"]["total_ops"]["round trips"]) if wire else None
        wire_waits = (sum(wire["caller"][WAIT].values()) + sum(wire["worker"][WAIT].values())) if wire else None
        return {"provider_ops": prov, "provider_waits": waits, "wire_ops": wire_ops, "wire_waits": wire_waits}

    one, seq = totals(trips["wf_one"]), totals(trips["wf_seq5"])
    per_act = {k: (None if one[k] is None or seq[k] is None else round((seq[k] - one[k]) / 4, 2)) for k in one}  # type: ignore[operator]
    return {"per_workflow_1act": one, "per_workflow_seq5": seq, "per_extra_activity": per_act}


# ---------------------------------------------------------------------------------------------
# Memory per suspended workflow
# ---------------------------------------------------------------------------------------------


async def _redis_used_memory(url: str) -> int | None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        info = await client.info("memory")
        return int(info["used_memory"])
    finally:
        await client.aclose()


async def suspended_memory(url: str, namespace: str, settings: Settings, count: int) -> dict[str, Any]:
    """Worker RSS (and store size) before/after ``count`` workflows suspended in wait_for."""
    config = config_for(url, namespace)
    scheme = urlsplit(url).scheme.lower()
    worker = WorkerProcess(url, namespace, QUEUE_MEM, settings.worker_concurrency)
    await worker.start()
    client = MeshFlow.Client(config)
    sqlite_path = urlsplit(url).path[1:] if scheme == "sqlite" else None

    def store_size() -> int | None:
        if sqlite_path is None:
            return None
        return sum(os.path.getsize(p) for p in (sqlite_path, sqlite_path + "-wal") if os.path.exists(p))

    try:
        for i in range(3):
            await _run_one(client, QUEUE_MEM, "wf_one", f"m{i}")
        await asyncio.sleep(1.0)
        rss0 = _rss_mb(worker.pid)
        used0 = await _redis_used_memory(url) if scheme.startswith("redis") else None
        size0 = store_size()
        begin = time.perf_counter()
        sem = asyncio.Semaphore(100)

        async def start(i: int) -> None:
            async with sem:
                sig = f"mfb-mem-{namespace}-{i}"
                await client.workflow.start(workflow_name="wf_signal", args=[sig], task_queue=QUEUE_MEM, workflow_id=sig)

        await asyncio.gather(*(start(i) for i in range(count)))
        started_s = time.perf_counter() - begin
        # Suspended once the worker has run every first task: wait for its CPU to go idle.
        last, idle_since = _cpu_seconds(worker.pid), time.monotonic()
        limit = time.monotonic() + 300
        while time.monotonic() < limit:
            await asyncio.sleep(1.0)
            now = _cpu_seconds(worker.pid)
            if now - last > 0.05:
                last, idle_since = now, time.monotonic()
            elif time.monotonic() - idle_since >= 3.0:
                break
        settled_s = time.perf_counter() - begin
        rss1 = _rss_mb(worker.pid)
        used1 = await _redis_used_memory(url) if scheme.startswith("redis") else None
        size1 = store_size()
        # Sanity: one of them is really suspended and wakes up.
        sig = f"mfb-mem-{namespace}-0"
        woken = await client.signal(sig, "x")
        result = await client.workflow.get_handle(workflow_id=sig).result(timeout=60)
        return {
            "workflows": count,
            "start_seconds": started_s,
            "settle_seconds": settled_s,
            "worker_rss_mb_before": rss0,
            "worker_rss_mb_after": rss1,
            "worker_rss_mb_per_10k": (rss1 - rss0) * 10_000 / count,
            "redis_used_memory_mb_delta_per_10k": (used1 - used0) / 2**20 * 10_000 / count if used0 is not None and used1 is not None else None,
            "sqlite_file_mb_delta_per_10k": (size1 - size0) / 2**20 * 10_000 / count if size0 is not None and size1 is not None else None,
            "probe_woken": woken,
            "probe_ok": result == "x",
        }
    finally:
        await MeshFlow.shutdown(grace=1.0)
        await worker.stop()


# ---------------------------------------------------------------------------------------------
# One backend
# ---------------------------------------------------------------------------------------------


@dataclass
class BackendResult:
    url: str
    namespace: str
    remote: dict[str, Any] | None = None
    local: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    round_trips: dict[str, Any] | None = None
    round_trip_summary: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _median_sets(sets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sets[0]:
        merged = dict(sets[-1][key])
        for metric, value in sets[-1][key].items():
            if isinstance(value, (int, float)) and metric not in ("n", "inflight"):
                merged[metric] = statistics.median(s[key][metric] for s in sets if s[key].get(metric) is not None)
        out[key] = merged
    return out


async def bench_backend(url: str, settings: Settings, *, log: Callable[[str], None] = print) -> BackendResult:
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    result = BackendResult(url=url, namespace=namespace)
    config = config_for(url, namespace)
    scheme = urlsplit(url).scheme.lower()
    cross = scheme != "memory"
    worker: WorkerProcess | None = None
    remote_sets: list[dict[str, Any]] = []
    local_sets: list[dict[str, Any]] = []
    try:
        if cross:
            worker = WorkerProcess(url, namespace, QUEUE_REMOTE, settings.worker_concurrency)
            await worker.start()
        else:
            result.notes.append("memory:// is per process: no cross-process rows")
        for run_index in range(settings.repeat):
            if worker is not None:
                remote_sets.append(await _measure_set(MeshFlow.Client(config), QUEUE_REMOTE, url, settings))
                await MeshFlow.shutdown(grace=1.0)
            await MeshFlow.Worker.create(
                connection=config, task_queue=QUEUE_LOCAL, workflow=WORKFLOWS,
                concurrency=settings.worker_concurrency, activity_concurrency=settings.worker_concurrency,
            )
            local_sets.append(await _measure_set(MeshFlow.Client(config), QUEUE_LOCAL, url, settings))
            await MeshFlow.shutdown(grace=1.0)
            r = remote_sets[-1] if remote_sets else None
            loc = local_sets[-1]
            log(
                f"  run {run_index + 1}/{settings.repeat}: "
                + (f"remote wf_one p50 {r['lat_wf_one']['p50_ms']:.1f} ms, {r['tput_wf_one']['wf_per_s']:.0f} wf/s, "
                   f"signal p50 {r['signal']['p50_ms']:.1f} ms; " if r else "")
                + f"in-process wf_one p50 {loc['lat_wf_one']['p50_ms']:.1f} ms, {loc['tput_wf_one']['wf_per_s']:.0f} wf/s"
            )
        if remote_sets:
            result.remote = _median_sets(remote_sets)
        result.local = _median_sets(local_sets)
        result.runs = [{"remote": r, "local": loc} for r, loc in zip(remote_sets or [None] * len(local_sets), local_sets, strict=True)]
        if worker is not None:
            await worker.stop()
            worker = None
        result.round_trips = await count_workflow_round_trips(url, namespace, settings)
        result.round_trip_summary = summarize_round_trips(result.round_trips)
        log(f"  round trips: {result.round_trip_summary['per_workflow_1act']}")
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"  ERROR {result.error}")
    finally:
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=1.0)
        if worker is not None:
            await worker.stop()
    if settings.suspended and any(scheme.startswith(s) for s in settings.suspended_urls) and cross:
        try:
            log(f"  {settings.suspended} suspended workflows ...")
            result.memory = await suspended_memory(url, namespace, settings, settings.suspended)
            log(f"  memory: {result.memory}")
        except Exception as exc:
            result.notes.append(f"memory: {type(exc).__name__}: {exc}")
            log(f"  memory ERROR {exc}")
    try:
        await _purge(url, namespace)
    except Exception as exc:
        result.notes.append(f"purge failed: {type(exc).__name__}: {exc}")
    return result


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_report(results: Sequence[BackendResult], floors: dict[str, Any]) -> str:
    from report import meshflow_markdown

    return meshflow_markdown([asdict(r) for r in results], floors)


async def run(urls: Sequence[str], settings: Settings, *, floors_n: int, note: str = "") -> dict[str, Any]:
    cleanup: list[str] = []
    resolved = []
    for url in urls:
        if url == "sqlite":
            tmp = tempfile.mkdtemp(prefix="hmbench-")
            cleanup.append(tmp)
            url = f"sqlite:///{tmp}/bench.db"
        resolved.append(url)
    try:
        print(f"floors ({floors_n} samples each) ...", flush=True)
        floors = await measure_floors_async([u for u in resolved if " " not in u], floors_n)  # mixes: none
        results = []
        for url in resolved:
            print(f"{url} ...", flush=True)
            results.append(await bench_backend(url, settings))
    finally:
        for tmp in cleanup:
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "bench": "meshflow",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "note": note,
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {tuple(round(x, 2) for x in os.getloadavg())}",
        "settings": asdict(settings),
        "floors": floors,
        "results": [asdict(r) for r in results],
        "_objects": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", action="append", help="backend URL (repeatable); 'sqlite' = a temp file")
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run under 60 s in total")
    parser.add_argument("--repeat", type=int, help="runs per measurement (median reported)")
    parser.add_argument("--suspended", type=int, help="suspended workflows for the memory row (0: skip)")
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--queue", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=50, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(args.url[0], args.namespace, args.queue, args.concurrency))
        return 0
    settings = QUICK if args.quick else FULL
    if args.repeat is not None:
        settings = Settings(**{**asdict(settings), "repeat": args.repeat})
    if args.suspended is not None:
        settings = Settings(**{**asdict(settings), "suspended": args.suspended})
    started = time.perf_counter()
    report = asyncio.run(run(args.url or list(DEFAULT_URLS), settings, floors_n=100 if args.quick else 300, note=args.note))
    results: list[BackendResult] = report.pop("_objects")
    print()
    print(f"date {report['date']}  python {report['python']}  {report['machine']}")
    print(format_report(results, report["floors"]))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
