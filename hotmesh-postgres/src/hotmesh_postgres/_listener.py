"""A dedicated LISTEN connection that survives server restarts.

Stream wake-ups and Sub notifications arrive here. One connection per provider, never from the
pool: a pooled connection would be handed to other work and its LISTEN lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql

from hotmesh.errors import ProviderError

OnNotify = Callable[[str], Awaitable[None]]
OnReconnect = Callable[[], Awaitable[None]]


class Listener:
    """LISTENs on one channel and hands every payload, in order, to ``on_notify``."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_notify: OnNotify,
        *,
        on_reconnect: OnReconnect | None = None,
        connect_timeout: float = 10.0,
        describe: str = "",
    ) -> None:
        self._url = url
        self._channel = channel
        self._on_notify = on_notify
        self._on_reconnect = on_reconnect
        self._connect_timeout = max(1, int(connect_timeout))
        self._describe = describe
        self._task: asyncio.Task[None] | None = None
        self._conn: AsyncConnection[Any] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Connect and LISTEN; returns once notifications will be received (Sub rule 1)."""
        if self._task is not None:
            return
        try:
            self._conn = await self._connect()
        except psycopg.Error as exc:
            raise ProviderError(f"{self._describe}: cannot LISTEN: {exc}") from exc
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="hotmesh-pg-listen")

    async def _connect(self) -> AsyncConnection[Any]:
        conn = await AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=self._connect_timeout
        )
        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return conn

    async def _loop(self) -> None:
        backoff = 0.1
        while True:
            conn = self._conn
            try:
                if conn is None:
                    conn = self._conn = await self._connect()
                    backoff = 0.1
                    if self._on_reconnect is not None:
                        await self._on_reconnect()
                async for note in conn.notifies():
                    await self._on_notify(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:  # any failure: reconnect with backoff
                pass
            self._conn = None
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def stop(self) -> None:
        """Cancel the loop and close the connection; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
