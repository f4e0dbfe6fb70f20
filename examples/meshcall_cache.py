"""Call and cache a function (seed README: "Cache a Function").

The function runs only when the cached result under ``id`` has expired or was flushed.
"""

from __future__ import annotations

import asyncio

from hotmesh import MeshCall

calls = 0


async def my_demo_function(value: str) -> dict[str, str]:
    global calls
    calls += 1
    return {"hello": value}


async def main() -> None:
    await MeshCall.connect("my.cached.function", my_demo_function)
    await MeshCall.flush("my.cached.function", id="myid123")  # start clean when re-run
    first = await MeshCall.exec("my.cached.function", ["anything"], id="myid123", ttl="15 minutes")
    second = await MeshCall.exec("my.cached.function", ["other"], id="myid123", ttl="15 minutes")
    print(f"first={first} second={second} (function ran {calls} time)")
    assert first == second == {"hello": "anything"} and calls == 1
    await MeshCall.flush("my.cached.function", id="myid123")
    third = await MeshCall.exec("my.cached.function", ["fresh"], id="myid123", ttl="15 minutes")
    print(f"after flush: {third} (function ran {calls} times)")
    assert third == {"hello": "fresh"} and calls == 2
    await MeshCall.flush("my.cached.function", id="myid123")
    await MeshCall.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
