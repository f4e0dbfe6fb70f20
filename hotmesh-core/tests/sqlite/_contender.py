"""One contending process for test_multiprocess: races on job ids, timers and stream reads.

Run as ``python _contender.py <url> <namespace> <start_at> <jobs> <stream_messages>``. It waits
until the wall clock reaches ``start_at`` (so the processes start together), then prints one JSON
line: the job ids it created, the timer ids it completed and the stream message ids it acked.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

import anyio

from hotmesh.backends.sqlite import SqliteStore, SqliteStream
from hotmesh.providers import NewJob, ReadRequest


async def contend(url: str, namespace: str, start_at: float, jobs: int) -> dict[str, list[str]]:
    created: list[str] = []
    fired: list[str] = []
    acked: list[str] = []
    async with SqliteStore(url, namespace=namespace) as store, SqliteStream(
        url, namespace=namespace
    ) as stream:
        await anyio.sleep(max(0.0, start_at - time.time()))
        for i in range(jobs):
            result = await store.create_job(NewJob(f"job-{i}", {"n": i}))
            if result.created:
                created.append(f"job-{i}")
            # Interleave timer claims with creations so the races overlap.
            for claim in await store.claim_due_timers(limit=2, lease=timedelta(seconds=60)):
                if await store.complete_timer(claim):
                    fired.append(claim.timer.timer_id)
            for delivery in await stream.read(
                ReadRequest("work", "g", f"c{id(store)}", count=2, visibility_timeout=timedelta(60))
            ):
                if await stream.ack("work", "g", [delivery.id]) == 1:
                    acked.append(delivery.id)
        while True:
            claims = await store.claim_due_timers(limit=5, lease=timedelta(seconds=60))
            deliveries = await stream.read(
                ReadRequest("work", "g", "c", count=5, visibility_timeout=timedelta(60))
            )
            if not claims and not deliveries:
                break
            for claim in claims:
                if await store.complete_timer(claim):
                    fired.append(claim.timer.timer_id)
            for delivery in deliveries:
                if await stream.ack("work", "g", [delivery.id]) == 1:
                    acked.append(delivery.id)
    return {"created": created, "fired": fired, "acked": acked}


def main() -> None:
    url, namespace, start_at, jobs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    result = anyio.run(contend, url, namespace, start_at, jobs)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
