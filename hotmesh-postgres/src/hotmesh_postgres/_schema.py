"""Per-namespace schema: names, versioned migrations, purge.

Every namespace lives in its own schema ``hotmesh_<namespace>`` so that two namespaces never see
each other's rows (Provider rule 3) and purging one is a ``DROP SCHEMA`` (Provider rule 4).
Migrations are append-only and run under ``pg_advisory_xact_lock`` so many processes may start at
once; they only ever create, never drop or rewrite.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, sql

from hotmesh.providers import check_namespace
from hotmesh_postgres import _sql_v1, _sql_v2, _sql_v3, _sql_v4, _sql_v5

_MAX_IDENTIFIER = 63


@dataclass(frozen=True)
class Migration:
    """One schema version: its number and the SQL (with @S@/@CHAN@/@LOCK@ placeholders)."""

    version: int
    description: str
    script: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "store, stream, sub and search tables and functions",
        _sql_v1.TABLES + _sql_v1.STREAM_FUNCTIONS + _sql_v1.STORE_FUNCTIONS,
    ),
    Migration(2, "signal delivery and waiters serialized per signal id", _sql_v2.SIGNAL_FUNCTIONS),
    Migration(3, "waiters indexed by job (swept with expired jobs)", _sql_v3.WAITERS_BY_JOB),
    Migration(4, "search documents in C-collated id order per index", _sql_v4.SEARCH_KEYSET),
    Migration(5, "jobs pages keep room for updates in place (fillfactor 80)", _sql_v5.JOBS_FILLFACTOR),
)
"""All migrations in order. Never edit a released one: append a new version."""

LATEST_VERSION = MIGRATIONS[-1].version

#: Tables owned by each role; purge() empties these and is_empty() checks them.
ROLE_TABLES: dict[str, tuple[str, ...]] = {
    "store": ("jobs", "steps", "timers", "signals", "waiters", "cache"),
    "stream": ("messages", "groups", "deliveries", "dead_letters"),
    "sub": ("sub_payloads",),
    "search": ("search_docs", "search_indexes"),
}


def _digest(text: str, size: int = 16) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:size]


@dataclass(frozen=True)
class SchemaNames:
    """Every database name derived from one namespace."""

    schema: str
    stream_channel: str
    sub_channel: str
    lock_prefix: str

    @classmethod
    def for_namespace(cls, namespace: str) -> SchemaNames:
        """Derive names; long namespaces are shortened with a digest so they never collide."""
        check_namespace(namespace)
        schema = f"hotmesh_{namespace}"
        if len(schema) > _MAX_IDENTIFIER:
            schema = f"hotmesh_{namespace[:36]}_{_digest(namespace)}"
        digest = _digest(schema)
        return cls(
            schema=schema,
            stream_channel=f"hms_{digest}",
            sub_channel=f"hmp_{digest}",
            lock_prefix=f"hotmesh:{schema}:",
        )

    @property
    def ident(self) -> sql.Identifier:
        """The schema as a quoted identifier."""
        return sql.Identifier(self.schema)

    def qualified(self, name: str) -> sql.Composed:
        """``"schema"."name"``."""
        return sql.SQL("{}.{}").format(self.ident, sql.Identifier(name))

    def render(self, script: str) -> str:
        """Fill a migration's placeholders (identifiers quoted, literals quoted)."""
        return (
            script.replace("@S@", self.ident.as_string())
            .replace("@CHAN@", sql.Literal(self.stream_channel).as_string())
            .replace("@LOCK@", sql.Literal(self.lock_prefix).as_string())
        )


async def _lock(conn: AsyncConnection[Any], names: SchemaNames) -> None:
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (names.lock_prefix + "schema",)
    )


async def current_version(conn: AsyncConnection[Any], names: SchemaNames) -> int:
    """The applied schema version (0 when the schema does not exist)."""
    cur = await conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL",
        (f"{names.ident.as_string()}.{sql.Identifier('_migrations').as_string()}",),
    )
    row = await cur.fetchone()
    if not row or not row[0]:
        return 0
    cur = await conn.execute(
        sql.SQL("SELECT coalesce(max(version), 0) FROM {}").format(names.qualified("_migrations"))
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(
    conn: AsyncConnection[Any], names: SchemaNames, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Apply pending migrations in one transaction under an advisory lock; return the versions.

    The unlocked version check first makes the common case (already migrated) one cheap query.
    """
    if await current_version(conn, names) >= migrations[-1].version:
        return []
    applied: list[int] = []
    async with conn.transaction():
        await _lock(conn, names)
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(names.ident))
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY,"
                " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(names.qualified("_migrations"))
        )
        version = await current_version(conn, names)
        for migration in migrations:
            if migration.version <= version:
                continue
            await conn.execute(names.render(migration.script).encode())
            await conn.execute(
                sql.SQL("INSERT INTO {} (version, description) VALUES (%s, %s)").format(
                    names.qualified("_migrations")
                ),
                (migration.version, migration.description),
            )
            applied.append(migration.version)
    return applied


async def schema_exists(conn: AsyncConnection[Any], names: SchemaNames) -> bool:
    """Whether the namespace schema exists."""
    cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (names.schema,))
    return await cur.fetchone() is not None


async def role_is_empty(conn: AsyncConnection[Any], names: SchemaNames, role: str) -> bool:
    """True when none of ``role``'s tables holds a row (or the schema is gone)."""
    if await current_version(conn, names) == 0:
        return True
    for table in ROLE_TABLES[role]:
        cur = await conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(names.qualified(table))
        )
        row = await cur.fetchone()
        if row and row[0]:
            return False
    return True


async def purge_role(conn: AsyncConnection[Any], names: SchemaNames, role: str) -> None:
    """Empty ``role``'s tables; drop the whole schema once every role is empty.

    Dropping leaves nothing behind on a shared server; providers of the namespace still open
    re-create the schema on their next call (see _base.PostgresProvider._run).
    """
    async with conn.transaction():
        await _lock(conn, names)
        if await current_version(conn, names) == 0:
            return
        await conn.execute(
            sql.SQL("TRUNCATE {}").format(
                sql.SQL(", ").join(names.qualified(t) for t in ROLE_TABLES[role])
            )
        )
        for other in ROLE_TABLES:
            if not await role_is_empty(conn, names, other):
                return
        await conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(names.ident))
