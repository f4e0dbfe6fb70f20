"""Create an indexed, searchable record (seed README: MeshData "Workflow Record Data").

``connect`` serves the 'user' entity with a target workflow; ``exec`` creates the record with
initial searchable data and runs the target, which adds one more field (`active`) itself. To stay
short the worker runs in this process; any process that called ``connect`` would serve it.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from _user_schema import NAMESPACE, open_mesh_data, user_target

from hotmesh import MeshFlow


async def main() -> None:
    mesh_data = await open_mesh_data()
    await mesh_data.connect("user", user_target, namespace=NAMESPACE)

    async def new_user(id: str, name: str) -> str:
        return await mesh_data.exec(
            "user",
            [name],
            id=id,
            ttl="infinity",
            search={"data": {"id": id, "name": name, "timestamp": int(time.time() * 1000)}},
            namespace=NAMESPACE,
        )

    user_id = f"jim123-{uuid.uuid4().hex[:8]}"  # the seed uses 'jim123'; fresh per run
    response = await new_user(user_id, "James")
    print(response)
    assert response == "Welcome, James."
    await MeshFlow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
