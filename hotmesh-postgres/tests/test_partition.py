"""B-3 partition and B-1 crash on a private PostgreSQL, checked by the kit's ledger checker.

MeshFlow workflows run in two worker processes (the kit's worker script) while the test freezes
the server, the postmaster and every backend, with SIGSTOP for 3 s (every connection hangs, no
socket is closed: the nastiest partition) and later crashes it (``pg_ctl stop -m immediate``,
recovery from the WAL on start). Every workflow must complete with one outcome, no transition
applied twice, every activity at least once, nothing pending, no worker dead (docs/promises.md
C2, C3, C8). The figures go to the fault report (HOTMESH_FAULT_REPORT).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import private_pg
import pytest

from hotmesh_conformance.ledger import Figures
from hotmesh_conformance.serverfaults import alternate, children_of, pause, run_through

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


@pytest.fixture
def server() -> Iterator[private_pg.PrivateServer]:
    if not private_pg.available():
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found (set HOTMESH_PG_BIN)"
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(f"CI=true, but {reason}", pytrace=False)
        pytest.skip(reason)
    srv = private_pg.PrivateServer()
    srv.init()
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def _postmaster(server: private_pg.PrivateServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


async def test_server_paused_then_crashed_mid_workflows_each_completes_once(
    server: private_pg.PrivateServer, tmp_path: Path
) -> None:
    """SIGSTOP the postmaster and its backends 3 s, SIGCONT, then crash and restart the server:
    60 workflows complete once each, nothing lost, nothing duplicated, nothing pending. Three rounds of both (serverfaults.ROUNDS)."""

    def pids() -> list[int]:
        postmaster = _postmaster(server)
        return [postmaster, *children_of(postmaster)]

    async def partition() -> float:
        return await pause(pids, 3.0)

    async def restart() -> float:
        await asyncio.to_thread(server.restart, 0.5, "immediate")
        return time.monotonic()

    figures = Figures("server_paused_then_crashed", "postgresql")
    await run_through(
        server.url, "partition", tmp_path / "ledger.txt", alternate(partition, restart), figures
    )
    assert figures.lost == 0 and figures.duplicates == 0
