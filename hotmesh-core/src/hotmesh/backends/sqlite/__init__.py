"""The embedded SQLite providers: all four roles in one WAL-mode file, ``sqlite:///path.db``.

Only the standard library's ``sqlite3`` is used. Several processes on one host may share a file:
every read-modify-write is one ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

from hotmesh.backends.sqlite.search import SqliteSearch
from hotmesh.backends.sqlite.store import SqliteStore
from hotmesh.backends.sqlite.stream import SqliteStream
from hotmesh.backends.sqlite.sub import SqliteSub, SqliteSubscription

__all__ = ["SqliteSearch", "SqliteStore", "SqliteStream", "SqliteSub", "SqliteSubscription"]
