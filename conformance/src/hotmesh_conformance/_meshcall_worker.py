"""A MeshCall worker process for the kit's multi-process tests (not a public API).

Writes one ledger line per callback run (``<pid> call <value>``, ``<pid> tick <monotonic>``),
fsynced, so the test can check how often and when each call or cron cycle ran across processes.
``HOTMESH_KIT_CLOCK_SKEW`` skews the process's wall clock (:mod:`hotmesh_conformance._skew`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from hotmesh import MeshCall, load_config
from hotmesh.engine.scheduler import Scheduler
from hotmesh_conformance._skew import skew_clock_from_env


def _append(ledger: str, line: str) -> None:
    with open(ledger, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


async def _main(args: argparse.Namespace) -> None:
    config = load_config(
        store=args.store,
        stream=args.stream,
        sub=args.sub,
        url=args.store,
        namespace=args.namespace,
        timer_lease=args.timer_lease,
        environ={},
    )
    if args.die_holding_timers:
        _die_after_claiming(args.ledger)

    async def work(value: object) -> dict[str, object]:
        _append(args.ledger, f"{os.getpid()} call {value}")
        if args.crash_on is not None and value == args.crash_on:
            os._exit(77)  # a poison call: it kills every worker that runs it
        if args.hang_on is not None and value == args.hang_on:
            await asyncio.sleep(3600)  # the test kills this process here
        return {"value": value, "pid": os.getpid()}

    async def tick() -> None:
        _append(args.ledger, f"{os.getpid()} tick {time.monotonic():.6f}")

    if args.cron_id:
        started = await MeshCall.cron(
            args.topic, tick, id=args.cron_id, interval=args.interval, max_cycles=args.max_cycles, connection=config
        )
        print(f"started {started}", flush=True)
    else:
        await MeshCall.connect(args.topic, work, connection=config, visibility_timeout=args.visibility, concurrency=4)
        print("ready", flush=True)
    await MeshCall.serve()


def _die_after_claiming(ledger: str) -> None:
    """Crash point: the scheduler claims due timers, then the process dies before firing them."""

    async def claim_then_die(self: Scheduler) -> int:
        claimed = await self.store.claim_due_timers(limit=self.batch, lease=self.lease)
        if claimed:
            for claim in claimed:
                _append(ledger, f"{os.getpid()} claimed {claim.timer.timer_id}")
            os._exit(9)
        return 0

    Scheduler.fire_due = claim_then_die  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--store", "--stream", "--sub", "--namespace", "--topic", "--ledger"):
        parser.add_argument(name, required=True)
    parser.add_argument("--visibility", type=float, default=60.0)
    parser.add_argument("--hang-on", type=int, default=None)
    parser.add_argument("--crash-on", type=int, default=None)
    parser.add_argument("--cron-id", default=None)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--max-cycles", type=int, default=None)
    parser.add_argument("--timer-lease", type=float, default=None)
    parser.add_argument("--die-holding-timers", action="store_true")
    skew_clock_from_env()
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
