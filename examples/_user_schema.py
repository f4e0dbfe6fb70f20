"""The 'user' schema shared by the MeshData examples (seed README: "Workflow Data Indexes")."""

from __future__ import annotations

import os
import sys

from hotmesh import MeshData, errors, load_config

schema = {
    "schema": {
        "id": {"type": "TAG", "sortable": False},
        "first": {"type": "TEXT", "sortable": False, "nostem": True},
        "active": {"type": "TAG", "sortable": False},
        "created": {"type": "NUMERIC", "sortable": True},
    },
    "index": "user",
    "prefix": ["user"],
}

NAMESPACE = "meshdata"


async def open_mesh_data() -> MeshData:
    """MeshData on the configured backend; exits 0 with a note when it has no search provider."""
    mesh_data = MeshData(load_config(), schema)
    try:
        await mesh_data.create_search_index("user", namespace=NAMESPACE)
    except errors.CapabilityNotSupportedError as exc:
        url = os.environ.get("HOTMESH_URL", "the default")
        print(f"skipped: {url} has no search provider ({exc}); set HOTMESH_SEARCH_URL, e.g. sqlite:///search.db")
        sys.exit(0)
    return mesh_data


async def user_target(name: str) -> str:
    """The 'user' entity's workflow: adds a searchable field (`active`) and returns."""
    search = await MeshData.workflow.search()
    await search.set("active", "yes")
    return f"Welcome, {name}."
