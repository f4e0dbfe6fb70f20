"""Search record data (seed README: MeshData "Query Record Data").

``find_where`` takes one-dimensional conditions (all must hold) and returns the total count and a
page of records; where the search provider supports it, ``native=`` passes a query through in the
backend's own syntax (FT.SEARCH on Redis with the query engine).
"""

from __future__ import annotations

import asyncio
import uuid

from _user_schema import NAMESPACE, open_mesh_data, user_target

from hotmesh import MeshFlow


async def main() -> None:
    mesh_data = await open_mesh_data()
    await mesh_data.connect("user", user_target, namespace=NAMESPACE)
    run = uuid.uuid4().hex[:8]
    for n, name in enumerate(["Ada", "Grace", "Alan"]):  # three active users, created now
        user_id = f"{name.lower()}-{run}"
        await mesh_data.exec(
            "user", [name], id=user_id, ttl="1 hour", search={"data": {"id": user_id, "first": name, "created": n}}, namespace=NAMESPACE
        )

    results = await mesh_data.find_where(
        "user",
        query=[{"field": "active", "is": "=", "value": "yes"}, {"field": "id", "is": "in", "value": [f"ada-{run}", f"alan-{run}"]}],
        limit={"start": 0, "size": 100},
        return_=["id", "first", "created", "active"],
        sort={"field": "created", "order": "DESC"},
        namespace=NAMESPACE,
    )
    print(f"{results.count} active users matched: {results.data}")
    assert [r["first"] for r in results.data] == ["Alan", "Ada"]
    everyone = await mesh_data.find_where("user", query=[{"field": "active", "is": "=", "value": "yes"}], namespace=NAMESPACE)
    print(f"all active users in namespace {NAMESPACE!r}: {everyone.count}")
    await MeshFlow.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
