"""Create a search index for the 'user' entity (seed README: MeshData "Workflow Data Indexes").

It is fine to call ``create_search_index`` on every start: it only creates what is missing.
"""

from __future__ import annotations

import asyncio

from _user_schema import NAMESPACE, open_mesh_data

from hotmesh import MeshFlow


async def main() -> None:
    mesh_data = await open_mesh_data()  # creates the 'user' index
    await mesh_data.create_search_index("user", namespace=NAMESPACE)  # again: a no-op
    print("index 'user' is ready (TEXT first, TAG id/active, NUMERIC created)")
    await MeshFlow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
