"""The Stream contract: durable work queues consumed through consumer groups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol, runtime_checkable

from hotmesh.providers._base import Provider
from hotmesh.providers._types import DeadLetter, Delivery, Message, ReadRequest


@runtime_checkable
class Stream(Provider, Protocol):
    """At-least-once delivery with ack, redelivery of stale work and dead letters.

    Rules (cited by the kit as "Stream rule N"):

    1. ``publish`` returns only after the messages are durably accepted (as durable as the
       backend is: see ``info().durability``); it returns one id per message, in order.
    2. Each group sees every message published to the stream after the group was created (a
       group is created on its first ``read``; messages published before that are also delivered,
       i.e. groups start at the beginning of the stream). Groups are independent.
    3. Within a group, a message is handed to one consumer at a time. It stays pending until
       acked; ``ack`` removes it from the group for good (acking twice is harmless and returns 0
       the second time).
    4. A pending message not acked within ``visibility_timeout`` of its delivery is delivered
       again (to any consumer of the group) with ``delivery_count`` one higher; nothing is lost
       when a consumer dies.
    5. Messages published to one stream are first delivered in publish order (redeliveries may
       interleave).
    6. ``read`` with ``block`` > 0 waits up to ``block`` for work and returns as soon as a message
       is published (woken by the backend, not by fast polling); with ``block`` = 0 it returns at
       once. It returns at most ``count`` deliveries, possibly none.
    7. When a message's next delivery would exceed ``max_deliveries``, it is moved to the group's
       dead letters (error "max deliveries exceeded") instead of being delivered.
    8. ``dead_letter`` moves a pending delivery to the dead letters with the given error and acks
       it; ``dead_letters`` lists them, oldest first.
    9. ``release`` makes pending deliveries deliverable again now, or after ``delay`` when
       STREAM_DELAY is declared (a delay without it raises CapabilityNotSupportedError). A
       release does not count as a delivery; the next read does.
    10. ``length`` counts messages held in the stream; ``backlog`` counts messages a group has not
        acked yet (ready or pending). ``trim`` removes the oldest messages that every group has
        acked until at most ``max_length`` remain, and returns how many it removed; it never
        removes a message some group has not acked.
    11. With STREAM_EXTEND declared, ``extend`` renews the lease of deliveries their consumer is
        still working on: each one still pending *as that delivery* (same ``delivery_count``: not
        acked, dead-lettered or redelivered since) is not redelivered before ``visibility_timeout``
        from now, as if it had just been delivered; the others are left alone. It returns how many
        it renewed, and never counts as a delivery. Renewing a delivery after releasing it is not
        defined (the engine never does). A stream without STREAM_EXTEND does not
        define ``extend`` (or raises CapabilityNotSupportedError); the engine then relies on the
        read's visibility timeout alone.
    """

    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        """Append messages to their streams (rule 1)."""
        ...

    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        """Deliver ready and stale messages to one consumer (rules 2-7)."""
        ...

    async def ack(self, stream: str, group: str, ids: Sequence[str], /) -> int:
        """Acknowledge deliveries; return how many were pending (rule 3)."""
        ...

    async def release(
        self, stream: str, group: str, ids: Sequence[str], /, *, delay: timedelta = timedelta(0)
    ) -> int:
        """Give pending deliveries back (rule 9)."""
        ...

    async def dead_letter(self, delivery: Delivery, error: str, /) -> None:
        """Move a pending delivery to the dead letters (rule 8)."""
        ...

    async def dead_letters(self, stream: str, group: str, /, *, limit: int = 100) -> list[DeadLetter]:
        """List dead letters, oldest first (rule 8)."""
        ...

    async def length(self, stream: str, /) -> int:
        """Messages held in the stream (rule 10)."""
        ...

    async def backlog(self, stream: str, group: str, /) -> int:
        """Messages the group has not acked (rule 10)."""
        ...

    async def trim(self, stream: str, /, *, max_length: int) -> int:
        """Drop old fully-acked messages (rule 10)."""
        ...


@runtime_checkable
class ExtendingStream(Stream, Protocol):
    """A Stream that declares STREAM_EXTEND (Stream rule 11).

    Kept out of :class:`Stream` so a plugin written without it still satisfies the contract.
    Cf. SQS's ChangeMessageVisibility and JetStream's in-progress ack: a live worker renews
    its lease, a dead one stops, so the visibility timeout can be short.
    """

    async def extend(self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta) -> int:
        """Renew the lease of deliveries still pending as delivered (rule 11)."""
        ...
