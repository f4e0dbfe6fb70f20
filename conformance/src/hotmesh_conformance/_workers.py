"""Worker processes for the kit's crash and fault tests (not a public API)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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

