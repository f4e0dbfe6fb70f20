"""PostgresSub: LISTEN/NOTIFY fan-out; large payloads travel through a table by reference."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from psycopg import sql

from hotmesh.errors import ProviderError, ValidationError
from hotmesh.providers import Capability, JSONValue, SubMessage, dumps
from hotmesh_postgres._base import PostgresProvider
from hotmesh_postgres._listener import Listener

#: NOTIFY payloads must stay under 8000 bytes; above this the payload goes through a table.
MAX_INLINE_BYTES = 7900

_CLOSED = object()


def _matcher(topic: str, pattern: bool) -> re.Pattern[str]:
    """``*`` is any run of characters (Sub rule 3); everything else is literal."""
    if not pattern:
        return re.compile(re.escape(topic) + r"\Z", re.DOTALL)
    parts = [re.escape(p) for p in topic.split("*")]
    return re.compile(".*".join(parts) + r"\Z", re.DOTALL)


class PostgresSubscription:
    """One subscription: a local queue fed by the provider's listener."""

    def __init__(self, owner: PostgresSub, matcher: re.Pattern[str]) -> None:
        self._owner = owner
        self.matcher = matcher
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closed = False

    def deliver(self, message: SubMessage) -> None:
        """Queue a matching message (called by the listener, in notification order)."""
        if not self._closed:
            self._queue.put_nowait(message)

    async def get(self, timeout: float | None = None) -> SubMessage | None:
        """Next message, or None after ``timeout`` seconds or once closed."""
        if self._closed and self._queue.empty():
            return None
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            return None
        assert isinstance(item, SubMessage)
        return item

    def __aiter__(self) -> AsyncIterator[SubMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SubMessage]:
        while True:
            item = await self.get()
            if item is None:
                return
            yield item

    async def aclose(self) -> None:
        """Stop receiving (Sub rule 4); idempotent."""
        if self._closed:
            return
        self._closed = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)
        self._owner._forget(self)


class PostgresSub(PostgresProvider):
    """Best-effort publish/subscribe over LISTEN/NOTIFY (Sub rules 1-5)."""

    role: ClassVar[str] = "sub"
    declared: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.SUB_PATTERNS, Capability.MULTI_PROCESS}
    )

    def __init__(self, url: str, *, namespace: str = "hotmesh", options: Any = None) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._subs: list[PostgresSubscription] = []
        self._listener: Listener | None = None
        self._listener_lock: asyncio.Lock | None = None
        q = self.names.qualified
        self._q_inline = sql.SQL("SELECT pg_notify(%s, %s)")
        self._q_large = sql.SQL(
            "WITH old AS (DELETE FROM {p} WHERE created_at < clock_timestamp() - interval '5 minutes'"
            " RETURNING 1),"
            " ins AS (INSERT INTO {p} (topic, payload) VALUES (%s, %s::jsonb) RETURNING id)"
            " SELECT pg_notify(%s, json_build_object('t', %s::text, 'r', ins.id)::text),"
            " (SELECT count(*) FROM old) FROM ins"
        ).format(p=q("sub_payloads"))
        self._q_fetch = sql.SQL("SELECT payload FROM {} WHERE id = %s").format(q("sub_payloads"))

    async def publish(self, topic: str, payload: Mapping[str, JSONValue], /) -> None:
        """NOTIFY the namespace channel; large payloads by reference (Sub rules 1, 2, 5)."""
        if not isinstance(topic, str) or not topic:
            raise ValidationError("topic must be a non-empty string")
        if not isinstance(payload, Mapping):
            raise ValidationError("payload must be a JSON object")
        body = dumps(dict(payload), "payload")
        inline = dumps({"t": topic, "p": dict(payload)})
        channel = self.names.sub_channel
        if len(inline.encode()) <= MAX_INLINE_BYTES:
            await self._execute(self._q_inline, (channel, inline), retry=False)
        else:
            await self._fetchall(self._q_large, (topic, body, channel, topic), retry=False)

    async def subscribe(self, topic: str, /, *, pattern: bool = False) -> PostgresSubscription:
        """Subscribe; once this returns, later publishes are received (Sub rules 1, 3)."""
        if not isinstance(topic, str) or not topic:
            raise ValidationError("topic must be a non-empty string")
        await self._pool_or_raise()
        await self._ensure_listener()
        subscription = PostgresSubscription(self, _matcher(topic, pattern))
        self._subs.append(subscription)
        return subscription

    def _forget(self, subscription: PostgresSubscription) -> None:
        if subscription in self._subs:
            self._subs.remove(subscription)

    async def _ensure_listener(self) -> None:
        if self._listener_lock is None:
            self._listener_lock = asyncio.Lock()
        async with self._listener_lock:
            if self._listener is None:
                listener = Listener(
                    self._url,
                    self.names.sub_channel,
                    self._on_notify,
                    connect_timeout=self.options.connect_timeout,
                    describe=f"postgres sub at {self._safe_url}",
                )
                await listener.start()
                self._listener = listener

    async def _on_notify(self, raw: str) -> None:
        if not self._subs:
            return
        try:
            note = json.loads(raw)
            topic = note["t"]
        except (ValueError, KeyError, TypeError):
            return
        targets = [s for s in self._subs if s.matcher.match(topic)]
        if not targets:
            return
        if "r" in note:
            try:  # never re-create a purged schema just to read a notification
                rows = await self._fetchall(self._q_fetch, (int(note["r"]),), remigrate=False)
            except ProviderError:
                return
            if not rows:
                return  # swept already: notifications are best effort
            payload = rows[0][0]
        else:
            payload = note.get("p")
        if not isinstance(payload, dict):
            return
        for subscription in targets:
            subscription.deliver(SubMessage(topic=topic, payload=payload))

    async def _before_close(self) -> None:
        for subscription in list(self._subs):
            await subscription.aclose()
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
