"""PostgresStream: a queue table consumed with FOR UPDATE SKIP LOCKED, woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from psycopg import sql

from hotmesh.errors import ValidationError
from hotmesh.providers import (
    Capability,
    DeadLetter,
    Delivery,
    JSONValue,
    Message,
    ReadRequest,
    dumps,
)
from hotmesh_postgres._base import PostgresProvider
from hotmesh_postgres._listener import Listener


def encode_messages(messages: Sequence[Message]) -> str:
    """Messages as the JSON array the SQL functions take; bad input fails before any write."""
    return dumps(message_list(messages), "messages")


def message_list(messages: Sequence[Message]) -> list[JSONValue]:
    """Messages as JSON-ready dicts, validated (Design §6: reject before the first write)."""
    out: list[JSONValue] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Message):
            raise ValidationError(f"messages[{index}] is not a Message")
        if not isinstance(message.stream, str) or not message.stream:
            raise ValidationError(f"messages[{index}].stream must be a non-empty string")
        headers = dict(message.headers)
        for key, value in headers.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise ValidationError(f"messages[{index}].headers must map str to str")
        out.append({"stream": message.stream, "body": dict(message.body), "headers": dict(headers)})
    return out


def decode_message(stream: str, body: Any, headers: Any) -> Message:
    """A Message from stored JSONB columns."""
    return Message(stream=stream, body=dict(body or {}), headers=dict(headers or {}))


def _seconds(value: timedelta, what: str) -> float:
    if not isinstance(value, timedelta) or value < timedelta(0):
        raise ValidationError(f"{what} must be a non-negative timedelta")
    return value.total_seconds()


def message_ids(ids: Sequence[str]) -> list[int]:
    """Ids this stream issued (bigint row ids); anything else names no message."""
    out: list[int] = []
    for raw in ids:
        try:
            out.append(int(raw))
        except (TypeError, ValueError):
            continue  # an id this stream never issued: nothing to ack or release
    return out


class PostgresStream(PostgresProvider):
    """Durable consumer-group queues on PostgreSQL (Stream rules 1-11)."""

    role: ClassVar[str] = "stream"
    declared: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STREAM_DELAY,
            Capability.STREAM_EXTEND,
            Capability.MULTI_PROCESS,
            Capability.DURABLE,
        }
    )

    def __init__(self, url: str, *, namespace: str = "hotmesh", options: Any = None) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._listener: Listener | None = None
        self._listener_lock: asyncio.Lock | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        q = self.names.qualified
        self._q_publish = sql.SQL("SELECT {}(%s::jsonb)").format(q("stream_publish"))
        self._q_read = sql.SQL("SELECT {}(%s, %s, %s, %s, %s, %s)").format(q("stream_read"))

    # -- wake-ups (Stream rule 6) ------------------------------------------------------------
    async def _ensure_listener(self) -> None:
        if self._listener_lock is None:
            self._listener_lock = asyncio.Lock()
        async with self._listener_lock:
            if self._listener is not None:
                return
            listener = Listener(
                self._url,
                self.names.stream_channel,
                self._on_notify,
                on_reconnect=self._wake_all,
                connect_timeout=self.options.connect_timeout,
                describe=f"postgres stream at {self._safe_url}",
            )
            await listener.start()
            self._listener = listener

    async def _on_notify(self, stream: str) -> None:
        for fut in self._waiters.pop(stream, set()):
            if not fut.done():
                fut.set_result(None)

    async def _wake_all(self) -> None:
        for stream in list(self._waiters):
            await self._on_notify(stream)

    async def _before_close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        await self._wake_all()

    # -- operations ----------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        """Append messages; one round trip, NOTIFY at commit (Stream rule 1)."""
        if not messages:
            return []
        payload = encode_messages(messages)
        row = await self._fetchone(self._q_publish, (payload,), retry=False)
        return [str(i) for i in row[0]]

    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        """Claim up to ``count`` deliveries, waiting up to ``block`` (Stream rules 2-7)."""
        if request.count < 1:
            raise ValidationError("count must be at least 1")
        block = _seconds(request.block, "block")
        vt = _seconds(request.visibility_timeout, "visibility_timeout")
        if request.max_deliveries is not None and request.max_deliveries < 1:
            raise ValidationError("max_deliveries must be at least 1 or None")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block
        if block > 0:
            await self._ensure_listener()
        while True:
            fut: asyncio.Future[None] | None = None
            if block > 0:
                # Register before querying, so a NOTIFY during the query is not missed.
                fut = loop.create_future()
                self._waiters.setdefault(request.stream, set()).add(fut)
            try:
                row = await self._fetchone(
                    self._q_read,
                    (
                        request.stream,
                        request.group,
                        request.consumer,
                        request.count,
                        vt,
                        request.max_deliveries,
                    ),
                )
                result = row[0]
                deliveries = [
                    Delivery(
                        id=item[0],
                        message=decode_message(request.stream, item[1], item[2]),
                        delivery_count=int(item[3]),
                        group=request.group,
                    )
                    for item in result["d"]
                ]
                remaining = deadline - loop.time()
                if deliveries or fut is None or remaining <= 0 or self._closed:
                    return deliveries
                wait = min(remaining, self.options.poll_interval)
                if result.get("next") is not None:
                    wait = min(wait, max(0.0, float(result["next"])) + 0.005)
                await asyncio.wait({fut}, timeout=wait)
            finally:
                if fut is not None:
                    self._waiters.get(request.stream, set()).discard(fut)
                    if not fut.done():
                        fut.cancel()

    async def ack(self, stream: str, group: str, ids: Sequence[str], /) -> int:
        """Remove deliveries from the group for good (Stream rule 3)."""
        keys = message_ids(ids)
        if not keys:
            return 0
        return await self._execute(
            sql.SQL(
                "DELETE FROM {} WHERE stream = %s AND grp = %s AND msg_id = ANY(%s)"
                " AND delivery_count > 0"
            ).format(self.names.qualified("deliveries")),
            (stream, group, keys),
        )

    async def release(
        self, stream: str, group: str, ids: Sequence[str], /, *, delay: timedelta = timedelta(0)
    ) -> int:
        """Make pending deliveries visible again now or after ``delay`` (Stream rule 9)."""
        seconds = _seconds(delay, "delay")
        keys = message_ids(ids)
        if not keys:
            return 0
        query = sql.SQL(
            "WITH r AS (UPDATE {} SET visible_at = clock_timestamp() + make_interval(secs => %s),"
            " consumer = NULL WHERE stream = %s AND grp = %s AND msg_id = ANY(%s)"
            " AND delivery_count > 0 RETURNING 1)"
            " SELECT count(*), pg_notify(%s, %s) FROM r"
        ).format(self.names.qualified("deliveries"))
        row = await self._fetchone(
            query, (seconds, stream, group, keys, self.names.stream_channel, stream)
        )
        return int(row[0])

    async def extend(self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta) -> int:
        """Renew the lease of deliveries still pending as delivered (Stream rule 11).

        One UPDATE joined to the keys unnested from four arrays, whatever streams and groups they
        name. The delivery count is the fence: an acked or dead-lettered row is gone and a
        redelivered one carries a higher count, so a worker that lost its lease cannot take it
        back (under READ COMMITTED a row a concurrent read is redelivering is re-checked after
        that read commits, with its new count). ``delivery_count > 0`` keeps a never-delivered
        row (count 0) from being hidden. Only ``visible_at`` moves, on the server's
        ``clock_timestamp()`` as ``stream_read`` sets it; count and consumer stay, so this is
        not a delivery, and there is nothing to NOTIFY: no row becomes visible sooner.
        """
        vt = _seconds(visibility_timeout, "visibility_timeout")
        keys: dict[tuple[str, str, int, int], None] = {}
        for delivery in deliveries:
            for msg_id in message_ids([delivery.id]):
                keys[(delivery.message.stream, delivery.group, msg_id, int(delivery.delivery_count))] = None
        if not keys:
            return 0
        # Deduplicated: a delivery listed twice is renewed (and counted) once. Sorted, so the
        # usual nested loop over the keys locks rows in key order; should a deadlock with
        # another multi-row statement still occur, it is an OperationalError that _run retries
        # once (renewing twice is harmless).
        streams, groups, msg_ids, counts = (list(column) for column in zip(*sorted(keys), strict=True))
        query = sql.SQL(
            "UPDATE {} d SET visible_at = clock_timestamp() + make_interval(secs => %s)"
            " FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::integer[])"
            " AS k(stream, grp, msg_id, delivery_count)"
            " WHERE d.stream = k.stream AND d.grp = k.grp AND d.msg_id = k.msg_id"
            " AND d.delivery_count = k.delivery_count AND d.delivery_count > 0"
        ).format(self.names.qualified("deliveries"))
        return await self._execute(query, (vt, streams, groups, msg_ids, counts))

    async def dead_letter(self, delivery: Delivery, error: str, /) -> None:
        """Move a pending delivery to the dead letters and ack it (Stream rule 8)."""
        stream = delivery.message.stream
        keys = message_ids([delivery.id])
        if not keys:
            return
        q = self.names.qualified
        query = sql.SQL(
            "WITH d AS (DELETE FROM {} WHERE stream = %s AND grp = %s AND msg_id = %s"
            " RETURNING msg_id, delivery_count)"
            " INSERT INTO {} (stream, grp, msg_id, body, headers, delivery_count, error)"
            " SELECT %s, %s, m.id, m.body, m.headers, d.delivery_count, %s"
            " FROM d JOIN {} m ON m.id = d.msg_id"
        ).format(q("deliveries"), q("dead_letters"), q("messages"))
        await self._execute(
            query, (stream, delivery.group, keys[0], stream, delivery.group, str(error))
        )

    async def dead_letters(
        self, stream: str, group: str, /, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters of a group, oldest first (Stream rule 8)."""
        rows = await self._fetchall(
            sql.SQL(
                "SELECT msg_id, body, headers, delivery_count, error FROM {}"
                " WHERE stream = %s AND grp = %s ORDER BY id LIMIT %s"
            ).format(self.names.qualified("dead_letters")),
            (stream, group, max(0, int(limit))),
        )
        return [
            DeadLetter(
                id=str(r[0]),
                message=decode_message(stream, r[1], r[2]),
                delivery_count=int(r[3]),
                group=group,
                error=str(r[4]),
            )
            for r in rows
        ]

    async def length(self, stream: str, /) -> int:
        """Messages held in the stream (Stream rule 10)."""
        row = await self._fetchone(
            sql.SQL("SELECT count(*) FROM {} WHERE stream = %s").format(
                self.names.qualified("messages")
            ),
            (stream,),
        )
        return int(row[0])

    async def backlog(self, stream: str, group: str, /) -> int:
        """Messages the group has not acked, ready or pending (Stream rule 10)."""
        q = self.names.qualified
        query = sql.SQL(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM {g} WHERE stream = %s AND grp = %s)"
            " THEN (SELECT count(*) FROM {d} WHERE stream = %s AND grp = %s)"
            " ELSE (SELECT count(*) FROM {m} WHERE stream = %s) END"
        ).format(g=q("groups"), d=q("deliveries"), m=q("messages"))
        row = await self._fetchone(query, (stream, group, stream, group, stream))
        return int(row[0])

    async def trim(self, stream: str, /, *, max_length: int) -> int:
        """Drop the oldest messages every group has acked, down to ``max_length`` (rule 10)."""
        if max_length < 0:
            raise ValidationError("max_length must be >= 0")
        q = self.names.qualified
        query = sql.SQL(
            "WITH excess AS (SELECT greatest(count(*) - %s, 0) AS n FROM {m} WHERE stream = %s),"
            " victims AS (SELECT m.id FROM {m} m WHERE m.stream = %s AND NOT EXISTS"
            " (SELECT 1 FROM {d} d WHERE d.msg_id = m.id)"
            " ORDER BY m.id LIMIT (SELECT n FROM excess) FOR UPDATE SKIP LOCKED),"
            " gone AS (DELETE FROM {m} WHERE id IN (SELECT id FROM victims) RETURNING 1)"
            " SELECT count(*) FROM gone"
        ).format(m=q("messages"), d=q("deliveries"))
        row = await self._fetchone(query, (max_length, stream, stream))
        return int(row[0])
