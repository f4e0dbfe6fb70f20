"""HotMesh: durable workflow orchestration with no central server.

All state lives in a backend you already run (Redis, PostgreSQL, NATS JetStream, or an embedded
SQLite file); any number of stateless Python processes cooperate through it.
"""

from __future__ import annotations

from hotmesh import errors

__version__ = "0.1.0"

__all__ = ["__version__", "errors"]
