"""B-3 partition and B-1 crash on a private Redis, checked by the kit's ledger checker.

MeshFlow workflows run in two worker processes (the kit's worker script) while the test freezes
the server with SIGSTOP for 3 s (every connection hangs: the nastiest partition, since no socket
is closed) and later SIGKILLs it and restarts it on its AOF. Every workflow must complete with one
outcome, no transition applied twice, every activity at least once, nothing pending, no worker
dead (docs/promises.md C2, C3, C8). The figures go to the fault report (HOTMESH_FAULT_REPORT).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hotmesh_conformance.ledger import Figures
from hotmesh_conformance.serverfaults import alternate, pause, run_through

from .conftest import PrivateRedis

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]


async def test_server_paused_then_killed_mid_workflows_each_completes_once(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """SIGSTOP the server 3 s, SIGCONT, then SIGKILL it and restart it on its AOF (fsync always):
    60 workflows complete once each, nothing lost, nothing duplicated, nothing pending. Three rounds of both (serverfaults.ROUNDS)."""

    def pids() -> list[int]:
        assert private_redis.proc is not None
        return [private_redis.proc.pid]

    async def partition() -> float:
        return await pause(pids, 3.0)

    async def restart() -> float:
        await asyncio.to_thread(private_redis.kill)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_redis.start)
        return time.monotonic()

    figures = Figures("server_paused_then_killed", "redis")
    await run_through(
        private_redis.url, "partition", tmp_path / "ledger.txt", alternate(partition, restart), figures
    )
    assert figures.lost == 0 and figures.duplicates == 0
