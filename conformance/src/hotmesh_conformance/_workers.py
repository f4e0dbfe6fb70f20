"""Worker processes for the kit's crash and fault tests (not a public API)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from hotmesh.config import HotMeshConfig
from hotmesh.providers import Role
from hotmesh_conformance.ledger import Ledger

QUEUE = "kitflow"


class WorkerProcesses:
    """Worker processes started by a test and stopped (killed if need be) after it."""

    def __init__(self, config: HotMeshConfig, ledger: Path) -> None:
        self.config = config
        self.ledger = ledger
        self.processes: list[subprocess.Popen[str]] = []

    def dead(self) -> list[int | None]:
        """Exit codes of the workers that are no longer running."""
        return [p.returncode for p in self.processes if p.poll() is not None]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def replace_while_dying(
    start: Callable[[], subprocess.Popen[str]],
    finished: Callable[[], Awaitable[bool]],
    *,
    first: subprocess.Popen[str],
    exit_code: int,
    max_deaths: int,
    timeout: float,
) -> list[float]:
    """Keep one worker running until ``finished()``, ``first`` and then one from ``start()`` each
    time the last one died (it must die with ``exit_code``: a poison's doing, not a bug). Fails
    after ``max_deaths`` deaths (an endless crash loop) or ``timeout`` seconds. Returns when each
    death was seen (``time.monotonic()``)."""
    worker = first
    deaths: list[float] = []
    deadline = time.monotonic() + timeout
    while not await finished():
        assert time.monotonic() < deadline, f"still not finished after {len(deaths)} worker deaths"
        if worker.poll() is not None:
            assert worker.returncode == exit_code, f"a worker exited with {worker.returncode}, not {exit_code}"
            deaths.append(time.monotonic())
            assert len(deaths) <= max_deaths, f"{len(deaths)} worker deaths: an endless crash loop"
            worker = start()
        await asyncio.sleep(0.1)
    return deaths


class FlowWorkers(WorkerProcesses):
    """MeshFlow worker processes (``_meshflow_worker``) sharing one activity and commit ledger."""

    def __init__(self, config: HotMeshConfig, ledger: Path) -> None:
        super().__init__(config, ledger)
        self.book = Ledger(ledger)

    def start(self, *extra: str, env: dict[str, str] | None = None, visibility: float = 2.0,
              concurrency: int = 50) -> subprocess.Popen[str]:  # fmt: skip
        command = [
            sys.executable, "-m", "hotmesh_conformance._meshflow_worker",
            "--store", self.config.url_for(Role.STORE), "--stream", self.config.url_for(Role.STREAM),
            "--sub", self.config.url_for(Role.SUB), "--namespace", self.config.namespace,
            "--queue", QUEUE, "--ledger", str(self.ledger), "--visibility", str(visibility),
            "--timer-lease", str(self.config.timer_lease), "--concurrency", str(concurrency), *extra,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.processes.append(process)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        return process

    def runs(self, name: str | None = None) -> list[list[str]]:
        """Ledger lines of activity runs (of ``name`` only, when given), split into fields."""
        if not self.ledger.exists():
            return []
        lines = [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]
        return [fields for fields in lines if name is None or fields[1:2] == [name]]



class CallWorkers(WorkerProcesses):
    """MeshCall worker processes (``_meshcall_worker``); each callback run is a line
    ``<pid> <kind> [<value>]`` of the ledger file."""

    def start(self, topic: str, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        command = [
            sys.executable, "-m", "hotmesh_conformance._meshcall_worker",
            "--store", self.config.url_for(Role.STORE), "--stream", self.config.url_for(Role.STREAM),
            "--sub", self.config.url_for(Role.SUB), "--namespace", self.config.namespace,
            "--topic", topic, "--ledger", str(self.ledger), *extra,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self.processes.append(process)
        return process

    @staticmethod
    def first_line(process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        return process.stdout.readline().strip()

    def lines(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]

