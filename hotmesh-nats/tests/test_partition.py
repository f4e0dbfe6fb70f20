"""B-3 partition and B-1 crash on a private nats-server, checked by the kit's ledger checker.

MeshFlow workflows run in two worker processes (the kit's worker script) while the test freezes
nats-server with SIGSTOP for 3 s (connections hang, no socket is closed: the nastiest partition)
and later SIGKILLs it and starts it again on its JetStream store directory. Every workflow must
complete with one outcome, no transition applied twice, every activity at least once, nothing
pending, no worker dead (docs/promises.md C2, C3, C8). The figures go to the fault report
(HOTMESH_FAULT_REPORT).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from nats_servers import SERVER, PrivateServer

from hotmesh_conformance.ledger import Figures
from hotmesh_conformance.serverfaults import alternate, pause, run_through

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]
FAST_RECONNECT = {"reconnect_time_wait": 0.2, "request_timeout": 3.0}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    if not Path(SERVER).exists():
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail("CI=true, but nats-server is not installed", pytrace=False)
        pytest.skip("nats-server is not installed")
    srv = PrivateServer(tmp_path / "partition" / "js")
    srv.start()
    yield srv
    srv.stop()


async def test_server_paused_then_killed_mid_workflows_each_completes_once(server: PrivateServer, tmp_path: Path) -> None:
    """SIGSTOP nats-server 3 s, SIGCONT, then SIGKILL it and start it on the same store: 60
    workflows complete once each, nothing lost, nothing duplicated, nothing pending. Three rounds of both (serverfaults.ROUNDS)."""
    await server.wait_ready()

    def pids() -> list[int]:
        assert server.proc is not None
        return [server.proc.pid]

    async def partition() -> float:
        return await pause(pids, 3.0)

    async def restart() -> float:
        server.kill()
        await anyio.sleep(0.5)
        server.start()
        await server.wait_ready()
        return time.monotonic()

    figures = Figures("server_paused_then_killed", "nats")
    options = {role: FAST_RECONNECT for role in ("store", "stream", "sub")}
    await run_through(
        server.url, "partition", tmp_path / "ledger.txt", alternate(partition, restart), figures,
        options=options,
    )  # fmt: skip
    assert figures.lost == 0 and figures.duplicates == 0
