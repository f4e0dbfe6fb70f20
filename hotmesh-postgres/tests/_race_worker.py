"""One racing process for test_multiprocess: prints JSON of what it won."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import timedelta

from hotmesh.providers import NewJob, ReadRequest
from hotmesh_postgres import PostgresStore, PostgresStream


async def main(url: str, namespace: str, name: str) -> None:
    async with (
        PostgresStore(url, namespace=namespace, options={"sweep_interval": 0}) as store,
        PostgresStream(url, namespace=namespace) as stream,
    ):
        created = [i for i in range(60) if (await store.create_job(NewJob(f"j{i}"))).created]
        timers: list[str] = []
        while claimed := await store.claim_due_timers(limit=3, lease=timedelta(seconds=30)):
            for c in claimed:
                if await store.complete_timer(c):
                    timers.append(c.timer.timer_id)
        messages: list[str] = []
        request = ReadRequest("q", "g", name, count=4, block=timedelta(seconds=0.3))
        while got := await stream.read(request):
            await stream.ack("q", "g", [d.id for d in got])
            messages.extend(str(d.message.body["i"]) for d in got)
        print(json.dumps({"created": created, "timers": timers, "messages": messages}))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
