"""A process that takes one lease and dies holding it, for test T-1 (not a public API).

With a skewed wall clock (``HOTMESH_KIT_CLOCK_SKEW``, :mod:`hotmesh_conformance._skew`) it opens
its provider, waits for a line on stdin (the test's "begin"), then tries until it holds either the namespace's one due timer (``timer``: ``claim_due_timers``) or the one
message of a stream (``delivery``: ``Stream.read``), prints ``<what> <id> <delivery count>
<monotonic seconds>`` and exits at once without completing or acking anything, as a worker killed
while holding work would. The next probe, with another skew, shows when the lease ran out: by the
store's (or stream server's) clock, not by either host's wall clock.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import timedelta

from hotmesh.providers import ReadRequest, Role, default_registry
from hotmesh_conformance._skew import skew_clock_from_env

POLL = 0.02
"""Seconds between two timer claims (the kit measures the lease, not the scheduler)."""


async def _main(args: argparse.Namespace) -> None:
    registry = default_registry()
    lease = timedelta(seconds=args.lease)
    await asyncio.to_thread(sys.stdin.readline)  # the test says when to begin
    deadline = time.monotonic() + args.wait
    if args.what == "timer":
        store = registry.create(Role.STORE, args.store, namespace=args.namespace, options={})
        await store.open()
        while time.monotonic() < deadline:
            claimed = await store.claim_due_timers(limit=1, lease=lease)
            if claimed:
                _report_and_die(f"timer {claimed[0].timer.timer_id} 1")
            await asyncio.sleep(POLL)
    else:
        stream = registry.create(Role.STREAM, args.stream, namespace=args.namespace, options={})
        await stream.open()
        request = ReadRequest(
            stream=args.topic, group="probe", consumer=f"probe-{os.getpid()}", count=1,
            block=timedelta(seconds=0.5), visibility_timeout=lease,
        )  # fmt: skip
        while time.monotonic() < deadline:
            for delivery in await stream.read(request):
                _report_and_die(f"delivery {delivery.id} {delivery.delivery_count}")
    print("nothing", flush=True)


def _report_and_die(what: str) -> None:
    print(f"{what} {time.monotonic():.6f}", flush=True)
    os._exit(0)  # holding the lease: nothing is completed, acked or closed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("timer", "delivery"))
    for name in ("--store", "--stream", "--namespace", "--topic"):
        parser.add_argument(name, required=True)
    parser.add_argument("--lease", type=float, required=True, help="seconds")
    parser.add_argument("--wait", type=float, default=120.0, help="give up after this many seconds")
    skew_clock_from_env()
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
