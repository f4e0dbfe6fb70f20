"""PostgreSQL providers for HotMesh: store, stream, sub and search on one database.

Import the classes directly (``PostgresStore(url, namespace=..., options=...)``) or let the
``postgresql://`` URL scheme pick them through the ``hotmesh`` entry point.
"""

from __future__ import annotations

from hotmesh_postgres._cli import migrate_url, status_url
from hotmesh_postgres._options import PostgresOptions
from hotmesh_postgres._search import PostgresSearch
from hotmesh_postgres._store import PostgresStore
from hotmesh_postgres._stream import PostgresStream
from hotmesh_postgres._sub import PostgresSub, PostgresSubscription

__all__ = [
    "PostgresOptions",
    "PostgresSearch",
    "PostgresStore",
    "PostgresStream",
    "PostgresSub",
    "PostgresSubscription",
    "migrate_url",
    "status_url",
]

__version__ = "0.1.0"
