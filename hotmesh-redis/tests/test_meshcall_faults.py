"""MeshCall across Redis faults (issue 6): a crash mid-workload, a server down at start, a worker
whose server goes away and comes back.

Each test owns a private redis-server (Debian's, AOF with ``appendfsync always``, free port,
temporary directory) and worker processes it stops by PID, whatever the outcome.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hotmesh import MeshCall, connect, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.errors import ProviderError

from .conftest import PrivateRedis, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(150)]

WORKER = Path(__file__).with_name("_meshcall_worker.py")
TOPIC = "faults.echo"
SECRET = "s3cr3t-Pa55"
CALLS = 200
IN_FLIGHT = 20
OUTAGE = 8.0
"""Seconds Redis stays down: longer than redis-py's own reconnect retries, so callers see errors."""
RETRY_FOR = 90.0
"""Seconds a caller keeps retrying one call through ProviderErrors (generous: a loaded 2-core box)."""


class Worker:
    """One ``_meshcall_worker.py`` process; its stderr (router logs) goes to a file."""

    def __init__(self, url: str, namespace: str, directory: Path) -> None:
        self.ledger = directory / "ledger.txt"
        self.log = directory / "worker.log"
        self.command = [
            sys.executable, str(WORKER), "--url", url, "--namespace", namespace,
            "--topic", TOPIC, "--ledger", str(self.ledger),
        ]  # fmt: skip
        self.proc: subprocess.Popen[str] | None = None

    def launch(self) -> subprocess.Popen[str]:
        with open(self.log, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=log, text=True)
        return self.proc

    async def start(self) -> None:
        """Launch and wait for its ``ready`` line."""
        stdout = self.launch().stdout
        assert stdout is not None
        with anyio.fail_after(60):
            line = await anyio.to_thread.run_sync(stdout.readline, abandon_on_cancel=True)
        assert line.strip() == "ready", f"worker did not start: {line!r}\n{self.log_tail()}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; only the process we started."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    def runs(self) -> dict[str, list[str]]:
        """Call id -> the run ids the callback recorded for it (one per run)."""
        found: dict[str, list[str]] = collections.defaultdict(list)
        if self.ledger.exists():
            for line in self.ledger.read_text(encoding="utf-8").splitlines():
                call_id, run, _pid = line.split()
                found[call_id].append(run)
        return found

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return "(no worker log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def worker(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[Worker]:
    process = Worker(private_redis.url, "t_mcfault", tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def caller(private_redis: PrivateRedis) -> AsyncIterator[HotMeshConfig]:
    """The test process's MeshCall configuration; its connections close at teardown."""
    yield load_config(url=private_redis.url, namespace="t_mcfault", environ={})
    await MeshCall.shutdown(grace=1.0)


async def call(config: HotMeshConfig, call_id: str, errors: collections.Counter[str]) -> Any:
    """One logical call: exec with a fixed id, retried (same id) while Redis is unreachable."""
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            return await MeshCall.exec(TOPIC, [call_id], connection=config, id=call_id, ttl="10 minutes", timeout=60)
        except ProviderError:
            errors[call_id] += 1
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.2)


async def test_calls_complete_once_across_a_redis_crash(
    private_redis: PrivateRedis, worker: Worker, caller: HotMeshConfig
) -> None:
    """SIGKILL Redis (AOF, fsync always) mid-workload and restart it on the same directory: every
    call returns one result, made by a run the worker recorded; the results survive the crash."""
    await worker.start()
    ids = [f"c{i:03d}" for i in range(CALLS)]
    results: dict[str, Any] = {}
    errors: collections.Counter[str] = collections.Counter()
    limiter = anyio.CapacityLimiter(IN_FLIGHT)
    quarter_done = anyio.Event()

    async def one(call_id: str) -> None:
        async with limiter:
            results[call_id] = await call(caller, call_id, errors)
        if len(results) >= CALLS // 4:
            quarter_done.set()

    with anyio.fail_after(120):
        async with anyio.create_task_group() as group:
            for call_id in ids:
                group.start_soon(one, call_id)
            await quarter_done.wait()
            done_before_crash = set(results)
            private_redis.kill()
            await anyio.sleep(OUTAGE)
            await anyio.to_thread.run_sync(private_redis.start)  # replays the AOF
    context = f"\nworker log:\n{worker.log_tail()}\nredis log:\n{private_redis.log_tail()}"
    assert len(done_before_crash) < CALLS, "the crash came after the workload" + context
    assert worker.alive(), "the worker died" + context

    runs = worker.runs()
    assert sorted(results) == ids, context
    for call_id in ids:
        result = results[call_id]
        assert isinstance(result, dict) and result.get("id") == call_id, (call_id, result)
        assert result["run"] in runs[call_id], f"{call_id}: result of an unrecorded run {result}" + context
    assert set(runs) == set(ids), "the callback ran for an id nobody called"

    # Ask again: every id returns the same result (stored once, kept through the crash by the
    # AOF), and the callback does not run again.
    again: dict[str, Any] = {}

    async def repeat(call_id: str) -> None:
        async with limiter:
            again[call_id] = await call(caller, call_id, errors)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            for call_id in ids:
                group.start_soon(repeat, call_id)
    changed = {i: (results[i], again[i]) for i in ids if again[i] != results[i]}
    assert not changed, f"two different results for one call: {changed}"
    assert worker.runs() == runs, "a repeated call ran the callback again"
    reruns = {i: len(r) for i, r in runs.items() if len(r) > 1}
    print(
        f"\n{CALLS} calls, {len(done_before_crash)} done before the crash, {sum(errors.values())}"
        f" ProviderErrors retried by callers, callbacks run more than once (at least once): {reruns}"
    )


async def test_redis_down_at_start_names_host_and_port_never_the_password(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"redis://ann:{SECRET}@127.0.0.1:{port}/0?connect_timeout=1"

    async def noop() -> None:
        return None

    attempts = {
        "MeshCall.connect": lambda: MeshCall.connect(TOPIC, noop, connection=url),
        "MeshCall.exec": lambda: MeshCall.exec(TOPIC, [], connection=url, timeout=5),
        "hotmesh.connect": lambda: connect(url),
    }
    # One after another (each waits out redis-py's reconnect retries, ~4 s). Run concurrently they
    # would contend the process-wide asyncio.Lock of hotmesh/_runtime.py, which stays bound to
    # the event loop of an earlier test and then raises RuntimeError (a core issue).
    try:
        for name, attempt in attempts.items():
            with pytest.raises(ProviderError) as caught:
                await attempt()
            message = str(caught.value)
            assert f"127.0.0.1:{port}" in message, f"{name}: {message}"
            text = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
            assert SECRET not in text, f"{name} shows the password: {text}"
    finally:
        await MeshCall.shutdown(grace=1.0)
    assert SECRET not in caplog.text


async def test_worker_keeps_serving_when_redis_goes_away_and_comes_back(
    private_redis: PrivateRedis, worker: Worker, caller: HotMeshConfig
) -> None:
    """The worker's router retries failed reads with backoff instead of dying: after an outage
    longer than redis-py's reconnect retries and the router's backoff cap (5 s), the same
    process serves new calls."""
    errors: collections.Counter[str] = collections.Counter()
    await worker.start()
    with anyio.fail_after(30):
        before = await call(caller, "before", errors)
    assert before["id"] == "before"
    private_redis.stop()
    await anyio.sleep(OUTAGE)
    assert worker.alive(), worker.log_tail()
    await anyio.to_thread.run_sync(private_redis.start)
    context = f"\nworker log:\n{worker.log_tail()}"
    with anyio.fail_after(60):
        after = await call(caller, "after", errors)
    assert after["id"] == "after" and after["run"] in worker.runs()["after"], context
    assert worker.alive(), context
    # The outage reached the worker (its router logged a failed read), so it did survive one.
    assert "ProviderError" in worker.log.read_text(errors="replace"), context
