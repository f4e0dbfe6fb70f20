"""SqliteSub: notifications through a table that subscribers poll from where they started.

``publish`` appends a row (autoincrement id); a subscription remembers the highest id that existed
when it was created and reads newer rows. Writers are serialized by SQLite's write lock, so ids
become visible in order and nothing is skipped. Same-process publishes wake subscribers at once;
other processes' within ``poll_interval_ms``. Rows older than ``sub_retention_s`` are pruned: a
subscriber that does not read for that long may miss messages (Sub is best-effort).
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from hotmesh.backends.sqlite._db import now_us
from hotmesh.backends.sqlite._notify import Notifier, Waiting, notifier_for
from hotmesh.backends.sqlite._provider import BASE_CAPABILITIES, SqliteProvider
from hotmesh.errors import ValidationError
from hotmesh.providers import Capability, JSONValue, SubMessage, dumps, loads

_BATCH = 500


def topic_matcher(topic: str, *, pattern: bool) -> re.Pattern[str]:
    """A regex for a topic, or for a pattern where ``*`` is any run of characters (Sub rule 3)."""
    if not pattern:
        return re.compile(re.escape(topic) + r"\Z", re.DOTALL)
    return re.compile(".*".join(re.escape(part) for part in topic.split("*")) + r"\Z", re.DOTALL)


class SqliteSubscription:
    """One subscription: a read position, a matcher and a small buffer."""

    def __init__(
        self, owner: SqliteSub, matcher: re.Pattern[str], start: int, notifier: Notifier
    ) -> None:
        self._owner = owner
        self._matcher = matcher
        self._last = start
        self._notifier = notifier
        self._buffer: deque[SubMessage] = deque()
        self._closed = False
        self._waiting: Waiting | None = None

    async def get(self, timeout: float | None = None) -> SubMessage | None:
        """The next matching message; None on timeout or once closed (Sub rule 4)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poll = self._owner.poll_interval
        while not self._closed:
            if self._buffer:
                return self._buffer.popleft()
            # Register before reading so a same-process publish in between still wakes us.
            with self._notifier.register() as waiting:
                self._waiting = waiting
                try:
                    await self._fill()
                    if self._buffer or self._closed:
                        continue
                    wait = poll
                    if deadline is not None:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                        wait = min(poll, remaining)
                    await waiting.wait(wait)
                finally:
                    self._waiting = None
        return None

    async def _fill(self) -> None:
        rows = await self._owner._after(self._last)
        for note_id, topic, payload in rows:
            self._last = note_id
            if self._matcher.match(topic):
                body: Any = loads(payload)
                self._buffer.append(SubMessage(topic=topic, payload=body))

    async def __aiter__(self) -> AsyncIterator[SubMessage]:
        while True:
            message = await self.get()
            if message is None:
                return
            yield message

    async def aclose(self) -> None:
        """Stop receiving; idempotent (Sub rule 4)."""
        self._closed = True
        self._buffer.clear()
        waiting = self._waiting
        if waiting is not None:
            waiting.wake()


class SqliteSub(SqliteProvider):
    """The Sub role on a SQLite file (Sub rules 1-5, SUB_PATTERNS)."""

    role: ClassVar[str] = "sub"
    tables: ClassVar[tuple[str, ...]] = ("hm_notes",)
    declared: ClassVar[frozenset[Capability]] = BASE_CAPABILITIES | {Capability.SUB_PATTERNS}

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "hotmesh",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._last_prune = 0.0

    @property
    def poll_interval(self) -> float:
        """Seconds between looks at the file for other processes' publishes."""
        return self._options.poll_interval_ms / 1000

    def _notifier(self) -> Notifier:
        return notifier_for(self._path, self._namespace, "sub")

    async def publish(self, topic: str, payload: Mapping[str, JSONValue], /) -> None:
        """Append a notification and wake this process's subscribers (Sub rules 1, 2, 5)."""
        if not isinstance(topic, str) or not topic:
            raise ValidationError("topic must be a non-empty string")
        if not isinstance(payload, Mapping):
            raise ValidationError("payload must be a JSON object (a mapping)")
        text = dumps(dict(payload), "payload")
        ns = self._namespace
        retention_us = int(self._options.sub_retention_s * 1_000_000)
        now = time.monotonic()
        prune = now - self._last_prune > self._options.sub_retention_s / 4
        if prune:
            self._last_prune = now

        def run(conn: sqlite3.Connection) -> None:
            stamp = now_us()
            if prune:
                conn.execute(
                    "DELETE FROM hm_notes WHERE ns = ? AND created_us < ?", (ns, stamp - retention_us)
                )
            insert_note(conn, ns, topic, text, stamp)

        await self._db.write(run)
        self._notifier().notify()

    async def subscribe(self, topic: str, /, *, pattern: bool = False) -> SqliteSubscription:
        """Receive messages published from now on (Sub rules 1, 3)."""
        if not isinstance(topic, str) or not topic:
            raise ValidationError("topic must be a non-empty string")

        def run(conn: sqlite3.Connection) -> int:
            # The sequence, not MAX(id): ids of pruned rows are never reused (AUTOINCREMENT).
            row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'hm_notes'").fetchone()
            return int(row[0]) if row else 0

        start = await self._db.read(run)
        return SqliteSubscription(self, topic_matcher(topic, pattern=pattern), start, self._notifier())

    async def _after(self, last: int) -> list[tuple[int, str, str]]:
        """Notifications of the namespace newer than ``last``, oldest first."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> list[tuple[int, str, str]]:
            return conn.execute(
                "SELECT id, topic, payload FROM hm_notes WHERE ns = ? AND id > ? ORDER BY id LIMIT ?",
                (ns, last, _BATCH),
            ).fetchall()

        return await self._db.read(run)


def insert_note(conn: sqlite3.Connection, ns: str, topic: str, text: str, stamp: int) -> None:
    """Append a notification inside the caller's transaction (``publish``; the store: rule 6c)."""
    conn.execute(
        "INSERT INTO hm_notes (ns, topic, payload, created_us) VALUES (?, ?, ?, ?)", (ns, topic, text, stamp)
    )
