#!/usr/bin/env python
"""MeshCall benchmarks: exec latency, throughput at concurrency 50, and round trips per call.

Why these numbers: DESIGN.md §2 makes backend round trips per step the cost model, so besides
latency (sequential ``MeshCall.exec``, p50/p99) and throughput (50 concurrent ``exec`` coroutines)
this counts, per call, every provider method the caller and the worker invoke, through a counting
proxy around the store, stream and sub providers. For redis, postgres and NATS it also counts
what goes on the wire underneath (commands, statements, requests, new connections), because one
provider call is not always one round trip.

Each backend runs in a fresh namespace that is purged at the end; the SQLite file and its
directory are removed when this script created them. Run::

    python benchmarks/meshcall_bench.py --url sqlite:////tmp/x/bench.db --url redis://127.0.0.1:6379/0
    python benchmarks/meshcall_bench.py --quick          # every default backend, under 60 s

Without ``--url`` it runs SQLite (in a temporary directory), memory, and the shared redis,
postgres and NATS servers. ``memory://`` is per process, so its cross-process rows are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import datetime as dt
import inspect
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
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from hotmesh import MeshCall
from hotmesh.config import HotMeshConfig
from hotmesh.connection import Connection
from hotmesh.providers import ReadRequest, Role, default_registry

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import config_for, schemes_of
from floors import measure_floors_async, summarize

__all__ = [
    "CountingProxy",
    "Settings",
    "bench_backend",
    "count_round_trips",
    "run",
    "sequential_latency",
    "throughput",
]

TOPIC_REMOTE = "bench_remote"
"""Served by the worker subprocess."""
TOPIC_LOCAL = "bench_local"
"""Served in the benchmark process (in-process rows)."""
TOPIC_COUNT = "bench_count"
"""Served in-process through counting proxies (round-trip rows)."""

DEFAULT_URLS = (
    "sqlite",  # replaced by a fresh file in a temporary directory
    "memory://bench",
    "redis://127.0.0.1:6379/0",
    "postgresql://postgres@127.0.0.1:5432/test",
    "nats://127.0.0.1:4222",
)


@dataclass(frozen=True)
class Settings:
    """How much to measure. ``time_cap`` bounds each sequential run (slow backends stop early)."""

    n: int = 500
    warmup: int = 50
    concurrency: int = 50
    throughput_calls: int = 3000
    throughput_seconds: float = 8.0
    count_calls: int = 100
    repeat: int = 3
    time_cap: float = 20.0
    worker_concurrency: int = 64


FULL = Settings()
QUICK = Settings(
    n=40,
    warmup=5,
    throughput_calls=300,
    throughput_seconds=1.5,
    count_calls=10,
    repeat=1,
    time_cap=3.0,
)


async def echo(value: Any) -> Any:
    """The benchmarked function: returns its argument, so only MeshCall's own cost is measured."""
    return value


# ---------------------------------------------------------------------------------------------
# Counting: a proxy per provider, and wire-level counters under them
# ---------------------------------------------------------------------------------------------

WAIT = "wait"
OP = "op"
BACKGROUND = "background"
_IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("hmbench_in_request", default=False)
SIDE: contextvars.ContextVar[str] = contextvars.ContextVar("hmbench_side", default="other")
"""Which side (caller or worker) the current task belongs to; inherited by tasks it creates."""


def _task_kind() -> str:
    """Classify the running task: the router's read loop waits, scheduler/quorum are background."""
    task = asyncio.current_task()
    name = task.get_name() if task is not None else ""
    if name.startswith("router:"):
        return WAIT
    if name.startswith(("scheduler", "quorum")):
        return BACKGROUND
    return OP


def _unwrap(value: Any) -> Any:
    return value._target if isinstance(value, (CountingProxy, CountingSubscription)) else value


class Tally:
    """Calls and seconds spent per (method, kind): the kind is op, wait or background."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.seconds: dict[tuple[str, str], float] = {}

    def add(self, name: str, kind: str, seconds: float) -> None:
        """Record one call."""
        key = (name, kind)
        self.counts[key] += 1
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds

    def snapshot(self) -> tuple[Counter[tuple[str, str]], dict[tuple[str, str], float]]:
        """Copies, to subtract later."""
        return Counter(self.counts), dict(self.seconds)


class CountingSubscription:
    """Wraps a Subscription: ``get`` is a wait (a local queue on most backends), ``aclose`` an op."""

    def __init__(self, target: Any, tally: Tally) -> None:
        self._target = target
        self._tally = tally

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._target.__aiter__()  # type: ignore[no-any-return]

    async def get(self, timeout: float | None = None) -> Any:
        """Counted as ``sub.subscription.get`` under wait (or background)."""
        kind = BACKGROUND if _task_kind() == BACKGROUND else WAIT
        start = time.perf_counter()
        try:
            return await self._target.get(timeout)
        finally:
            self._tally.add("sub.subscription.get", kind, time.perf_counter() - start)

    async def aclose(self) -> None:
        """Counted as ``sub.subscription.aclose``."""
        kind = _task_kind()
        start = time.perf_counter()
        try:
            await self._target.aclose()
        finally:
            self._tally.add("sub.subscription.aclose", kind, time.perf_counter() - start)


class CountingProxy:
    """Forwards every attribute of a provider; counts and times each async method call by name.

    Blocking reads (``stream.read`` with ``block`` > 0) are counted as *wait* operations, split
    into those that returned work and those that timed out empty (idle). Calls made by the
    scheduler and quorum tasks are *background*. Provider arguments (``stream=`` given to the
    store) are unwrapped so that ``can_publish_to`` still recognises its own stream.
    """

    def __init__(self, target: Any, role: str, tally: Tally) -> None:
        self._target = target
        self._role = role
        self._tally = tally

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        if not inspect.iscoroutinefunction(attr):

            def plain(*args: Any, **kwargs: Any) -> Any:
                return attr(*(_unwrap(a) for a in args), **{k: _unwrap(v) for k, v in kwargs.items()})

            return plain

        async def counted(*args: Any, **kwargs: Any) -> Any:
            kind = _task_kind()
            key = f"{self._role}.{name}"
            blocking = (
                name == "read"
                and args
                and isinstance(args[0], ReadRequest)
                and args[0].block.total_seconds() > 0
            )
            start = time.perf_counter()
            result = await attr(*(_unwrap(a) for a in args), **{k: _unwrap(v) for k, v in kwargs.items()})
            elapsed = time.perf_counter() - start
            if blocking:
                label = f"{key} (block, got work)" if result else f"{key} (block, idle timeout)"
                self._tally.add(label, WAIT, elapsed)
            else:
                self._tally.add(key, kind if kind != WAIT else OP, elapsed)
            if name == "subscribe":
                return CountingSubscription(result, self._tally)
            return result

        return counted


class WireCounter:
    """Counts driver-level traffic per side by patching the drivers' send paths (restored on exit).

    - redis: ``send_packed_command`` calls (one per command or pipeline, i.e. per round trip; a
      SUBSCRIBE's confirmation is read separately) and new TCP connections (``_connect``).
    - postgres (psycopg): ``AsyncCursor.execute`` calls (hotmesh-postgres runs autocommit, one
      statement per execute) and new connections.
    - NATS (nats-py): ``request`` (every KV / JetStream API call and JetStream publish),
      ``flush`` (PING/PONG) and fire-and-forget ``publish`` (no reply awaited).
    """

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self._undo: list[Callable[[], None]] = []

    def _patch(self, owner: Any, name: str, label: str, *, classmethod_: bool = False) -> None:
        original = owner.__dict__[name]
        func = original.__func__ if classmethod_ else original
        counts = self.counts

        async def patched(*args: Any, **kwargs: Any) -> Any:
            counts[(label, SIDE.get(), _task_kind())] += 1
            return await func(*args, **kwargs)

        setattr(owner, name, classmethod(patched) if classmethod_ else patched)
        self._undo.append(lambda: setattr(owner, name, original))

    def _patch_nats(self, client: Any) -> None:
        """request and flush are round trips; a publish inside a request is not counted twice."""
        counts = self.counts
        request, flush, publish = client.request, client.flush, client.publish

        async def counted_request(*args: Any, **kwargs: Any) -> Any:
            counts[("nats request", SIDE.get(), _task_kind())] += 1
            token = _IN_REQUEST.set(True)
            try:
                return await request(*args, **kwargs)
            finally:
                _IN_REQUEST.reset(token)

        async def counted_flush(*args: Any, **kwargs: Any) -> Any:
            counts[("nats flush (PING/PONG)", SIDE.get(), _task_kind())] += 1
            return await flush(*args, **kwargs)

        async def counted_publish(*args: Any, **kwargs: Any) -> Any:
            if not _IN_REQUEST.get():
                reply = kwargs.get("reply") or (args[3] if len(args) > 3 else "")
                label = "nats publish (reply awaited: pull/ack)" if reply else "nats publish (no reply)"
                counts[(label, SIDE.get(), _task_kind())] += 1
            return await publish(*args, **kwargs)

        for name, new in (("request", counted_request), ("flush", counted_flush), ("publish", counted_publish)):
            original = client.__dict__[name]
            setattr(client, name, new)
            self._undo.append(lambda name=name, original=original: setattr(client, name, original))

    def install(self, scheme: str) -> None:
        """Patch the driver behind ``scheme`` (no-op for sqlite and memory)."""
        if scheme in ("redis", "rediss"):
            from redis.asyncio import connection as rconn

            self._patch(rconn.AbstractConnection, "send_packed_command", "redis command")
            self._patch(rconn.Connection, "_connect", "redis new connection")
        elif scheme in ("postgresql", "postgres"):
            import psycopg

            self._patch(psycopg.AsyncCursor, "execute", "postgres statement")
            self._patch(psycopg.AsyncConnection, "connect", "postgres new connection", classmethod_=True)
        elif scheme == "nats":
            from nats.aio.client import Client

            self._patch_nats(Client)

    def restore(self) -> None:
        """Undo the patches."""
        while self._undo:
            self._undo.pop()()


@contextlib.contextmanager
def side(name: str) -> Iterator[None]:
    """Mark the code (and every task it creates) as belonging to ``name``."""
    token = SIDE.set(name)
    try:
        yield
    finally:
        SIDE.reset(token)


async def _proxied_connection(
    config: HotMeshConfig, tally: Tally
) -> tuple[Connection, list[Any]]:
    """A Connection whose store, stream and sub are counting proxies around opened providers."""
    registry = default_registry()
    opened = []
    proxies: dict[Role, CountingProxy] = {}
    for role in (Role.STORE, Role.STREAM, Role.SUB):
        provider = registry.create(
            role, config.url_for(role), namespace=config.namespace, options=config.options.get(role.value, {})
        )
        await provider.open()
        opened.append(provider)
        proxies[role] = CountingProxy(provider, role.value, tally)
    connection = Connection(
        config,
        store=proxies[Role.STORE],  # type: ignore[arg-type]
        stream=proxies[Role.STREAM],  # type: ignore[arg-type]
        sub=proxies[Role.SUB],  # type: ignore[arg-type]
    )
    await connection.open()
    return connection, opened


async def count_round_trips(url: str, namespace: str, settings: Settings) -> dict[str, Any]:
    """Provider calls and wire traffic per sequential exec, split caller / worker.

    Caller and worker run in this process on two separate Connections, each with its own
    counting proxies, so each side's calls are told apart exactly. Counts start after a
    warm-up and end after a short settle (the worker acks after the caller already returned).
    """
    config = config_for(url, namespace)
    caller_tally, worker_tally = Tally(), Tally()
    wire = WireCounter()
    for scheme_ in schemes_of(url):
        wire.install(scheme_)
    opened: list[Any] = []
    connections: list[Connection] = []
    try:
        with side("worker"):
            worker_conn, worker_opened = await _proxied_connection(config, worker_tally)
            connections.append(worker_conn)
            opened += worker_opened
            await MeshCall.connect(TOPIC_COUNT, echo, connection=worker_conn, concurrency=10)
        with side("caller"):
            caller_conn, caller_opened = await _proxied_connection(config, caller_tally)
            connections.append(caller_conn)
            opened += caller_opened
            for i in range(max(3, settings.warmup // 5)):
                await MeshCall.exec(TOPIC_COUNT, [i], connection=caller_conn)
            await asyncio.sleep(0.2)
            before = (caller_tally.snapshot(), worker_tally.snapshot(), Counter(wire.counts))
            started = time.perf_counter()
            for i in range(settings.count_calls):
                result = await MeshCall.exec(TOPIC_COUNT, [i], connection=caller_conn)
                if result != i:
                    raise RuntimeError(f"exec returned {result!r}, expected {i!r}")
            elapsed = time.perf_counter() - started
            await asyncio.sleep(0.3)  # let the last ack land
            after = (caller_tally.snapshot(), worker_tally.snapshot(), Counter(wire.counts))
    finally:
        wire.restore()
        await MeshCall.shutdown(grace=2.0)
        for connection in connections:
            await connection.aclose()
        for provider in reversed(opened):
            with contextlib.suppress(Exception):
                await provider.aclose()
    n = settings.count_calls

    def split(
        delta: Counter[tuple[str, str]], seconds: dict[tuple[str, str], float] | None = None
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {OP: {}, WAIT: {}, BACKGROUND: {}, "ms": {}}
        for (name, kind), value in sorted(delta.items()):
            out[kind][name] = round(value / n, 3)
            if seconds is not None and "(block," not in name:  # a blocked read's time is mostly idle
                out["ms"][f"{kind}:{name}"] = round(seconds.get((name, kind), 0.0) / n * 1000, 3)
        out["total_ops"] = {"round trips": round(sum(out[OP].values()), 3)}
        return out

    def provider_side(now: tuple[Counter[tuple[str, str]], dict[tuple[str, str], float]],
                      then: tuple[Counter[tuple[str, str]], dict[tuple[str, str], float]]) -> dict[str, Any]:
        seconds = {k: v - then[1].get(k, 0.0) for k, v in now[1].items()}
        return split(now[0] - then[0], seconds)

    wire_delta = after[2] - before[2]
    wire_sides = {}
    for side_name in ("caller", "worker"):
        wire_sides[side_name] = split(
            Counter({(label, kind): v for (label, s, kind), v in wire_delta.items() if s == side_name})
        )
    return {
        "calls": n,
        "seconds": elapsed,
        "caller": provider_side(after[0], before[0]),
        "worker": provider_side(after[1], before[1]),
        "wire": wire_sides if wire_delta else None,
    }


# ---------------------------------------------------------------------------------------------
# Latency and throughput
# ---------------------------------------------------------------------------------------------


async def sequential_latency(
    topic: str, connection: HotMeshConfig, settings: Settings
) -> list[float]:
    """Seconds per exec, one call at a time, after ``warmup`` calls; stops early at ``time_cap``."""
    for i in range(settings.warmup):
        await MeshCall.exec(topic, [i], connection=connection)
    samples: list[float] = []
    deadline = time.perf_counter() + settings.time_cap
    for i in range(settings.n):
        start = time.perf_counter()
        result = await MeshCall.exec(topic, [i], connection=connection)
        samples.append(time.perf_counter() - start)
        if result != i:
            raise RuntimeError(f"exec returned {result!r}, expected {i!r}")
        if time.perf_counter() > deadline:
            break
    return samples


async def throughput(topic: str, connection: HotMeshConfig, settings: Settings) -> dict[str, Any]:
    """Calls/s with ``concurrency`` exec coroutines looping until the call or time budget ends."""
    concurrency = settings.concurrency
    errors: Counter[str] = Counter()
    warm = await asyncio.gather(
        *(MeshCall.exec(topic, [i], connection=connection) for i in range(concurrency)), return_exceptions=True
    )
    for outcome in warm:
        if isinstance(outcome, Exception):
            errors[f"warm-up {type(outcome).__name__}: {outcome}"] += 1
    issued = 0
    samples: list[float] = []
    start = time.perf_counter()
    deadline = start + settings.throughput_seconds

    async def loop() -> None:
        nonlocal issued
        while issued < settings.throughput_calls and time.perf_counter() < deadline:
            issued += 1
            begin = time.perf_counter()
            try:
                await MeshCall.exec(topic, [issued], connection=connection)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                continue
            samples.append(time.perf_counter() - begin)

    await asyncio.gather(*(loop() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    stats = summarize(samples, f"exec under concurrency {concurrency}")
    return {
        "concurrency": concurrency,
        "calls": len(samples),
        "errors": dict(errors),
        "seconds": elapsed,
        "calls_per_s": len(samples) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
    }


class WorkerProcess:
    """A separate Python process serving ``topic`` with :func:`echo`, like a real deployment."""

    def __init__(self, url: str, namespace: str, topic: str, concurrency: int) -> None:
        self.command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--url",
            url,
            "--namespace",
            namespace,
            "--topic",
            topic,
            "--concurrency",
            str(concurrency),
        ]
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60.0) -> None:
        """Spawn and wait for its ``ready`` line (printed once ``MeshCall.connect`` returned)."""
        self.process = await asyncio.create_subprocess_exec(*self.command, stdout=asyncio.subprocess.PIPE)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if line.strip() != b"ready":
            await self.stop()
            raise RuntimeError(f"worker process did not start (said {line!r})")

    async def stop(self) -> None:
        """SIGTERM (MeshCall.serve shuts down gracefully), then kill after 15 s."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def worker_main(url: str, namespace: str, topic: str, concurrency: int) -> None:
    """Entry point of the worker process: connect, say ready, serve until SIGTERM."""
    config = config_for(url, namespace)
    await MeshCall.connect(topic, echo, connection=config, concurrency=concurrency)
    print("ready", flush=True)
    await MeshCall.serve(grace=2.0)


# ---------------------------------------------------------------------------------------------
# One backend
# ---------------------------------------------------------------------------------------------


@dataclass
class BackendResult:
    """Everything measured for one backend URL (medians over ``repeat`` runs where repeated)."""

    url: str
    namespace: str
    remote_latency: dict[str, Any] | None = None
    local_latency: dict[str, Any] | None = None
    remote_throughput: dict[str, Any] | None = None
    local_throughput: dict[str, Any] | None = None
    round_trips: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def _median_of(runs: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
    merged = dict(runs[-1])
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    merged["runs"] = len(runs)
    return merged


async def _purge(url: str, namespace: str) -> None:
    """Delete everything the benchmark wrote in its namespace (every role)."""
    config = config_for(url, namespace)
    async with Connection(config) as connection:
        await connection.store.purge()
        await connection.stream.purge()
        await connection.sub.purge()
        with contextlib.suppress(Exception):
            await connection.search.purge()


async def bench_backend(url: str, settings: Settings, *, log: Callable[[str], None] = print) -> BackendResult:
    """Measure one backend in a fresh namespace; always purges it afterwards."""
    namespace = f"hmbench_{uuid.uuid4().hex[:10]}"
    result = BackendResult(url=url, namespace=namespace)
    config = config_for(url, namespace)
    scheme = urlsplit(url).scheme.lower()
    cross_process = scheme != "memory"
    worker: WorkerProcess | None = None
    try:
        if cross_process:
            worker = WorkerProcess(url, namespace, TOPIC_REMOTE, settings.worker_concurrency)
            await worker.start()
        else:
            result.notes.append("memory:// is per process: no cross-process rows")
        remote_runs: list[dict[str, Any]] = []
        local_runs: list[dict[str, Any]] = []
        remote_tp: list[dict[str, Any]] = []
        local_tp: list[dict[str, Any]] = []
        for run_index in range(settings.repeat):
            if worker is not None:
                samples = await sequential_latency(TOPIC_REMOTE, config, settings)
                remote_runs.append(summarize(samples, "exec, worker in another process"))
                remote_tp.append(await throughput(TOPIC_REMOTE, config, settings))
            await MeshCall.connect(
                TOPIC_LOCAL, echo, connection=config, concurrency=settings.worker_concurrency
            )
            samples = await sequential_latency(TOPIC_LOCAL, config, settings)
            local_runs.append(summarize(samples, "exec, worker in this process"))
            local_tp.append(await throughput(TOPIC_LOCAL, config, settings))
            await MeshCall.shutdown(grace=2.0)
            log(
                f"  run {run_index + 1}/{settings.repeat}: "
                + (f"remote p50 {remote_runs[-1]['p50_ms']:.2f} ms, {remote_tp[-1]['calls_per_s']:.0f}/s; " if remote_runs else "")
                + f"in-process p50 {local_runs[-1]['p50_ms']:.2f} ms, {local_tp[-1]['calls_per_s']:.0f}/s"
            )
        latency_keys = ("p50_ms", "p99_ms", "mean_ms")
        if remote_runs:
            result.remote_latency = _median_of(remote_runs, latency_keys)
            result.remote_throughput = _median_of(remote_tp, ("calls_per_s", "p50_ms", "p99_ms"))
        result.local_latency = _median_of(local_runs, latency_keys)
        result.local_throughput = _median_of(local_tp, ("calls_per_s", "p50_ms", "p99_ms"))
        result.runs = [
            {"remote": r, "local": l_, "remote_throughput": rt, "local_throughput": lt}
            for r, l_, rt, lt in zip(
                remote_runs or [None] * len(local_runs), local_runs, remote_tp or [None] * len(local_tp), local_tp,
                strict=True,
            )
        ]
        result.round_trips = await count_round_trips(url, namespace, settings)
    except Exception as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"  ERROR {result.error}")
    finally:
        with contextlib.suppress(Exception):
            await MeshCall.shutdown(grace=1.0)
        if worker is not None:
            await worker.stop()
        try:
            await _purge(url, namespace)
        except Exception as exc:
            result.notes.append(f"purge failed: {type(exc).__name__}: {exc}")
    return result


# ---------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------

_FLOOR_KEY = {"redis": "rtt", "rediss": "rtt", "postgresql": "rtt", "postgres": "rtt", "nats": "rtt", "sqlite": "rtt"}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _errors(throughput_result: dict[str, Any] | None) -> str:
    if not throughput_result:
        return "-"
    return str(sum(throughput_result.get("errors", {}).values()))


def format_report(results: Sequence[BackendResult], floors: dict[str, dict[str, Any]]) -> str:
    """Plain-text tables: latency (with floor multiples), throughput, round trips per call."""
    lines = [
        "exec latency (sequential) and throughput (concurrency 50); medians over runs",
        f"{'backend':<44} {'worker':<10} {'p50 ms':>8} {'p99 ms':>8} {'x floor':>8} {'calls/s@50':>11} {'p50@50':>8} {'errors@50':>9}",
    ]
    for r in results:
        floor = floors.get(r.url, {}).get(_FLOOR_KEY.get(urlsplit(r.url).scheme.lower(), ""), {})
        floor_p50 = floor.get("p50_ms") if isinstance(floor, dict) else None
        if r.error:
            lines.append(f"{r.url:<44} ERROR {r.error}")
        for label, lat, tp in (
            ("process", r.remote_latency, r.remote_throughput),
            ("in-proc", r.local_latency, r.local_throughput),
        ):
            if lat is None:
                if label == "process" and urlsplit(r.url).scheme == "memory":
                    lines.append(f"{r.url:<44} {label:<10} {'n/a (memory is per process)':>30}")
                continue
            multiple = lat["p50_ms"] / floor_p50 if floor_p50 else None
            lines.append(
                f"{r.url:<44} {label:<10} {_fmt(lat['p50_ms']):>8} {_fmt(lat['p99_ms']):>8} "
                f"{_fmt(multiple, 1):>8} {_fmt(tp['calls_per_s'] if tp else None, 0):>11} "
                f"{_fmt(tp['p50_ms'] if tp else None):>8} {_errors(tp):>9}"
            )
    lines.append("")
    lines.append("round trips per call: provider calls (op = a call made per exec; wait = a blocked wait,")
    lines.append("  woken by the backend; background = scheduler/quorum), then driver-level traffic (wire)")
    for r in results:
        if not r.round_trips:
            continue
        lines.append(f"-- {r.url}   ({r.round_trips['calls']} sequential calls, worker in-process)")
        lines.append(f"   {'':<9}{'':<12}{'':<48} {'caller':>7} {'worker':>7} {'caller ms':>10} {'worker ms':>10}")
        for source, sides in (("provider", r.round_trips), ("wire", r.round_trips.get("wire"))):
            if not sides:
                continue
            for kind in (OP, WAIT, BACKGROUND):
                names = sorted(set(sides["caller"][kind]) | set(sides["worker"][kind]))
                for name in names:
                    c, w = sides["caller"][kind].get(name), sides["worker"][kind].get(name)
                    cm = sides["caller"]["ms"].get(f"{kind}:{name}")
                    wm = sides["worker"]["ms"].get(f"{kind}:{name}")
                    lines.append(
                        f"   {source:<9}{kind:<12}{name:<48} {_fmt(c):>7} {_fmt(w):>7} {_fmt(cm, 3):>10} {_fmt(wm, 3):>10}"
                    )
            c_total = sides["caller"]["total_ops"]["round trips"]
            w_total = sides["worker"]["total_ops"]["round trips"]
            lines.append(f"   {source:<9}{'total op':<12}{'':<48} {_fmt(c_total):>7} {_fmt(w_total):>7}")
    return "\n".join(lines)


def _code_location() -> str:
    """Where the measured hotmesh package was imported from (a checkout or a snapshot)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(sys.modules[MeshCall.__module__].__file__ or "")))


async def run(urls: Sequence[str], settings: Settings, *, floors_n: int, note: str = "") -> dict[str, Any]:
    """Floors, then every backend in turn; returns a JSON-ready dict."""
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
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "note": note,
        "code": _code_location(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, load {tuple(round(x, 2) for x in os.getloadavg())}",
        "settings": asdict(settings),
        "floors": floors,
        "results": [asdict(r) for r in results],
        "_objects": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line (also the worker process's entry point with ``--worker``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", action="append", help="backend URL (repeatable); 'sqlite' = a temp file")
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run under 60 s in total")
    parser.add_argument("--repeat", type=int, help="runs per measurement (median reported)")
    parser.add_argument("-n", type=int, help="sequential calls per latency run")
    parser.add_argument("--json", help="write all results to this file")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. the commit measured)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(args.url[0], args.namespace, args.topic, args.concurrency))
        return 0
    settings = QUICK if args.quick else FULL
    if args.repeat is not None:
        settings = Settings(**{**asdict(settings), "repeat": args.repeat})
    if args.n is not None:
        settings = Settings(**{**asdict(settings), "n": args.n})
    started = time.perf_counter()
    report = asyncio.run(run(args.url or list(DEFAULT_URLS), settings, floors_n=100 if args.quick else 500, note=args.note))
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
