"""MemorySub: in-process fan-out (the reference for the Sub rules)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from hotmesh.backends.memory._provider import MemoryProvider
from hotmesh.backends.memory._state import MemoryDatabase
from hotmesh.errors import CapabilityNotSupportedError
from hotmesh.providers import Capability, JSONValue, SubMessage, dumps, loads


def topic_matcher(topic: str, *, pattern: bool) -> re.Pattern[str]:
    """A regex for a topic, or for a pattern where ``*`` is any run of characters (Sub rule 3)."""
    if not pattern:
        return re.compile(re.escape(topic) + r"\Z")
    return re.compile(".*".join(re.escape(part) for part in topic.split("*")) + r"\Z")


class MemorySubscription:
    """Receives via an asyncio queue fed thread-safely by publishers."""

    def __init__(self, owner: MemorySub, matcher: re.Pattern[str]) -> None:
        self._owner = owner
        self.matcher = matcher
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[SubMessage | None] = asyncio.Queue()
        self.closed = False

    def deliver(self, message: SubMessage) -> None:
        """Called by publishers from any thread."""
        if not self.closed and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, message)
            except RuntimeError:
                pass

    async def get(self, timeout: float | None = None) -> SubMessage | None:
        """Next message, or None on timeout or when closed."""
        if self.closed and self.queue.empty():
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def __aiter__(self) -> AsyncIterator[SubMessage]:
        while True:
            message = await self.get()
            if message is None:
                return
            yield message

    async def aclose(self) -> None:
        """Sub rule 4."""
        if not self.closed:
            self.closed = True
            self._owner.detach(self)
            self.queue.put_nowait(None)


class MemorySub(MemoryProvider):
    """Topics matched against every live subscription of the namespace."""

    role: ClassVar[str] = "sub"
    declared: ClassVar[frozenset[Capability]] = frozenset({Capability.SUB_PATTERNS})

    def _empty(self) -> dict[str, Any]:
        return {"subscriptions": []}

    async def publish(self, topic: str, payload: Mapping[str, JSONValue], /) -> None:
        """Sub rules 1, 2, 5."""
        with self.database.lock:
            self._data()  # raises when closed
        notify(self.database, self.namespace, topic, payload)

    async def subscribe(self, topic: str, /, *, pattern: bool = False) -> MemorySubscription:
        """Sub rules 1, 3."""
        if pattern and Capability.SUB_PATTERNS not in self.capabilities:
            raise CapabilityNotSupportedError(self.name, Capability.SUB_PATTERNS)
        subscription = MemorySubscription(self, topic_matcher(topic, pattern=pattern))
        with self.database.lock:
            self._data()["subscriptions"].append(subscription)
        return subscription

    def detach(self, subscription: MemorySubscription) -> None:
        """Forget a closed subscription."""
        with self.database.lock:
            subs = self._data()["subscriptions"]
            if subscription in subs:
                subs.remove(subscription)

    async def purge(self) -> None:
        """Close every subscription of the namespace, then drop the data."""
        with self.database.lock:
            subs = list(self._data()["subscriptions"]) if not self._closed else []
        for subscription in subs:
            await subscription.aclose()
        await super().purge()


def notify(database: MemoryDatabase, namespace: str, topic: str, payload: Mapping[str, JSONValue]) -> None:
    """Deliver to the namespace's matching subscriptions (``publish``, and the store: rule 6c)."""
    body = loads(dumps(dict(payload), "payload"))
    assert isinstance(body, dict)
    with database.lock:
        space = database.namespaces[namespace].get("sub")
        subscriptions = space["subscriptions"] if space is not None else []
        targets = [s for s in subscriptions if s.matcher.match(topic)]
    for subscription in targets:
        subscription.deliver(SubMessage(topic=topic, payload=body))
