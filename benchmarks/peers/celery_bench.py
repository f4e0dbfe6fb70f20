#!/usr/bin/env python
"""Celery peer: a task round trip on the same Redis as MeshCall (``echo.delay(x).get()``).

The worker is a separate ``celery worker`` process (Celery's default prefork pool, concurrency =
CPU count) with the Redis broker and the Redis result backend, consuming a fresh queue
``hmbench_celery_<random>``. Measured like ``meshcall_bench.py``:

- latency: sequential ``echo.delay(i).get()`` after a warm-up (p50/p95/p99);
- calls/s at concurrency 50: 50 client threads (Celery's client is synchronous), each looping
  ``delay().get()`` until the call budget or the time cap is used up;
- CPU per call (client process + worker processes) during the concurrency run;
- Redis commands per call: ``INFO commandstats`` delta around sequential calls, minus the idle rate
  of the same window length (other clients of the shared server and Celery's own idle polling:
  reported apart).

Cleanup: the worker is stopped (SIGTERM, then SIGKILL after 15 s); the queue list, its kombu
binding and every result key of the run are deleted (results also expire after 10 minutes).
Remote control, events, gossip, mingle and heartbeats are off, so no broadcast keys are created.

    python benchmarks/peers/celery_bench.py --quick --json /tmp/celery.json
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from celery import Celery

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

URL = os.environ.get("CELERY_BENCH_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CELERY_BENCH_QUEUE", "hmbench_celery")

app = Celery("hmbench_celery", broker=URL, backend=URL)
app.conf.update(
    task_default_queue=QUEUE,
    result_expires=600,
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="hmbench.echo")
def echo(x: Any) -> Any:
    """The task: returns its argument (only Celery's own cost is measured)."""
    return x


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as handle:
                out += [int(x) for x in handle.read().split()]
    except OSError:
        pass
    return out


def _tree_cpu(pid: int) -> float:
    from _common import cpu_seconds

    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


def _throughput(call: Any, worker_pid: int, concurrency: int, calls: int, cap_s: float
                ) -> tuple[list[float], Counter[str], float, float, float]:
    """``concurrency`` threads looping ``call`` until ``calls`` were issued or ``cap_s`` passed."""
    errors: Counter[str] = Counter()
    samples: list[float] = []
    issued = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + cap_s

    def loop() -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= calls or time.perf_counter() > deadline:
                    return
                issued += 1
                x = issued
            begin = time.perf_counter()
            try:
                if call(x) != x:
                    errors["wrong value"] += 1
                    continue
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
                continue
            with lock:
                samples.append(time.perf_counter() - begin)

    cpu_client0, cpu_worker0 = time.process_time(), _tree_cpu(worker_pid)
    start = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - start
    return samples, errors, seconds, time.process_time() - cpu_client0, _tree_cpu(worker_pid) - cpu_worker0


def run(url: str, *, n: int, warmup: int, tput_calls: int, tput_seconds: float, concurrency: int,
        count_calls: int, repeat: int) -> dict[str, Any]:
    import asyncio

    from _common import counter_delta, log, pct, redis_commandstats, uid

    queue = uid("hmbench_celery")
    env = {**os.environ, "CELERY_BENCH_URL": url, "CELERY_BENCH_QUEUE": queue}
    app.conf.task_default_queue = queue
    app.conf.broker_url = url
    app.conf.result_backend = url
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_bench", "worker", "-Q", queue, "-n", f"{queue}@%h",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=WARNING"],
        cwd=str(HERE), env=env, stdout=subprocess.DEVNULL,
    )
    ids: list[str] = []
    ids_lock = threading.Lock()
    out: dict[str, Any] = {"bench": "celery", "url": url, "queue": queue, "worker": "celery worker, prefork pool, "
                           f"concurrency {os.cpu_count()} (default), redis broker + redis result backend", "runs": []}

    def call(x: Any, timeout: float = 30.0) -> Any:
        res = echo.delay(x)
        with ids_lock:
            ids.append(res.id)
        value = res.get(timeout=timeout)
        return value

    try:
        t0 = time.perf_counter()
        call("ready", timeout=60)
        out["worker_start_s"] = time.perf_counter() - t0
        for _ in range(warmup):
            call("w")
        for rep in range(repeat):
            samples = []
            for i in range(n):
                begin = time.perf_counter()
                if call(i) != i:
                    raise RuntimeError("celery echo returned a wrong value")
                samples.append(time.perf_counter() - begin)
            latency = pct(samples)
            tp_samples, errors, seconds, cpu_client, cpu_worker = _throughput(call, worker.pid, concurrency,
                                                                              tput_calls, tput_seconds)
            done = len(tp_samples)
            throughput = {
                "concurrency": concurrency, "calls": done, "seconds": seconds,
                "calls_per_s": done / seconds if seconds else 0.0, "errors": dict(errors),
                "cpu_ms_per_call_client": cpu_client / done * 1000 if done else None,
                "cpu_ms_per_call_worker": cpu_worker / done * 1000 if done else None,
                **{k: v for k, v in pct(tp_samples).items() if k in ("p50_ms", "p99_ms")},
            }
            log(f"  celery rep {rep + 1}: p50 {latency['p50_ms']:.2f} ms, {throughput['calls_per_s']:.0f} calls/s @{concurrency}")
            out["runs"].append({"latency": latency, "throughput": throughput})
        # backend operations: commandstats delta over sequential calls, minus an idle window
        time.sleep(0.5)
        before = asyncio.run(redis_commandstats(url))
        begin = time.perf_counter()
        for i in range(count_calls):
            call(i)
        window = time.perf_counter() - begin
        time.sleep(0.2)
        after = asyncio.run(redis_commandstats(url))
        idle0 = asyncio.run(redis_commandstats(url))
        time.sleep(window + 0.2)
        idle1 = asyncio.run(redis_commandstats(url))
        busy, idle = counter_delta(before, after), counter_delta(idle0, idle1)
        net = {k: (v - idle.get(k, 0)) / count_calls for k, v in busy.items()}
        out["server_ops"] = {
            "calls": count_calls, "window_s": window,
            "per_call_raw": sum(busy.values()) / count_calls,
            "idle_same_window": sum(idle.values()),
            "per_call_net": sum(busy.values()) / count_calls - sum(idle.values()) / count_calls,
            "by_command_net": {k: round(v, 2) for k, v in sorted(net.items(), key=lambda kv: -kv[1]) if abs(v) >= 0.05},
            "idle_by_command_per_s": {k: round(v / (window + 0.2), 2) for k, v in idle.items()},
        }
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        _cleanup(url, queue, ids)
    return out


def _cleanup(url: str, queue: str, ids: list[str]) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        for start in range(0, len(ids), 500):
            client.delete(*(f"celery-task-meta-{i}" for i in ids[start:start + 500]))
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    from _common import now_iso, package_versions, write_json

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=URL)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    sizes = (dict(n=40, warmup=5, tput_calls=300, tput_seconds=2.0, count_calls=20) if args.quick
             else dict(n=500, warmup=50, tput_calls=3000, tput_seconds=8.0, count_calls=100))
    result = run(args.url, concurrency=50, repeat=args.repeat, **sizes)  # type: ignore[arg-type]
    result.update({"date": now_iso(), "versions": package_versions(("celery", "kombu", "redis", "hiredis")),
                   "settings": sizes})
    if args.json:
        write_json(args.json, result)
    else:
        import json

        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
