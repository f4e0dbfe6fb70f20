"""Three processes race for jobs, timers and messages: each is won exactly once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import requires_server

from hotmesh.providers import Message, Timer
from hotmesh_postgres import PostgresStore, PostgresStream

pytestmark = [pytest.mark.anyio, requires_server, pytest.mark.timeout(120)]
WORKER = Path(__file__).with_name("_race_worker.py")


async def test_three_processes_win_each_item_once(url: str, namespace: str) -> None:
    async with (
        PostgresStore(url, namespace=namespace, options={"sweep_interval": 0}) as store,
        PostgresStream(url, namespace=namespace) as stream,
    ):
        due = datetime.now(UTC) - timedelta(seconds=1)
        for i in range(30):
            await store.add_timer(Timer(f"t{i}", due, Message("fire", {"i": i})))
        await stream.publish([Message("q", {"i": i}) for i in range(90)])
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), url, namespace, f"p{n}",
                stdout=subprocess.PIPE,
            )
            for n in range(3)
        ]
        outs = [json.loads((await p.communicate())[0]) for p in procs]
        assert all(p.returncode == 0 for p in procs)
        created = sorted(i for o in outs for i in o["created"])
        timers = sorted(t for o in outs for t in o["timers"])
        messages = sorted(int(m) for o in outs for m in o["messages"])
        assert created == list(range(60)), "Store rule 1: each job created exactly once"
        assert timers == sorted(f"t{i}" for i in range(30)), "Store rule 10: each timer fired once"
        assert messages == list(range(90)), "Stream rule 3: each message consumed once per group"
        await store.purge()
        await stream.purge()
