"""Lifecycle shared by the PostgreSQL providers: URL, options, pool, migrations, error seam."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import psycopg
from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg_pool import AsyncConnectionPool

from hotmesh.errors import ConfigError, ProviderError, redact_url
from hotmesh.providers import ProviderBase, ProviderInfo, Survives, url_scheme
from hotmesh_postgres import _pools, _schema
from hotmesh_postgres._options import PostgresOptions, parse_options

T = TypeVar("T")

SCHEMES = ("postgresql", "postgres")

#: SQLSTATEs meaning "the namespace schema is not there (any more)": re-migrate and retry once.
_MISSING_OBJECT = (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName, pg_errors.UndefinedFunction)


def driver_url(url: str) -> str:
    """libpq accepts postgresql:// and postgres:// as is; anything else is a ConfigError."""
    scheme = url_scheme(url)
    if scheme not in SCHEMES:
        raise ConfigError(
            f"the postgres provider takes postgresql:// or postgres:// URLs, not {scheme}://"
        )
    try:
        urlsplit(url).port  # noqa: B018 - validates the port without I/O
    except ValueError as exc:
        raise ConfigError(f"malformed PostgreSQL URL {redact_url(url)!r}: {exc}") from None
    return url


class PostgresProvider(ProviderBase):
    """Base of the four roles: one pool per provider, one schema (``hotmesh_<namespace>``) per
    namespace."""

    provider_name = "postgres"

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "hotmesh",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._url = driver_url(url)
        self._safe_url = redact_url(url)
        self._options: PostgresOptions = parse_options("postgres", options)
        self._bind_namespace(namespace)
        self._names = _schema.SchemaNames.for_namespace(namespace)
        self._pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        self._closed = False
        self._open_lock: asyncio.Lock | None = None

    # -- identity --------------------------------------------------------------------------
    @property
    def options(self) -> PostgresOptions:
        """The validated options."""
        return self._options

    @property
    def names(self) -> _schema.SchemaNames:
        """Schema, channel and lock names of this namespace."""
        return self._names

    @property
    def database_key(self) -> tuple[str, str]:
        """Identifies the database and schema: equal keys share tables (Store rule 6)."""
        parts = urlsplit(self._url)
        return (f"{parts.hostname}:{parts.port or 5432}/{parts.path.lstrip('/')}", self._names.schema)

    # -- lifecycle -------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect, check the server and run pending migrations (Provider rule 1)."""
        if self._closed:
            raise ProviderError(f"{self._safe_url}: the postgres {self.role} provider is closed")
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._pool is None:
                await self._connect_and_migrate()
                await self._after_open()

    async def _connect_and_migrate(self) -> None:
        try:
            conn = await AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self._options.connect_timeout))
            )
        except psycopg.Error as exc:
            raise self._error("cannot connect", exc) from exc
        try:
            async with conn:
                if self._options.migrate:
                    await _schema.migrate(conn, self._names)
        except psycopg.Error as exc:
            raise self._error("cannot migrate the schema", exc) from exc
        self._pool = await _pools.acquire(self._url, self._options)

    async def _after_open(self) -> None:
        """Hook for subclasses (background tasks)."""

    async def _before_close(self) -> None:
        """Hook for subclasses (stop background tasks, listeners)."""

    async def aclose(self) -> None:
        """Close the pool; idempotent (Provider rule 5)."""
        if self._closed:
            return
        self._closed = True
        await self._before_close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await _pools.release(self._url, self._options, pool)

    # -- the error seam (Provider rule 6) ----------------------------------------------------
    def _error(self, what: str, exc: BaseException) -> ProviderError:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ProviderError(f"postgres {self.role} at {self._safe_url}: {what}: {detail}")

    async def _pool_or_raise(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        if self._closed:
            raise ProviderError(f"{self._safe_url}: the postgres {self.role} provider is closed")
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        return self._pool

    async def _run(
        self,
        work: Callable[[AsyncConnection[Any]], Awaitable[T]],
        *,
        retry: bool = True,
        remigrate: bool = True,
    ) -> T:
        """Run ``work`` on a pooled connection, translating driver errors.

        A missing schema (purged by another provider of the namespace) is re-created and the
        work retried once: the failed statement changed nothing. A broken connection (server
        restart, pg_terminate_backend) makes the pool check its idle connections, and, when
        ``retry`` is true (the operation is idempotent), the work is retried once on a fresh one.
        """
        pool = await self._pool_or_raise()
        migrated = False
        retried = False
        while True:
            try:
                async with pool.connection() as conn:
                    return await work(conn)
            except _MISSING_OBJECT as exc:
                if migrated or not remigrate or not self._options.migrate:
                    raise self._error("schema missing", exc) from exc
                migrated = True
                await self._remigrate()
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # Drop the other dead connections too (after a restart all of them are).
                await pool.check()
                if retried or not retry:
                    raise self._error("connection failed", exc) from exc
                retried = True
            except psycopg.Error as exc:
                raise self._error("query failed", exc) from exc

    async def _remigrate(self) -> None:
        pool = await self._pool_or_raise()
        try:
            async with pool.connection() as conn:
                await _schema.migrate(conn, self._names)
        except psycopg.Error as exc:
            raise self._error("cannot migrate the schema", exc) from exc

    async def _fetchall(
        self, query: Any, params: Any = None, *, retry: bool = True, remigrate: bool = True
    ) -> list[tuple[Any, ...]]:
        async def work(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(query, params)
            return await cur.fetchall() if cur.description is not None else []

        return await self._run(work, retry=retry, remigrate=remigrate)

    async def _fetchone(self, query: Any, params: Any = None, *, retry: bool = True) -> tuple[Any, ...]:
        rows = await self._fetchall(query, params, retry=retry)
        if not rows:
            raise ProviderError(f"postgres {self.role} at {self._safe_url}: no row returned")
        return rows[0]

    async def _execute(self, query: Any, params: Any = None, *, retry: bool = True) -> int:
        async def work(conn: AsyncConnection[Any]) -> int:
            cur = await conn.execute(query, params)
            return cur.rowcount

        return await self._run(work, retry=retry)

    # -- info, purge, is_empty ---------------------------------------------------------------
    async def info(self) -> ProviderInfo:
        """Server version and what a commit survives (promise C9)."""
        rows = await self._fetchall(
            "SELECT current_setting('server_version'), current_setting('fsync'),"
            " current_setting('synchronous_commit'), current_setting('autovacuum')"
        )
        version, fsync, sync_commit, autovacuum = rows[0]
        durability = (
            f"WAL, fsync={fsync}, synchronous_commit={sync_commit}"
            + (" (a commit survives a server crash)" if fsync == "on" and sync_commit != "off" else "")
            + (
                "; autovacuum=off: the store's sweep VACUUMs the namespace's tables itself"
                if autovacuum != "on"
                else ""
            )
        )
        if sync_commit == "off":  # WAL flushed by the WAL writer a little later: a crash loses the last commits
            survives = Survives.NOTHING
        elif fsync != "on":
            survives = Survives.PROCESS_CRASH
        else:
            survives = Survives.POWER_LOSS
        return ProviderInfo(name="postgres", server_version=str(version), durability=durability, survives=survives)

    async def purge(self) -> None:
        """Delete this role's rows in the namespace; drop the schema when all roles are empty."""
        names = self._names

        async def work(conn: AsyncConnection[Any]) -> None:
            await _schema.purge_role(conn, names, self.role)

        await self._run_no_migrate(work)

    async def is_empty(self) -> bool:
        """True when this role holds no rows in the namespace (Provider rule 4)."""
        names = self._names

        async def work(conn: AsyncConnection[Any]) -> bool:
            return await _schema.role_is_empty(conn, names, self.role)

        return await self._run_no_migrate(work)

    async def _run_no_migrate(self, work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Like _run but never re-creates the schema (purge/is_empty must not leave one)."""
        pool = await self._pool_or_raise()
        for attempt in range(2):
            try:
                async with pool.connection() as conn:
                    return await work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if attempt:
                    raise self._error("connection failed", exc) from exc
                await pool.check()
            except psycopg.Error as exc:
                raise self._error("query failed", exc) from exc
        raise AssertionError("unreachable")
