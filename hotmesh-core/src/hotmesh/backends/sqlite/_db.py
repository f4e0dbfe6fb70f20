"""One sqlite3 connection driven from worker threads, with explicit transactions.

Every call runs in a worker thread (``anyio.to_thread``), never on the event loop, and is not
abandoned on cancellation, so a transaction is always committed or rolled back before the
caller sees ``CancelledError`` (Provider rule 6). Read-modify-write work runs inside
``BEGIN IMMEDIATE``: SQLite's write lock is then taken before the first read, which makes each
such call atomic against every other connection, in this process or another.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import anyio.to_thread

from hotmesh.backends.sqlite._config import SqliteOptions
from hotmesh.backends.sqlite._schema import SCHEMA, SCHEMA_VERSION
from hotmesh.errors import HotMeshError, ProviderError

T = TypeVar("T")

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SYNC_LEVELS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def now_us() -> int:
    """This host's clock in integer microseconds (all processes of a host share it)."""
    return (datetime.now(UTC) - EPOCH) // _US


def to_us(when: datetime) -> int:
    """Exact integer microseconds of an aware datetime (no float rounding)."""
    return (when - EPOCH) // _US


def from_us(us: int) -> datetime:
    """The aware UTC datetime of integer microseconds."""
    return EPOCH + timedelta(microseconds=us)


def span_us(span: timedelta) -> int:
    """A timedelta in integer microseconds."""
    return span // _US


class Database:
    """A private connection to one SQLite file.

    Args:
        path: absolute file path.
        options: validated options (busy timeout, synchronous level).
        label: ``role`` text used in error messages.
    """

    def __init__(self, path: str, options: SqliteOptions, label: str) -> None:
        self.path = path
        self._options = options
        self._label = label
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def is_open(self) -> bool:
        """Whether ``open`` succeeded and ``close`` has not run."""
        return self._conn is not None and not self._closed

    def _fail(self, what: str, exc: BaseException) -> ProviderError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            text += " (another connection held the write lock longer than busy_timeout_ms="
            text += f"{self._options.busy_timeout_ms})"
        return ProviderError(f"sqlite {self._label} at {self.path}: {what} failed: {text}")

    async def open(self) -> None:
        """Connect, switch to WAL and create the schema (idempotent)."""
        if self._closed:
            raise ProviderError(f"sqlite {self._label} at {self.path} is closed")
        if self._conn is not None:
            return
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        with self._lock:
            if self._conn is not None:
                return
            directory = os.path.dirname(self.path) or "."
            if not os.path.isdir(directory):
                raise ProviderError(
                    f"sqlite {self._label}: the directory {directory!r} of {self.path!r} does "
                    "not exist (it is not created for you)"
                )
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self._options.busy_timeout_ms / 1000,
                )
            except sqlite3.Error as exc:
                raise self._fail("open", exc) from exc
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self._options.busy_timeout_ms)}")
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise ProviderError(
                        f"sqlite {self._label} at {self.path}: WAL mode is unavailable "
                        f"(journal_mode={mode}); is the file on a network filesystem?"
                    )
                conn.execute(f"PRAGMA synchronous = {self._options.synchronous}")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in SCHEMA.split(";\n"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(
                        "INSERT OR IGNORE INTO hm_meta (key, value) VALUES ('schema_version', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                    found = conn.execute(
                        "SELECT value FROM hm_meta WHERE key = 'schema_version'"
                    ).fetchone()[0]
                    if int(found) > SCHEMA_VERSION:
                        raise ProviderError(
                            f"sqlite {self._label} at {self.path}: the file has schema version "
                            f"{found}, newer than this hotmesh ({SCHEMA_VERSION}); upgrade hotmesh"
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                conn.close()
                raise self._fail("open", exc) from exc
            except BaseException:
                conn.close()
                raise
            self._conn = conn

    async def close(self) -> None:
        """Close the connection; idempotent."""
        if self._closed:
            return
        self._closed = True
        await anyio.to_thread.run_sync(self._close_sync)

    def _close_sync(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run(self, fn: Callable[[sqlite3.Connection], T], begin: str | None) -> T:
        with self._lock:
            conn = self._conn
            if conn is None or self._closed:
                state = "closed" if self._closed else "not open (call open() first)"
                raise ProviderError(f"sqlite {self._label} at {self.path} is {state}")
            try:
                if begin is None:
                    return fn(conn)
                conn.execute(begin)
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            except HotMeshError:
                raise
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise self._fail("a call", exc) from exc

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction (all or nothing)."""
        return await anyio.to_thread.run_sync(self._run, fn, "BEGIN IMMEDIATE")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read transaction (a consistent snapshot)."""
        return await anyio.to_thread.run_sync(self._run, fn, "BEGIN")

    async def info(self) -> tuple[str, str]:
        """(SQLite version, journal mode + synchronous level) read from the connection."""

        def query(conn: sqlite3.Connection) -> tuple[str, str]:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            sync = conn.execute("PRAGMA synchronous").fetchone()[0]
            level = _SYNC_LEVELS.get(int(sync), str(sync))
            return sqlite3.sqlite_version, f"{mode}/{level}"

        return await anyio.to_thread.run_sync(self._run, query, None)
