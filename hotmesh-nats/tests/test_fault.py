"""Faults: a private JetStream server restarted mid-use loses nothing; consumers resume."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from hotmesh.providers import Message, NewJob, ReadRequest, Transition, TransitionStatus
from hotmesh_nats.store import NatsStore
from hotmesh_nats.stream import NatsStream

pytestmark = pytest.mark.anyio
SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


class PrivateServer:
    """A nats-server with JetStream on a free port and its own storage directory."""

    def __init__(self, store_dir: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.store_dir = store_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def wait_ready(self) -> None:
        with anyio.fail_after(10):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", self.port)
                    await stream.aclose()
                    return
                except OSError:
                    await anyio.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def crash(self) -> None:
        """SIGKILL: unlike a graceful stop, nothing tells waiting pull requests they are gone."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    """Started here, stopped here (only the process this fixture started)."""
    if not Path(SERVER).exists():
        pytest.skip("nats-server is not installed")
    srv = PrivateServer(tmp_path / "js")
    srv.start()
    yield srv
    srv.stop()


async def _retry(fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
    """Retry an operation while the client reconnects."""
    with anyio.fail_after(20):
        while True:
            try:
                return await fn(*args, **kwargs)
            except Exception:
                await anyio.sleep(0.2)


async def test_restart_keeps_messages_and_consumers(server: PrivateServer) -> None:
    """Published messages survive a restart; the durable group resumes where it was."""
    await server.wait_ready()
    opts = {"reconnect_time_wait": 0.2}
    async with NatsStream(server.url, namespace="t_fault", options=opts) as stream, NatsStore(
        server.url, namespace="t_fault", options=opts
    ) as store:
        ids = await stream.publish([Message("q", {"i": i}) for i in range(10)])
        req = ReadRequest("q", "g", "c", count=4, visibility_timeout=timedelta(seconds=1))
        first = await stream.read(req)
        assert await stream.ack("q", "g", [d.id for d in first[:2]]) == 2
        await store.create_job(NewJob("job", {"n": 0}))
        applied = await store.apply_transition(Transition("job", "s1", increment={"n": 1}))
        assert applied.status is TransitionStatus.APPLIED

        server.stop()
        server.start()
        await server.wait_ready()

        seen: dict[str, int] = {}
        with anyio.fail_after(30):
            while len(seen) < 8:
                for d in await _retry(stream.read, req):
                    seen[d.id] = d.delivery_count
                    await _retry(stream.ack, "q", "g", [d.id])
        assert sorted(seen, key=int) == ids[2:]  # nothing lost, acked ones not redelivered
        assert await _retry(stream.backlog, "q", "g") == 0
        assert await _retry(store.get_job, "job") == {"n": 1}
        dup = await _retry(store.apply_transition, Transition("job", "s1", increment={"n": 1}))
        assert dup.status is TransitionStatus.DUPLICATE
        await stream.purge()
        await store.purge()


async def test_a_blocked_read_asks_again_as_soon_as_the_client_reconnects(server: PrivateServer) -> None:
    """A pull request waiting at the server dies with it: after a restart the blocked read
    returns once the client has reconnected, instead of waiting out its 20 s block (the router
    then reads again). Before this, recovery after a server restart took the router's block
    time (5 s) plus the request timeout: 6.5-9.5 s measured in test_partition."""
    await server.wait_ready()
    opts = {"reconnect_time_wait": 0.2}
    async with NatsStream(server.url, namespace="t_fault", options=opts) as stream:
        req = ReadRequest("q", "g", "c", count=1, visibility_timeout=timedelta(seconds=5),
                          block=timedelta(seconds=20))  # fmt: skip
        assert await stream.read(dataclasses.replace(req, block=timedelta(0))) == []  # consumer made
        returned = anyio.Event()

        async def read_once() -> None:
            await stream.read(req)
            returned.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(read_once)
            await anyio.sleep(0.5)  # the pull request now waits at the server
            server.crash()
            server.start()
            await server.wait_ready()
            restarted = anyio.current_time()
            with anyio.fail_after(10):  # not 20 s
                await returned.wait()
            came_back = anyio.current_time() - restarted
        assert came_back < 5.0, f"the read came back {came_back:.1f}s after the restart"
        ids = await _retry(stream.publish, [Message("q", {"after": True})])
        got = await _retry(stream.read, dataclasses.replace(req, block=timedelta(seconds=5)))
        assert [d.id for d in got] == ids
        await stream.purge()
