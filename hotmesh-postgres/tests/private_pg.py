"""A private PostgreSQL server in a temporary directory, for tests that restart or kill it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = Path(os.environ.get("HOTMESH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> bool:
    """Whether initdb/pg_ctl exist (and, as root, a postgres user to run them)."""
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return False
    if os.geteuid() == 0:
        return shutil.which("setpriv") is not None and _uid("postgres") is not None
    return True


def _uid(name: str) -> tuple[int, int] | None:
    try:
        import pwd

        entry = pwd.getpwnam(name)
    except (KeyError, ImportError):
        return None
    return entry.pw_uid, entry.pw_gid


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateServer:
    """initdb + pg_ctl as an unprivileged user; never touches the shared server."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="hotmesh-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.started = False
        ids = _uid("postgres") if os.geteuid() == 0 else None
        self._prefix: list[str] = []
        if ids is not None:
            os.chown(self.root, *ids)
            self._prefix = ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*self._prefix, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=self.root,
        )

    def init(self) -> None:
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8")

    def start(self) -> None:
        """Start and wait. A first start whose port another process took after ``_free_port()``
        picked it (any client's ephemeral port comes from the same range) tries a fresh port;
        a restart keeps its port."""
        log = self.root / "log"
        for attempt in range(3):
            offset = log.stat().st_size if log.exists() else 0
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
            try:
                self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", opts, "-w", "start")
                self.started = True
                return
            except subprocess.CalledProcessError:
                with log.open("rb") as text:
                    text.seek(offset)
                    clash = b"Address already in use" in text.read()
                if not clash or self.started or attempt == 2:
                    raise
                self.port = _free_port()

    def stop(self, mode: str = "fast") -> None:
        """``mode="immediate"`` is a crash: no checkpoint, recovery from the WAL on start."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_for: float = 0.0, mode: str = "fast") -> None:
        self.stop(mode)
        time.sleep(down_for)
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
