"""Several processes on one file: exactly one winner per job id, timer and stream message.

This is the property MULTI_PROCESS promises for the SQLite providers: every read-modify-write is
one ``BEGIN IMMEDIATE`` transaction, so creations (Store rule 1), timer claims (Store rule 10) and
stream deliveries (Stream rule 3) cannot be won twice, whichever process runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from hotmesh.backends.sqlite import SqliteStore, SqliteStream
from hotmesh.providers import Message, Timer

PROCESSES = 3
JOBS = 60
TIMERS = 60
MESSAGES = 60
CONTENDER = Path(__file__).with_name("_contender.py")


async def _prepare(url: str, namespace: str) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    async with SqliteStore(url, namespace=namespace) as store, SqliteStream(
        url, namespace=namespace
    ) as stream:
        for i in range(TIMERS):
            assert await store.add_timer(Timer(f"timer-{i}", past, Message("fire", {"i": i})))
        await stream.publish([Message("work", {"i": i}) for i in range(MESSAGES)])


async def _check_and_purge(url: str, namespace: str) -> None:
    async with SqliteStore(url, namespace=namespace) as store, SqliteStream(
        url, namespace=namespace
    ) as stream:
        assert await store.next_timer_due() is None
        assert await stream.backlog("work", "g") == 0
        await store.purge()
        await stream.purge()
        assert await store.is_empty() and await stream.is_empty()


def test_three_processes_one_winner_each(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    namespace = "t_multi"
    anyio.run(_prepare, url, namespace)
    start_at = time.time() + 1.5  # all three import and open first, then race
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(CONTENDER), url, namespace, str(start_at), str(JOBS)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(PROCESSES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    created = Counter(job for r in results for job in r["created"])
    fired = Counter(timer for r in results for timer in r["fired"])
    acked = Counter(msg for r in results for msg in r["acked"])
    assert created == Counter({f"job-{i}": 1 for i in range(JOBS)})
    assert fired == Counter({f"timer-{i}": 1 for i in range(TIMERS)})
    assert len(acked) == MESSAGES and set(acked.values()) == {1}
    # The race really was a race: more than one process won something.
    assert sum(1 for r in results if r["created"] or r["fired"] or r["acked"]) >= 2
    anyio.run(_check_and_purge, url, namespace)


OPENER = """
import sys, anyio
from hotmesh.backends.sqlite import SqliteSearch, SqliteStore, SqliteStream, SqliteSub
async def main():
    for cls in (SqliteStore, SqliteStream, SqliteSub, SqliteSearch):
        async with cls(sys.argv[1], namespace="t_fresh") as provider:
            assert await provider.is_empty()
anyio.run(main)
"""


def test_processes_creating_a_fresh_file_at_once(tmp_path: Path) -> None:
    """WAL switch and schema creation race safely (both run under the write lock / busy timeout)."""
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, url], stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
