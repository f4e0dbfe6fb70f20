"""Server faults under running workflows, for a backend's own test suite (catalogue B-1, B-3).

A backend package starts a private server it may pause or kill, then calls :func:`run_through`
with the faults to inject; the workflows run in worker *processes* (the kit's worker script), the
test process only starts them, injects the faults and runs the kit's checker
(:func:`hotmesh_conformance.ledger.check`) at the end. Two helpers cover the usual faults:
:func:`pause` (SIGSTOP every server process for a while, then SIGCONT: connections hang, the
nastiest partition) and the backend's own kill-and-restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from hotmesh import Connection, MeshFlow, load_config
from hotmesh._runtime import runtime
from hotmesh.errors import HotMeshError
from hotmesh.providers import Role, default_registry
from hotmesh_conformance import _flows
from hotmesh_conformance._workers import QUEUE, FlowWorkers
from hotmesh_conformance.ledger import Figures, check

__all__ = ["Fault", "alternate", "children_of", "pause", "run_through"]

Fault = tuple[str, Callable[[], Awaitable[float]]]
"""``(kind, inject)``: ``kind`` is ``"restart"`` or ``"partition"``; ``inject()`` does it and
returns the ``time.monotonic()`` moment the server serves again (recovery is measured from it)."""


ROUNDS = 3
"""How often each server fault is injected in one run: the report's recovery medians need more
than one measure per backend."""


def alternate(partition: Callable[[], Awaitable[float]], restart: Callable[[], Awaitable[float]],
              *, rounds: int = ROUNDS) -> list[Fault]:  # fmt: skip
    """A pause, then a restart, ``rounds`` times over (the faults of a backend's partition test)."""
    return [("partition", partition), ("restart", restart)] * rounds


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc), e.g. a postmaster's backends."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


async def pause(pids: Callable[[], Sequence[int]], seconds: float) -> float:
    """SIGSTOP the server processes (``pids()``, all of them, parent first), wait, SIGCONT them
    (children first); returns the moment they run again. Only processes the test started."""
    stopped = list(pids())
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    return time.monotonic()


def _shape(i: int) -> list[Any]:
    return [["act", i], ["sleep", 0.3], ["act", 1000 + i], ["act", 2000 + i]]


async def run_through(
    url: str,
    namespace: str,
    ledger_path: Path,
    faults: Sequence[Fault],
    figures: Figures,
    *,
    count: int = 60,
    workers: int = 2,
    options: dict[str, dict[str, Any]] | None = None,
    timeout: float = 90.0,
) -> Figures:
    """Run ``count`` workflows (three activities around a sleep) in ``workers`` worker processes;
    inject each fault once a share of the activities ran; then check every outcome with the kit's
    checker. The namespace is purged afterwards."""
    config = load_config(url=url, namespace=namespace, timer_lease=3, options=options or {}, environ={})
    group = FlowWorkers(config, ledger_path)
    connection = Connection(config)  # ours, so the test closes exactly what it opened
    try:
        for _ in range(workers):
            group.start(visibility=3.0)
        client = MeshFlow.Client(connection=connection)
        handles = []
        for first in range(0, count, 20):
            handles += await asyncio.gather(
                *(client.workflow.start(_flows.run_shape, args=[_shape(i)], task_queue=QUEUE, workflow_id=f"wf-{i}")
                  for i in range(first, min(first + 20, count)))
            )  # fmt: skip
        total = 3 * count
        for n, (kind, inject) in enumerate(faults, start=1):
            deadline = time.monotonic() + 60
            while len({r.key for r in group.book.runs()}) < total * n // (len(faults) + 2):
                assert time.monotonic() < deadline, f"no progress before fault {n} ({kind})"
                await asyncio.sleep(0.02)
            back = await inject()
            figures.faults += 1
            (figures.recovery_server_restart if kind == "restart" else figures.recovery_partition).append(back)
        assert len({r.key for r in group.book.runs()}) < total, "every activity ran before the last fault"
        marks = {"restart": list(figures.recovery_server_restart), "partition": list(figures.recovery_partition)}
        figures.recovery_server_restart.clear()
        figures.recovery_partition.clear()
        store = default_registry().create(Role.STORE, url, namespace=namespace, options=(options or {}).get("store", {}))
        stream = default_registry().create(Role.STREAM, url, namespace=namespace, options=(options or {}).get("stream", {}))
        await _open(store, timeout)
        await _open(stream, timeout)
        try:
            await check(
                [(h, _flows.evaluate(_shape(i), {})) for i, h in enumerate(handles)],
                group.book, figures, store=store, stream=stream, queue=QUEUE, timeout=timeout,
                calls=[4] * count, restarts=marks["restart"], partitions=marks["partition"],
            )  # fmt: skip
            assert group.dead() == [], f"a worker process died: exit codes {group.dead()}"
        finally:
            for provider in (store, stream):
                with contextlib.suppress(HotMeshError):
                    await provider.purge()
                await provider.aclose()
    finally:
        group.stop()
        engine = runtime.engines.pop(id(connection), None)
        with contextlib.suppress(Exception):
            if engine is not None:
                await engine.stop(1.0)
        with contextlib.suppress(Exception):
            await connection.aclose()
        sub = default_registry().create(Role.SUB, url, namespace=namespace, options=(options or {}).get("sub", {}))
        with contextlib.suppress(Exception):
            await sub.open()
            await sub.purge()
        await sub.aclose()
    return figures


async def _open(provider: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await provider.open()
            return
        except HotMeshError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
