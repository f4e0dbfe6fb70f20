"""Read record data directly from a workflow record (seed README: MeshData "Read Record Data")."""

from __future__ import annotations

import asyncio
import uuid

from _user_schema import NAMESPACE, open_mesh_data, user_target

from hotmesh import MeshFlow


async def main() -> None:
    mesh_data = await open_mesh_data()
    await mesh_data.connect("user", user_target, namespace=NAMESPACE)
    user_id = f"jimbo123-{uuid.uuid4().hex[:8]}"  # the seed reads 'jimbo123'; created here first
    await mesh_data.exec(
        "user", ["Jimbo"], id=user_id, search={"data": {"id": user_id, "name": "Jimbo", "timestamp": 1}}, namespace=NAMESPACE
    )

    data = await mesh_data.get("user", user_id, fields=["id", "name", "timestamp", "active"], namespace=NAMESPACE)
    print(data)
    assert data == {"id": user_id, "name": "Jimbo", "timestamp": 1, "active": "yes"}
    await MeshFlow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
