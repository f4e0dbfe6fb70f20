"""Lifecycle shared by the four SQLite providers: naming, options, open/close, purge."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any, ClassVar

from hotmesh.backends.sqlite._config import parse_options, parse_path
from hotmesh.backends.sqlite._db import Database
from hotmesh.providers import Capability, ProviderBase, ProviderInfo, Survives

#: Capabilities every SQLite provider has: one file on a local disk, shared by processes.
BASE_CAPABILITIES = frozenset({Capability.MULTI_PROCESS, Capability.DURABLE})


class SqliteProvider(ProviderBase):
    """Base of the SQLite providers.

    Subclasses name their ``role``, the ``tables`` holding their namespace's rows (for
    ``purge``/``is_empty``, Provider rule 4) and their declared capabilities.
    """

    provider_name = "sqlite"
    tables: ClassVar[tuple[str, ...]] = ()
    declared: ClassVar[frozenset[Capability]] = BASE_CAPABILITIES

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "hotmesh",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        # Provider rule 1: parse and validate only; the file is touched in open().
        self._path = parse_path(url)
        self._bind_namespace(namespace)
        self._options = parse_options(options, url=url)
        self._db = Database(self._path, self._options, self.role)

    @property
    def path(self) -> str:
        """Absolute path of the database file (the store compares it for the outbox)."""
        return self._path

    async def open(self) -> None:
        """Open the file, switch to WAL, create the schema (Provider rule 1)."""
        await self._db.open()

    async def aclose(self) -> None:
        """Close the connection (Provider rule 5)."""
        await self._db.close()


    async def info(self) -> ProviderInfo:
        """SQLite version and the real durability of a commit."""
        version, mode = await self._db.info()
        if mode.endswith("FULL") or mode.endswith("EXTRA"):
            words, survives = "fsync of the WAL on every commit (survives power loss)", Survives.POWER_LOSS
        else:
            words = "WAL fsynced at checkpoints (survives a process crash; power loss may drop the last commits)"
            survives = Survives.PROCESS_CRASH
        return ProviderInfo(
            name="sqlite", server_version=version, durability=f"{words}; {mode} at {self._path}", survives=survives
        )

    async def purge(self) -> None:
        """Delete this role's rows of the namespace (Provider rule 4)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> None:
            for table in self.tables:
                conn.execute(f"DELETE FROM {table} WHERE ns = ?", (ns,))

        await self._db.write(run)

    async def is_empty(self) -> bool:
        """True when none of this role's tables holds a row of the namespace."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            for table in self.tables:
                row = conn.execute(
                    f"SELECT 1 FROM {table} WHERE ns = ? LIMIT 1", (ns,)
                ).fetchone()
                if row is not None:
                    return False
            return True

        return await self._db.read(run)
