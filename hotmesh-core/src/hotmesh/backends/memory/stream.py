"""MemoryStream: the reference implementation of the Stream rules, in one process."""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from hotmesh.backends.memory._provider import MemoryProvider
from hotmesh.errors import CapabilityNotSupportedError, ValidationError
from hotmesh.providers import (
    Capability,
    DeadLetter,
    Delivery,
    Message,
    ReadRequest,
    dumps,
    loads,
)

MAX_DELIVERIES_ERROR = "max deliveries exceeded"


def _frozen_copy(message: Message) -> Message:
    body = loads(dumps(dict(message.body), "body"))
    assert isinstance(body, dict)
    return Message(stream=message.stream, body=body, headers=dict(message.headers))


class MemoryStream(MemoryProvider):
    """Streams as ordered dicts; each group keeps a cursor and its pending entries."""

    role: ClassVar[str] = "stream"
    declared: ClassVar[frozenset[Capability]] = frozenset({Capability.STREAM_DELAY, Capability.STREAM_EXTEND})

    def _stream(self, name: str) -> dict[str, Any]:
        streams: dict[str, Any] = self._data()
        found: dict[str, Any] | None = streams.get(name)
        if found is None:
            found = streams[name] = {"seq": 0, "messages": {}, "groups": {}}
        return found

    def _group(self, name: str, group: str) -> dict[str, Any]:
        groups: dict[str, Any] = self._stream(name)["groups"]
        found: dict[str, Any] | None = groups.get(group)
        if found is None:  # Stream rule 2: a new group starts at the beginning of the stream.
            found = groups[group] = {"cursor": 0, "pending": {}, "dead": []}
        return found

    def append_locked(self, messages: Sequence[Message]) -> list[str]:
        """Append messages; the caller holds the database lock (used by the store's outbox)."""
        ids: list[str] = []
        touched: set[str] = set()
        for message in messages:
            stream = self._stream(message.stream)
            stream["seq"] += 1
            stream["messages"][stream["seq"]] = _frozen_copy(message)
            ids.append(str(stream["seq"]))
            touched.add(message.stream)
        for name in touched:
            self.database.notifier(self.namespace, name).notify()
        return ids

    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        """Stream rule 1."""
        for index, message in enumerate(messages):
            dumps(dict(message.body), f"messages[{index}].body")
        with self.database.lock:
            return self.append_locked(messages)

    def _take(self, request: ReadRequest, now: float) -> tuple[list[Delivery], float | None]:
        """Hand out ready deliveries; also return when the next pending entry becomes visible."""
        stream = self._stream(request.stream)
        group = self._group(request.stream, request.group)
        pending: dict[int, dict[str, Any]] = group["pending"]
        candidates = sorted(seq for seq, e in pending.items() if e["visible_at"] <= now)
        # Sequence numbers only grow: new messages are cursor+1 .. seq (some may be trimmed), so
        # there is no need to scan every message ever published.
        fresh = range(group["cursor"] + 1, stream["seq"] + 1)
        deliveries: list[Delivery] = []
        for seq in itertools.chain(candidates, fresh):
            if len(deliveries) >= request.count:
                break
            message = stream["messages"].get(seq)
            if message is None:  # trimmed: never deliverable again
                pending.pop(seq, None)
                group["cursor"] = max(group["cursor"], seq)
                continue
            group["cursor"] = max(group["cursor"], seq)
            count = pending.get(seq, {"count": 0})["count"] + 1
            if request.max_deliveries is not None and count > request.max_deliveries:
                pending.pop(seq, None)  # Stream rule 7
                group["dead"].append(
                    DeadLetter(str(seq), message, count - 1, request.group, MAX_DELIVERIES_ERROR)
                )
                continue
            pending[seq] = {"count": count, "visible_at": now + request.visibility_timeout.total_seconds()}
            deliveries.append(Delivery(id=str(seq), message=message, delivery_count=count, group=request.group))
        later = [e["visible_at"] for e in pending.values() if e["visible_at"] > now]
        return deliveries, min(later) if later else None

    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        """Stream rules 2-7."""
        if request.count < 1:
            raise ValidationError(f"ReadRequest.count must be at least 1, got {request.count}")
        deadline = time.monotonic() + request.block.total_seconds()
        notifier = self.database.notifier(self.namespace, request.stream)
        while True:
            now = time.time()
            with self.database.lock:
                deliveries, next_visible = self._take(request, now)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            wait = remaining if next_visible is None else min(remaining, max(next_visible - now, 0.001))
            await notifier.wait(wait)

    async def ack(self, stream: str, group: str, ids: Sequence[str], /) -> int:
        """Stream rule 3."""
        with self.database.lock:
            return self.ack_locked(stream, group, ids)

    def ack_locked(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Ack; the caller holds the database lock (used by the store, Store rule 6b)."""
        pending = self._group(stream, group)["pending"]
        return sum(1 for i in ids if pending.pop(int(i), None) is not None)

    async def release(
        self, stream: str, group: str, ids: Sequence[str], /, *, delay: timedelta = timedelta(0)
    ) -> int:
        """Stream rule 9."""
        if delay > timedelta(0) and Capability.STREAM_DELAY not in self.capabilities:
            raise CapabilityNotSupportedError(self.name, Capability.STREAM_DELAY)
        visible_at = time.time() + delay.total_seconds()
        released = 0
        with self.database.lock:
            pending = self._group(stream, group)["pending"]
            for i in ids:
                entry = pending.get(int(i))
                if entry is not None:
                    entry["visible_at"] = visible_at
                    released += 1
        self.database.notifier(self.namespace, stream).notify()
        return released

    async def extend(self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta) -> int:
        """Stream rule 11: fenced by the delivery count, so a lease lost to a redelivery stays lost."""
        visible_at = time.time() + visibility_timeout.total_seconds()
        renewed = 0
        with self.database.lock:
            for delivery in deliveries:
                entry = self._group(delivery.message.stream, delivery.group)["pending"].get(int(delivery.id))
                if entry is not None and entry["count"] == delivery.delivery_count:
                    entry["visible_at"] = visible_at
                    renewed += 1
        return renewed

    async def dead_letter(self, delivery: Delivery, error: str, /) -> None:
        """Stream rule 8."""
        with self.database.lock:
            group = self._group(delivery.message.stream, delivery.group)
            if group["pending"].pop(int(delivery.id), None) is not None:
                group["dead"].append(
                    DeadLetter(delivery.id, delivery.message, delivery.delivery_count, delivery.group, error)
                )

    async def dead_letters(self, stream: str, group: str, /, *, limit: int = 100) -> list[DeadLetter]:
        """Stream rule 8."""
        with self.database.lock:
            return list(self._group(stream, group)["dead"][:limit])

    async def length(self, stream: str, /) -> int:
        """Stream rule 10."""
        with self.database.lock:
            return len(self._stream(stream)["messages"])

    async def backlog(self, stream: str, group: str, /) -> int:
        """Stream rule 10."""
        with self.database.lock:
            state = self._stream(stream)
            g = self._group(stream, group)
            unread = sum(1 for seq in state["messages"] if seq > g["cursor"])
            return unread + len(g["pending"])

    async def trim(self, stream: str, /, *, max_length: int) -> int:
        """Stream rule 10: never drops what a group has not acked."""
        with self.database.lock:
            state = self._stream(stream)
            removed = 0
            for seq in sorted(state["messages"]):
                if len(state["messages"]) <= max_length:
                    break
                acked_by_all = all(
                    seq <= g["cursor"] and seq not in g["pending"] for g in state["groups"].values()
                )
                if not acked_by_all:
                    break
                del state["messages"][seq]
                removed += 1
            return removed
