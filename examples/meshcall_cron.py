"""Run an idempotent cron, then interrupt it (seed README: "Run a Cron", "Interrupt a Cron").

The seed's nightly cron uses ``interval="0 0 * * *"`` (a cron expression) or a phrase such as
"1 day"; this demo uses "1 second" so that it finishes quickly.
"""

from __future__ import annotations

import asyncio

from hotmesh import MeshCall

ticks: list[int] = []


async def nightly() -> None:
    ticks.append(len(ticks) + 1)
    print(f"cron cycle {len(ticks)}")


async def run_my_cron(cron_id: str, interval: str = "0 0 * * *") -> bool:
    return await MeshCall.cron("my.cron.function", nightly, id=cron_id, interval=interval, max_cycles=24)


async def main() -> None:
    await MeshCall.interrupt("my.cron.function", id="myNightlyCron123")  # clean start when re-run
    started = await run_my_cron("myNightlyCron123", interval="1 second")
    again = await run_my_cron("myNightlyCron123", interval="1 second")
    print(f"started={started} started_again={again}")
    assert started and not again  # idempotent by id
    await asyncio.sleep(2.5)
    assert await MeshCall.interrupt("my.cron.function", id="myNightlyCron123")
    seen = len(ticks)
    await asyncio.sleep(1.5)
    print(f"{seen} cycles before the interrupt, {len(ticks) - seen} after")
    assert seen >= 2 and len(ticks) == seen
    await MeshCall.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
