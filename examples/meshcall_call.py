"""Call any function in any service (seed README: "Call a Function").

Run ``python examples/meshcall_call.py``: it starts a worker process that connects
``my.demo.function`` to the mesh, then calls it from this process and prints the result. With no
configuration both processes share the embedded SQLite file; set HOTMESH_URL (e.g.
redis://127.0.0.1:6379) to run the same code on a server backend.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from hotmesh import MeshCall


async def my_demo_function(value: str) -> dict[str, str]:
    """Your code goes here; the result must be JSON-serializable."""
    return {"hello": value}


async def worker() -> None:
    await MeshCall.connect("my.demo.function", my_demo_function)
    print("worker: connected my.demo.function", flush=True)
    await MeshCall.serve()  # until SIGTERM/SIGINT, then a graceful shutdown


async def caller() -> None:
    result = await MeshCall.exec("my.demo.function", ["something"], timeout=30)
    print(f"caller: {result}")
    assert result == {"hello": "something"}
    await MeshCall.shutdown()


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        asyncio.run(worker())
        return
    process = subprocess.Popen([sys.executable, __file__, "--worker"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        print(process.stdout.readline().strip())  # wait until the worker is connected
        asyncio.run(caller())
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
