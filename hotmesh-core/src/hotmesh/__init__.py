"""HotMesh: durable workflow orchestration with no central server.

All state lives in a backend you already run (Redis, PostgreSQL, NATS JetStream, or an embedded
SQLite file); any number of stateless Python processes cooperate through it.

    from hotmesh import MeshCall

    await MeshCall.connect("greet", greet)              # in a worker process
    print(await MeshCall.exec("greet", ["world"]))      # from anywhere
"""

from __future__ import annotations

from hotmesh import errors
from hotmesh.config import HotMeshConfig, load_config
from hotmesh.connection import Connection, connect
from hotmesh.engine.router import RetryPolicy
from hotmesh.meshcall import MeshCall
from hotmesh.meshdata import MeshData
from hotmesh.meshflow import MeshFlow, workflow

__version__ = "0.1.0"

__all__ = [
    "Connection",
    "HotMeshConfig",
    "MeshCall",
    "MeshData",
    "MeshFlow",
    "RetryPolicy",
    "__version__",
    "connect",
    "errors",
    "load_config",
    "workflow",
]
