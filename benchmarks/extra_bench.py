#!/usr/bin/env python
"""MeshFlow cases of issue 9 that ``meshflow_bench.py`` lacks (it is imported, nothing copied).

- ``ops``: server-side backend operations per 1-activity workflow, worker in another process:
  Redis ``INFO commandstats`` delta, PostgreSQL ``pg_stat_database.xact_commit`` delta (the run uses
  a private database, so it counts only us), NATS JetStream account API total delta; each with an
  idle window of the same length subtracted (on the shared Redis that window also holds other
  clients' traffic). Plus **idle polling**: commands a worker with nothing to do sends per second,
  counted exactly at the driver (``WireCounter``) with the worker in this process.
- ``scale``: workflows/s of ``wf_one`` with 1, 2 and 4 worker processes on one queue.
- ``history``: start->result of ``wf_one`` (one at a time) in a fresh namespace, then after N
  finished workflows exist. The finished jobs are seeded **synthetically**: the job record of one
  real finished ``wf_one`` is copied under new ids with ``Store.create_job`` (64 concurrent), i.e.
  job hashes/rows only, no stream history.
- ``memory``: worker RSS and backend memory per 10,000 suspended workflows
  (``meshflow_bench.suspended_memory``).
- ``profile``: ``py-spy record`` of the worker process while ``wf_one`` batches run (throughput
  case), summarized as top frames by own and total samples.

    python benchmarks/extra_bench.py --case ops --url redis://127.0.0.1:6379/0 --json /tmp/x.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import meshflow_bench as mf  # noqa: E402
from _common import (  # noqa: E402
    counter_delta,
    log,
    nats_js_api_total,
    now_iso,
    pg_database_stats,
    redis_commandstats,
    write_json,
)
from meshcall_bench import WireCounter, _purge, side  # noqa: E402

from hotmesh import MeshFlow  # noqa: E402
from hotmesh.config import HotMeshConfig  # noqa: E402
from hotmesh.connection import Connection  # noqa: E402
from hotmesh.providers import NewJob  # noqa: E402

QUEUE = "mfx"


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


async def _server_counts(url: str) -> dict[str, int]:
    scheme = _scheme(url)
    if scheme.startswith("redis"):
        stats = await redis_commandstats(url)
        return {"total": sum(stats.values()), **stats}
    if scheme.startswith("postgres"):
        stats = await pg_database_stats(url)
        return {"total": stats.get("xact_commit", 0), **stats}
    if scheme == "nats":
        stats = await nats_js_api_total(url)
        return {"total": stats["js_api_total"], **stats}
    return {}


async def _settle(url: str) -> None:
    # PostgreSQL 15 backends flush their statistics when idle, at most every 1 s and at the latest
    # after 10 s (PGSTAT_IDLE_INTERVAL): pg_stat_database lags that much
    await asyncio.sleep(11.0 if _scheme(url).startswith("postgres") else 0.3)


async def case_ops(url: str, n: int) -> dict[str, Any]:
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    config = HotMeshConfig(url=url, namespace=namespace)
    worker = mf.WorkerProcess(url, namespace, QUEUE, 50)
    out: dict[str, Any] = {"case": "ops", "url": url, "workflows": n}
    await worker.start()
    try:
        client = MeshFlow.Client(config)
        for i in range(3):
            await mf._run_one(client, QUEUE, "wf_one", f"w{i}")
        await _settle(url)
        before = await _server_counts(url)
        begin = time.perf_counter()
        for i in range(n):
            await mf._run_one(client, QUEUE, "wf_one", f"o{i}")
        window = time.perf_counter() - begin
        await _settle(url)
        after = await _server_counts(url)
        idle0 = after
        await asyncio.sleep(window)
        await _settle(url)
        idle1 = await _server_counts(url)
        busy, idle = counter_delta(before, after), counter_delta(idle0, idle1)
        scheme = _scheme(url)
        what = ("Redis commands (INFO commandstats: server-wide, other clients of the shared server included)" if scheme.startswith("redis")
                else "PostgreSQL commits (pg_stat_database.xact_commit, private database)" if scheme.startswith("postgres")
                else "JetStream API requests ($JS.API.*, account info api.total: KV reads/writes and stream publishes are not"
                " API requests)" if scheme == "nats" else "")
        out.update({
            "what": what,
            "window_s": window,
            "per_wf_raw": busy.get("total", 0) / n,
            "idle_in_window": idle.get("total", 0),
            "per_wf_net": (busy.get("total", 0) - idle.get("total", 0)) / n,
            "by_kind_per_wf": {k: round(v / n, 2) for k, v in sorted(busy.items(), key=lambda kv: -kv[1])
                               if k != "total" and v / n >= 0.05},
        })
        await MeshFlow.shutdown(grace=1.0)
    finally:
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=1.0)
        await worker.stop()
    out["idle_polling"] = await idle_polling(url, namespace)
    await _purge(url, namespace)
    log(f"  ops {url}: {out['per_wf_net']:.1f} per workflow (raw {out['per_wf_raw']:.1f}); idle "
        f"{out['idle_polling'].get('per_s_total')}/s")
    return out


async def idle_polling(url: str, namespace: str, seconds: float = 5.0) -> dict[str, Any]:
    """Driver-level requests per second of an idle worker (in this process, WireCounter)."""
    scheme = _scheme(url)
    if scheme in ("sqlite", "memory"):
        return {"note": "no wire (embedded)"}
    wire = WireCounter()
    wire.install(scheme)
    try:
        with side("worker"):
            worker = await MeshFlow.Worker.create(connection=HotMeshConfig(url=url, namespace=namespace),
                                                  task_queue=QUEUE, workflow=mf.WORKFLOWS, concurrency=50)
        await asyncio.sleep(2.0)
        before = collections.Counter(wire.counts)
        await asyncio.sleep(seconds)
        delta = collections.Counter(wire.counts) - before
        del worker
    finally:
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=1.0)
        wire.restore()
    by = {f"{label} [{kind}]": round(v / seconds, 2) for (label, _side, kind), v in sorted(delta.items())}
    return {"seconds": seconds, "per_s_total": round(sum(delta.values()) / seconds, 2), "by_kind_per_s": by}


async def case_scale(url: str, procs: list[int], inflight: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"case": "scale", "url": url, "inflight": inflight, "points": []}
    for k in procs:
        namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
        config = HotMeshConfig(url=url, namespace=namespace)
        workers = [mf.WorkerProcess(url, namespace, QUEUE, 50) for _ in range(k)]
        try:
            for w in workers:
                await w.start()
            client = MeshFlow.Client(config)
            for i in range(3):
                await mf._run_one(client, QUEUE, "wf_one", f"w{i}")
            runs = [await mf.throughput(client, QUEUE, "wf_one", inflight) for _ in range(repeat)]
            rates = [r["wf_per_s"] for r in runs]
            out["points"].append({"procs": k, "wf_per_s": statistics.median(rates), "runs": rates,
                                  "errors": sum(sum(r["errors"].values()) for r in runs)})
            log(f"  scale {url}: {k} worker process(es): {statistics.median(rates):.0f} wf/s {[round(r) for r in rates]}")
        finally:
            with contextlib.suppress(Exception):
                await MeshFlow.shutdown(grace=1.0)
            for w in workers:
                await w.stop()
            await _purge(url, namespace)
    return out


async def _seed(url: str, namespace: str, template_id: str, start: int, stop: int) -> float:
    config = HotMeshConfig(url=url, namespace=namespace)
    begin = time.perf_counter()
    async with Connection(config) as connection:
        store = connection.store
        fields = await store.get_job(f"mf:{template_id}")
        if fields is None:
            raise RuntimeError("template job not found")
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                data = dict(fields)
                data["args"] = [f"seed{i}"]
                data["result"] = f"seed{i}"
                await store.create_job(NewJob(f"mf:seed-{i:08d}", data))

        for chunk in range(start, stop, 5000):
            await asyncio.gather(*(one(i) for i in range(chunk, min(stop, chunk + 5000))))
    return time.perf_counter() - begin


async def case_history(url: str, sizes: list[int], n: int) -> dict[str, Any]:
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    config = HotMeshConfig(url=url, namespace=namespace)
    worker = mf.WorkerProcess(url, namespace, QUEUE, 50)
    settings = mf.Settings(n_latency=n, warmup=3, time_cap=30.0)
    out: dict[str, Any] = {"case": "history", "url": url, "seeding": "synthetic: copies of one finished wf_one job "
                           "record via Store.create_job (no stream history)", "points": []}
    await worker.start()
    try:
        client = MeshFlow.Client(config)
        template = f"tmpl-{uuid.uuid4().hex}"
        handle = await client.workflow.start(workflow_name="wf_one", args=["t"], task_queue=QUEUE, workflow_id=template)
        await handle.result(timeout=60)
        lat = await mf.latency(client, QUEUE, "wf_one", settings)
        out["points"].append({"finished": 0, **lat})
        seeded = 0
        for size in sizes:
            seconds = await _seed(url, namespace, template, seeded, size)
            seeded = size
            lat = await mf.latency(client, QUEUE, "wf_one", settings)
            out["points"].append({"finished": size, "seed_seconds": seconds, **lat})
            log(f"  history {url}: {size:,} finished (seeded in {seconds:.0f} s): p50 {lat['p50_ms']:.1f} ms")
    finally:
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=1.0)
        await worker.stop()
        await _purge(url, namespace)
    return out


async def case_memory(url: str, count: int) -> dict[str, Any]:
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    try:
        got = await mf.suspended_memory(url, namespace, mf.Settings(), count)
    finally:
        await _purge(url, namespace)
    log(f"  memory {url}: {got}")
    return {"case": "memory", "url": url, **got}


def _py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def summarize_collapsed(lines: list[str], top: int = 25) -> dict[str, Any]:
    """Own and total samples per frame from py-spy's collapsed ('raw') format."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    idle = 0
    for line in lines:
        stack, _, count_s = line.rstrip().rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        samples += count
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        leaf = frames[-1]
        if any(k in leaf for k in ("select (selectors.py", "poll (selectors.py", "_run_once (asyncio/base_events.py")):
            if "select (selectors.py" in leaf or "poll (selectors.py" in leaf:
                idle += count
        own[leaf] += count
        for f in set(frames):
            total[f] += count

    def short(frame: str) -> str:
        return frame.replace(str(Path(sys.prefix)), "<venv>").replace(str(HERE.parent), "<repo>")

    return {
        "samples": samples,
        "idle_in_epoll_samples": idle,
        "top_own": [(short(f), c, round(100 * c / samples, 1)) for f, c in own.most_common(top)] if samples else [],
        "top_total": [(short(f), c, round(100 * c / samples, 1)) for f, c in total.most_common(top + 50)] if samples else [],
    }


def _save_profile(raw: Path, out_dir: Path, out: dict[str, Any], err: bytes) -> None:
    if not raw.exists():
        out["error"] = f"py-spy wrote nothing: {err.decode()[-400:]}"
        return
    lines = raw.read_text().splitlines()
    out.update(summarize_collapsed(lines))
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / "profile-worker-redis-wf_one.txt.gz"
    with gzip.open(dest, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    out["raw_file"] = dest.name


async def case_profile(url: str, seconds: float, inflight: int, out_dir: Path) -> dict[str, Any]:
    spy = _py_spy()
    out: dict[str, Any] = {"case": "profile", "url": url, "seconds": seconds, "inflight": inflight}
    if spy is None:
        out["error"] = "py-spy not installed"
        return out
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    config = HotMeshConfig(url=url, namespace=namespace)
    worker = mf.WorkerProcess(url, namespace, QUEUE, 50)
    raw = Path(tempfile.mkdtemp(prefix="hmbench-prof-")) / "worker.txt"
    await worker.start()
    try:
        client = MeshFlow.Client(config)
        for i in range(3):
            await mf._run_one(client, QUEUE, "wf_one", f"w{i}")
        spy_proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(worker.pid), "--format", "raw", "--rate", "200", "--nonblocking",
            "--duration", str(int(seconds)), "--output", str(raw),
            stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        await asyncio.sleep(1.0)
        batches = []
        deadline = time.perf_counter() + seconds - 1.5
        while time.perf_counter() < deadline:
            batches.append(await mf.throughput(client, QUEUE, "wf_one", inflight))
        _, err = await spy_proc.communicate()
        out["wf_per_s_during"] = statistics.median(b["wf_per_s"] for b in batches) if batches else None
        out["batches"] = len(batches)
        _save_profile(raw, out_dir, out, err)
    finally:
        with contextlib.suppress(Exception):
            await MeshFlow.shutdown(grace=1.0)
        await worker.stop()
        await _purge(url, namespace)
        shutil.rmtree(raw.parent, ignore_errors=True)
    log(f"  profile {url}: {out.get('samples')} samples, {out.get('wf_per_s_during')} wf/s during")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--case", required=True, choices=("ops", "scale", "history", "memory", "profile"))
    parser.add_argument("--url", required=True)
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--procs", default="1,2,4")
    parser.add_argument("--inflight", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    url = args.url
    tmp = None
    if url == "sqlite":
        tmp = tempfile.mkdtemp(prefix="hmbench-")
        url = f"sqlite:///{tmp}/bench.db"
    started = time.perf_counter()
    try:
        if args.case == "ops":
            result = asyncio.run(case_ops(url, args.n))
        elif args.case == "scale":
            result = asyncio.run(case_scale(url, [int(x) for x in args.procs.split(",")], args.inflight, args.repeat))
        elif args.case == "history":
            result = asyncio.run(case_history(url, [int(x) for x in args.sizes.split(",")], args.n))
        elif args.case == "memory":
            result = asyncio.run(case_memory(url, args.count))
        else:
            out_dir = Path(args.json).parent if args.json else Path(tempfile.gettempdir())
            result = asyncio.run(case_profile(url, args.seconds, args.inflight, out_dir))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result.update({"date": now_iso(), "seconds_total": time.perf_counter() - started})
    if tmp:
        result["url"] = "sqlite:///<tmp>/bench.db"
    if args.json:
        write_json(args.json, result)
    else:
        import json

        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
