#!/usr/bin/env python
"""Physical floors: the fastest a backend can answer on this machine, measured in the same run.

A MeshCall latency means little alone: 1.4 ms is excellent on a loaded two-core VM and poor on a
quiet server. So every backend's latency is also reported as a multiple of its floor, measured
here with the bare driver (no HotMesh code at all):

- round trip (``rtt``): redis ``PING``, postgres ``SELECT 1``, NATS ``flush`` (PING/PONG), an
  SQLite one-row committed ``INSERT`` (WAL, ``synchronous=FULL`` like the provider's default);
- wake-up (``wake``): how long a consumer already blocked on the backend takes to see a message
  published by another connection: redis ``XADD`` -> ``XREADGROUP BLOCK``, postgres ``NOTIFY`` ->
  ``LISTEN``, NATS core publish -> subscriber; for ``memory://`` an ``asyncio.Event`` set -> wake;
- extra NATS floors: request/reply through the server and a JetStream publish acknowledgement
  (every KV and stream operation of hotmesh-nats is one of those).

Run: ``python benchmarks/floors.py --url redis://127.0.0.1:6379/0 --url ...`` or import
:func:`measure_floors`. Nothing is left on the servers: the redis stream key, the NATS JetStream
stream and the SQLite file are deleted; NOTIFY channels store nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

__all__ = ["measure_floors", "measure_floors_async", "summarize"]

DEFAULT_N = 500
SETTLE = 0.002
"""Pause before each wake-up probe so the consumer is surely blocked on the server again."""


def summarize(samples: Sequence[float], what: str) -> dict[str, Any]:
    """p50/p99/mean in milliseconds of samples given in seconds (nearest-rank p99)."""
    ordered = sorted(samples)
    if not ordered:
        return {"what": what, "n": 0, "p50_ms": None, "p99_ms": None, "mean_ms": None}
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {
        "what": what,
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": p99 * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
    }


async def _time_calls(call: Callable[[], Awaitable[Any]], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return samples


async def redis_floors(url: str, n: int = DEFAULT_N) -> dict[str, Any]:
    """PING round trip and XADD -> blocked XREADGROUP wake-up on a private stream key."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    blocker = aioredis.Redis.from_url(url, socket_timeout=None)
    key = f"hmbench:floor:{uuid.uuid4().hex}"
    try:
        rtt = await _time_calls(client.ping, n)
        await client.xgroup_create(key, "g", id="$", mkstream=True)
        woke: asyncio.Queue[float] = asyncio.Queue()
        ready: asyncio.Queue[None] = asyncio.Queue()

        async def consume() -> None:
            while True:
                ready.put_nowait(None)
                got = await blocker.xreadgroup("g", "c", {key: ">"}, count=1, block=10_000, noack=True)
                if got:
                    woke.put_nowait(time.perf_counter())

        task = asyncio.create_task(consume())
        samples = []
        try:
            for i in range(n + 20):
                await ready.get()
                await asyncio.sleep(SETTLE)
                start = time.perf_counter()
                await client.xadd(key, {"i": i})
                end = await asyncio.wait_for(woke.get(), 10)
                if i >= 20:
                    samples.append(end - start)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return {
            "rtt": summarize(rtt, "redis PING"),
            "wake": summarize(samples, "redis XADD -> XREADGROUP BLOCK wake-up"),
        }
    finally:
        with contextlib.suppress(Exception):
            await client.delete(key)
        await client.aclose()
        await blocker.aclose()


async def postgres_floors(url: str, n: int = DEFAULT_N) -> dict[str, Any]:
    """``SELECT 1`` round trip and NOTIFY -> LISTEN wake-up on a private channel."""
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    listener = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    channel = f"hmbench_floor_{uuid.uuid4().hex[:12]}"
    try:

        async def select1() -> None:
            cur = await conn.execute("SELECT 1")
            await cur.fetchone()

        rtt = await _time_calls(select1, n)
        await listener.execute(f"LISTEN {channel}")
        woke: asyncio.Queue[float] = asyncio.Queue()

        async def consume() -> None:
            async for _ in listener.notifies():
                woke.put_nowait(time.perf_counter())

        task = asyncio.create_task(consume())
        samples = []
        try:
            await asyncio.sleep(0.05)
            for i in range(n + 20):
                await asyncio.sleep(SETTLE)
                start = time.perf_counter()
                await conn.execute("SELECT pg_notify(%s, %s)", (channel, str(i)))
                end = await asyncio.wait_for(woke.get(), 10)
                if i >= 20:
                    samples.append(end - start)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        return {
            "rtt": summarize(rtt, "postgres SELECT 1"),
            "wake": summarize(samples, "postgres NOTIFY -> LISTEN wake-up"),
        }
    finally:
        await conn.close()
        await listener.close()


async def nats_floors(url: str, n: int = DEFAULT_N) -> dict[str, Any]:
    """flush (PING/PONG), request/reply, core publish -> subscriber, JetStream publish ack."""
    import nats

    nc = await nats.connect(url)
    other = await nats.connect(url)
    token = uuid.uuid4().hex[:12]
    stream_name = f"HMBENCH_FLOOR_{token}"
    js = nc.jetstream()
    try:
        rtt = await _time_calls(nc.flush, n)

        async def reply(msg: Any) -> None:
            await other.publish(msg.reply, b"ok")

        await other.subscribe(f"hmbench.{token}.rr", cb=reply)
        await other.flush()

        async def request() -> None:
            await nc.request(f"hmbench.{token}.rr", b"x", timeout=5)

        rr = await _time_calls(request, n)

        woke: asyncio.Queue[float] = asyncio.Queue()

        async def on_message(msg: Any) -> None:
            woke.put_nowait(time.perf_counter())

        await other.subscribe(f"hmbench.{token}.wake", cb=on_message)
        await other.flush()
        samples = []
        for i in range(n + 20):
            await asyncio.sleep(SETTLE)
            start = time.perf_counter()
            await nc.publish(f"hmbench.{token}.wake", b"x")
            await nc.flush()
            end = await asyncio.wait_for(woke.get(), 10)
            if i >= 20:
                samples.append(end - start)

        await js.add_stream(name=stream_name, subjects=[f"hmbench.{token}.js"])

        async def js_publish() -> None:
            await js.publish(f"hmbench.{token}.js", b"x")

        jsp = await _time_calls(js_publish, n)
        return {
            "rtt": summarize(rtt, "NATS flush (PING/PONG)"),
            "wake": summarize(samples, "NATS publish -> subscriber wake-up (publish+flush to callback)"),
            "request": summarize(rr, "NATS request/reply"),
            "js_publish": summarize(jsp, "NATS JetStream publish ack (file storage)"),
        }
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream_name)
        await nc.close()
        await other.close()


def _sqlite_commits(path: str, n: int) -> list[float]:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        samples = []
        for i in range(n + 20):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
            conn.execute("COMMIT")
            if i >= 20:
                samples.append(time.perf_counter() - start)
        return samples
    finally:
        conn.close()


def _sqlite_floor_beside(url: str, n: int) -> list[float]:
    rest = url.split("://", 1)[1]
    target = os.path.abspath(rest[1:].split("?", 1)[0]) if rest.startswith("/") else ""
    directory = os.path.dirname(target) if target and os.path.isdir(os.path.dirname(target)) else None
    with tempfile.TemporaryDirectory(dir=directory, prefix="hmbench-floor-") as tmp:
        return _sqlite_commits(os.path.join(tmp, "floor.db"), n)


async def sqlite_floors(url: str, n: int = DEFAULT_N) -> dict[str, Any]:
    """One committed one-row INSERT (WAL, synchronous=FULL) in a scratch file beside the URL's.

    The scratch file sits in the same directory as the benchmark database so it measures the
    same disk. Cross-process wake-ups on SQLite are polled (``poll_interval_ms``, default 50 ms),
    so the wake floor there is half the poll interval on average, not measured.
    """
    samples = await asyncio.to_thread(_sqlite_floor_beside, url, n)
    return {"rtt": summarize(samples, "sqlite committed 1-row INSERT (WAL, synchronous=FULL)")}


async def memory_floors(url: str, n: int = DEFAULT_N) -> dict[str, Any]:
    """Wake-up of a task waiting on an ``asyncio.Event`` (what memory:// readers wait on)."""
    samples = []
    for i in range(n + 20):
        event = asyncio.Event()
        woke: list[float] = []

        async def wait(event: asyncio.Event = event, woke: list[float] = woke) -> None:
            await event.wait()
            woke.append(time.perf_counter())

        task = asyncio.create_task(wait())
        await asyncio.sleep(0)
        start = time.perf_counter()
        event.set()
        await task
        if i >= 20:
            samples.append(woke[0] - start)
    return {"wake": summarize(samples, "asyncio.Event set -> waiting task runs")}


_BY_SCHEME: dict[str, Callable[[str, int], Awaitable[dict[str, Any]]]] = {
    "redis": redis_floors,
    "rediss": redis_floors,
    "postgresql": postgres_floors,
    "postgres": postgres_floors,
    "nats": nats_floors,
    "sqlite": sqlite_floors,
    "memory": memory_floors,
}


async def measure_floors_async(urls: Sequence[str], n: int = DEFAULT_N) -> dict[str, dict[str, Any]]:
    """Floors for each URL (keyed by URL); a backend that fails gets ``{"error": ...}``."""
    results: dict[str, dict[str, Any]] = {}
    for url in urls:
        scheme = urlsplit(url).scheme.lower()
        measure = _BY_SCHEME.get(scheme)
        if measure is None:
            results[url] = {"error": f"no floor defined for {scheme}://"}
            continue
        bare = url if scheme in ("sqlite", "memory") else url.split("?", 1)[0]  # provider options
        try:
            results[url] = await measure(bare, n)
        except Exception as exc:  # a missing server must not hide the other backends' floors
            results[url] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


def measure_floors(urls: Sequence[str], n: int = DEFAULT_N) -> dict[str, dict[str, Any]]:
    """Synchronous wrapper of :func:`measure_floors_async` (not from inside a running loop)."""
    return asyncio.run(measure_floors_async(urls, n))


def format_floors(floors: dict[str, dict[str, Any]]) -> str:
    """A plain-text table of the floors."""
    lines = [f"{'backend':<44} {'floor':<62} {'p50 ms':>8} {'p99 ms':>8}"]
    for url, found in floors.items():
        if "error" in found:
            lines.append(f"{url:<44} ERROR {found['error']}")
            continue
        for entry in found.values():
            p50 = "-" if entry["p50_ms"] is None else f"{entry['p50_ms']:.3f}"
            p99 = "-" if entry["p99_ms"] is None else f"{entry['p99_ms']:.3f}"
            lines.append(f"{url:<44} {entry['what']:<62} {p50:>8} {p99:>8}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print the floors (and optionally write them as JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", action="append", required=True, help="backend URL (repeatable)")
    parser.add_argument("-n", type=int, default=DEFAULT_N, help="samples per floor (default 500)")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args(argv)
    floors = measure_floors(args.url, args.n)
    print(format_floors(floors))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(floors, handle, indent=2)
    return 1 if any("error" in f for f in floors.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
