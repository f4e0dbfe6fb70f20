"""SqliteStream: durable queues with consumer groups in one SQLite file.

Tables: ``hm_messages`` (the log), ``hm_groups`` (per group, the highest message id ever handed
out: its cursor), ``hm_pending`` (delivered, not yet acked) and ``hm_dead``. A message is acked by
a group when its id is at or below the cursor and it is not pending. Every read is one
``BEGIN IMMEDIATE`` transaction, so two processes never hand out the same delivery.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import ClassVar

from hotmesh.backends.sqlite._db import now_us, span_us
from hotmesh.backends.sqlite._messages import (
    decode_message,
    encode_messages,
    insert_messages,
    notify_streams,
)
from hotmesh.backends.sqlite._notify import notifier_for
from hotmesh.backends.sqlite._provider import BASE_CAPABILITIES, SqliteProvider
from hotmesh.errors import ValidationError
from hotmesh.providers import Capability, DeadLetter, Delivery, Message, ReadRequest

MAX_DELIVERIES_ERROR = "max deliveries exceeded"


def ack_seqs(ids: Sequence[str]) -> list[int]:
    """Message ids are decimal row ids; anything else names no message."""
    found: list[int] = []
    for value in ids:
        if isinstance(value, str) and value.isdigit():
            found.append(int(value))
    return found


class SqliteStream(SqliteProvider):
    """The Stream role on a SQLite file (Stream rules 1-11)."""

    role: ClassVar[str] = "stream"
    tables: ClassVar[tuple[str, ...]] = ("hm_messages", "hm_groups", "hm_pending", "hm_dead")
    declared: ClassVar[frozenset[Capability]] = BASE_CAPABILITIES | {
        Capability.STREAM_DELAY,
        Capability.STREAM_EXTEND,
    }

    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        """Append messages in one transaction; committed (and fsynced per ``synchronous``) on return."""
        rows = encode_messages(messages)
        if not rows:
            return []
        ns = self._namespace
        ids = await self._db.write(lambda conn: insert_messages(conn, ns, rows))
        notify_streams(self._path, ns, rows)
        return ids

    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        """Deliver ready and visibility-expired messages to one consumer (Stream rules 2-7)."""
        _check_request(request)
        if request.count == 0:
            return []
        block = request.block.total_seconds()
        deadline = time.monotonic() + block
        poll = self._options.poll_interval_ms / 1000
        notifier = notifier_for(self._path, self._namespace, "stream:" + request.stream)
        first = True
        while True:
            # Register before looking, so a publish in between still wakes us (Stream rule 6).
            with notifier.register() as waiting:
                # The first look takes the write lock directly; later (polling) looks check
                # read-only first, so idle readers never queue for the write lock.
                if first or await self._db.read(lambda conn: self._ready(conn, request)):
                    found = await self._db.write(lambda conn: self._take(conn, request))
                    if found:
                        return found
                first = False
                remaining = deadline - time.monotonic()
                if block <= 0 or remaining <= 0:
                    return []
                # Same-process publishes wake us now; other processes' within one poll.
                await waiting.wait(min(poll, remaining))

    def _ready(self, conn: sqlite3.Connection, request: ReadRequest) -> bool:
        """Cheap read-only check, so idle pollers do not take the write lock."""
        ns, stream, group = self._namespace, request.stream, request.group
        row = conn.execute(
            "SELECT cursor FROM hm_groups WHERE ns = ? AND stream = ? AND grp = ?",
            (ns, stream, group),
        ).fetchone()
        cursor = row[0] if row else 0
        if row is None:
            return True  # creates the group (Stream rule 2)
        fresh = conn.execute(
            "SELECT 1 FROM hm_messages WHERE ns = ? AND stream = ? AND seq > ? LIMIT 1",
            (ns, stream, cursor),
        ).fetchone()
        if fresh is not None:
            return True
        stale = conn.execute(
            "SELECT 1 FROM hm_pending WHERE ns = ? AND stream = ? AND grp = ? AND visible_us <= ?"
            " LIMIT 1",
            (ns, stream, group, now_us()),
        ).fetchone()
        return stale is not None

    def _take(self, conn: sqlite3.Connection, request: ReadRequest) -> list[Delivery]:
        ns, stream, group = self._namespace, request.stream, request.group
        now = now_us()
        visible = now + span_us(request.visibility_timeout)
        limit = request.max_deliveries
        conn.execute(
            "INSERT OR IGNORE INTO hm_groups (ns, stream, grp, cursor) VALUES (?, ?, ?, 0)",
            (ns, stream, group),
        )
        cursor: int = conn.execute(
            "SELECT cursor FROM hm_groups WHERE ns = ? AND stream = ? AND grp = ?",
            (ns, stream, group),
        ).fetchone()[0]
        out: list[Delivery] = []
        seen: set[int] = set()
        while len(out) < request.count:
            need = request.count - len(out)
            stale = [
                (seq, count, True)
                for seq, count in conn.execute(
                    "SELECT seq, delivery_count FROM hm_pending WHERE ns = ? AND stream = ?"
                    " AND grp = ? AND visible_us <= ? ORDER BY seq LIMIT ?",
                    (ns, stream, group, now, need + len(seen)),
                )
                if seq not in seen
            ]
            fresh = [
                (seq, 0, False)
                for (seq,) in conn.execute(
                    "SELECT seq FROM hm_messages WHERE ns = ? AND stream = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (ns, stream, cursor, need),
                )
            ]
            batch = sorted(stale + fresh)[:need]  # publish order first (Stream rule 5)
            if not batch:
                break
            for seq, previous, pending in batch:
                seen.add(seq)
                body, headers = conn.execute(
                    "SELECT body, headers FROM hm_messages WHERE seq = ?", (seq,)
                ).fetchone()
                count = previous + 1
                if not pending:
                    cursor = max(cursor, seq)
                if limit is not None and count > limit:
                    # Stream rule 7: dead-letter instead of delivering.
                    conn.execute(
                        "DELETE FROM hm_pending WHERE ns = ? AND stream = ? AND grp = ? AND seq = ?",
                        (ns, stream, group, seq),
                    )
                    conn.execute(
                        "INSERT INTO hm_dead (ns, stream, grp, seq, body, headers, delivery_count,"
                        " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (ns, stream, group, seq, body, headers, previous, MAX_DELIVERIES_ERROR),
                    )
                    continue
                if pending:
                    conn.execute(
                        "UPDATE hm_pending SET delivery_count = ?, visible_us = ?, consumer = ?"
                        " WHERE ns = ? AND stream = ? AND grp = ? AND seq = ?",
                        (count, visible, request.consumer, ns, stream, group, seq),
                    )
                else:
                    conn.execute(
                        "INSERT INTO hm_pending (ns, stream, grp, seq, delivery_count, visible_us,"
                        " consumer) VALUES (?, ?, ?, ?, 1, ?, ?)",
                        (ns, stream, group, seq, visible, request.consumer),
                    )
                out.append(
                    Delivery(
                        id=str(seq),
                        message=decode_message(stream, body, headers),
                        delivery_count=count,
                        group=group,
                    )
                )
        conn.execute(
            "UPDATE hm_groups SET cursor = ? WHERE ns = ? AND stream = ? AND grp = ?",
            (cursor, ns, stream, group),
        )
        return out

    async def ack(self, stream: str, group: str, ids: Sequence[str], /) -> int:
        """Remove deliveries from the group's pending set; count those that were pending (rule 3)."""
        seqs = ack_seqs(ids)
        if not seqs:
            return 0
        ns = self._namespace
        return await self._db.write(lambda conn: delete_pending(conn, ns, stream, group, seqs))

    async def release(
        self, stream: str, group: str, ids: Sequence[str], /, *, delay: timedelta = timedelta(0)
    ) -> int:
        """Make pending deliveries visible now or after ``delay`` (Stream rule 9, STREAM_DELAY)."""
        if delay < timedelta(0):
            raise ValidationError(f"release delay must not be negative, got {delay}")
        seqs = ack_seqs(ids)
        if not seqs:
            return 0
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> int:
            visible = now_us() + span_us(delay)
            changed = 0
            for seq in seqs:
                changed += conn.execute(
                    "UPDATE hm_pending SET visible_us = ? WHERE ns = ? AND stream = ? AND grp = ?"
                    " AND seq = ?",
                    (visible, ns, stream, group, seq),
                ).rowcount
            return changed

        changed = await self._db.write(run)
        if changed and delay <= timedelta(0):
            notifier_for(self._path, ns, "stream:" + stream).notify()
        return changed

    async def extend(self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta) -> int:
        """Renew the lease of deliveries still pending as delivered (Stream rule 11).

        The delivery count is the fence: a row acked or dead-lettered is gone, and one redelivered
        since carries a higher count, so a worker that lost its lease cannot take it back from
        the consumer now holding it. Only ``visible_us`` moves (as ``read`` sets it: this host's
        clock plus the timeout); the count and consumer stay, so this is not a delivery. All
        rows change in one ``BEGIN IMMEDIATE`` transaction through one prepared statement.
        """
        if visibility_timeout < timedelta(0):
            raise ValidationError(f"extend visibility_timeout must not be negative, got {visibility_timeout}")
        # Deduplicated, so a delivery listed twice is renewed (and counted) once.
        keys = dict.fromkeys(
            (d.message.stream, d.group, seq, d.delivery_count) for d in deliveries for seq in ack_seqs([d.id])
        )
        if not keys:
            return 0
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> int:
            visible = now_us() + span_us(visibility_timeout)
            # executemany sums the rows each execution changed into rowcount.
            return conn.executemany(
                "UPDATE hm_pending SET visible_us = ? WHERE ns = ? AND stream = ? AND grp = ?"
                " AND seq = ? AND delivery_count = ?",
                [(visible, ns, stream, group, seq, count) for stream, group, seq, count in keys],
            ).rowcount

        return await self._db.write(run)

    async def dead_letter(self, delivery: Delivery, error: str, /) -> None:
        """Move a pending delivery to the dead letters and ack it (Stream rule 8)."""
        if not isinstance(error, str):
            raise ValidationError("dead_letter error must be a string")
        seqs = ack_seqs([delivery.id])
        if not seqs:
            return
        ns, stream, group, seq = self._namespace, delivery.message.stream, delivery.group, seqs[0]

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT delivery_count FROM hm_pending WHERE ns = ? AND stream = ? AND grp = ?"
                " AND seq = ?",
                (ns, stream, group, seq),
            ).fetchone()
            message = conn.execute(
                "SELECT body, headers FROM hm_messages WHERE seq = ? AND ns = ?", (seq, ns)
            ).fetchone()
            if row is None or message is None:
                return
            conn.execute(
                "DELETE FROM hm_pending WHERE ns = ? AND stream = ? AND grp = ? AND seq = ?",
                (ns, stream, group, seq),
            )
            conn.execute(
                "INSERT INTO hm_dead (ns, stream, grp, seq, body, headers, delivery_count, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ns, stream, group, seq, message[0], message[1], row[0], error),
            )

        await self._db.write(run)

    async def dead_letters(
        self, stream: str, group: str, /, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters of a group, oldest first (Stream rule 8)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> list[DeadLetter]:
            rows = conn.execute(
                "SELECT seq, body, headers, delivery_count, error FROM hm_dead WHERE ns = ?"
                " AND stream = ? AND grp = ? ORDER BY id LIMIT ?",
                (ns, stream, group, max(limit, 0)),
            ).fetchall()
            return [
                DeadLetter(
                    id=str(seq),
                    message=decode_message(stream, body, headers),
                    delivery_count=count,
                    group=group,
                    error=error,
                )
                for seq, body, headers, count, error in rows
            ]

        return await self._db.read(run)

    async def length(self, stream: str, /) -> int:
        """Messages held in the stream (Stream rule 10)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT COUNT(*) FROM hm_messages WHERE ns = ? AND stream = ?", (ns, stream)
            ).fetchone()
            return int(row[0])

        return await self._db.read(run)

    async def backlog(self, stream: str, group: str, /) -> int:
        """Messages the group has not acked: beyond its cursor, or pending (Stream rule 10)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT cursor FROM hm_groups WHERE ns = ? AND stream = ? AND grp = ?",
                (ns, stream, group),
            ).fetchone()
            cursor = row[0] if row else 0
            fresh = conn.execute(
                "SELECT COUNT(*) FROM hm_messages WHERE ns = ? AND stream = ? AND seq > ?",
                (ns, stream, cursor),
            ).fetchone()[0]
            pending = conn.execute(
                "SELECT COUNT(*) FROM hm_pending WHERE ns = ? AND stream = ? AND grp = ?",
                (ns, stream, group),
            ).fetchone()[0]
            return int(fresh) + int(pending)

        return await self._db.read(run)

    async def trim(self, stream: str, /, *, max_length: int) -> int:
        """Drop the oldest messages every group has acked, down to ``max_length`` (rule 10)."""
        if not isinstance(max_length, int) or max_length < 0:
            raise ValidationError(f"max_length must be a non-negative int, got {max_length!r}")
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> int:
            total = conn.execute(
                "SELECT COUNT(*) FROM hm_messages WHERE ns = ? AND stream = ?", (ns, stream)
            ).fetchone()[0]
            excess = int(total) - max_length
            if excess <= 0:
                return 0
            # Only a prefix acked by every group goes: at or below each cursor and below the
            # oldest pending delivery of any group (Stream rule 10; as in the memory reference).
            bound = conn.execute(
                "SELECT MIN(cursor) FROM hm_groups WHERE ns = ? AND stream = ?", (ns, stream)
            ).fetchone()[0]
            oldest_pending = conn.execute(
                "SELECT MIN(seq) FROM hm_pending WHERE ns = ? AND stream = ?", (ns, stream)
            ).fetchone()[0]
            if oldest_pending is not None:
                bound = oldest_pending - 1 if bound is None else min(bound, oldest_pending - 1)
            if bound is None:
                bound = 2**62  # no group yet: nothing is unacked
            return conn.execute(
                "DELETE FROM hm_messages WHERE seq IN (SELECT seq FROM hm_messages WHERE ns = ?"
                " AND stream = ? AND seq <= ? ORDER BY seq LIMIT ?)",
                (ns, stream, bound, excess),
            ).rowcount

        return await self._db.write(run)


def _check_request(request: ReadRequest) -> None:
    """Reject bad read parameters before touching the file."""
    if not isinstance(request, ReadRequest):
        raise ValidationError("read() takes a hotmesh.providers.ReadRequest")
    for name in ("stream", "group", "consumer"):
        value = getattr(request, name)
        if not isinstance(value, str) or not value:
            raise ValidationError(f"ReadRequest.{name} must be a non-empty string")
    if not isinstance(request.count, int) or request.count < 0:
        raise ValidationError(f"ReadRequest.count must be a non-negative int, got {request.count!r}")
    if request.block < timedelta(0) or request.visibility_timeout < timedelta(0):
        raise ValidationError("ReadRequest.block and visibility_timeout must not be negative")
    if request.max_deliveries is not None and request.max_deliveries < 0:
        raise ValidationError("ReadRequest.max_deliveries must not be negative")


def delete_pending(conn: sqlite3.Connection, ns: str, stream: str, group: str, seqs: Sequence[int]) -> int:
    """Ack inside the caller's transaction (the stream's ``ack`` and the store's Store rule 6b)."""
    removed = 0
    for seq in seqs:
        removed += conn.execute(
            "DELETE FROM hm_pending WHERE ns = ? AND stream = ? AND grp = ? AND seq = ?",
            (ns, stream, group, seq),
        ).rowcount
    return removed
