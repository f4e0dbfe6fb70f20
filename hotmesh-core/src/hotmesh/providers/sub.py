"""The Sub contract: ephemeral fan-out notifications."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hotmesh.providers._base import Provider
from hotmesh.providers._types import JSONValue


@dataclass(frozen=True)
class SubMessage:
    """A notification received on a subscription."""

    topic: str
    payload: Mapping[str, JSONValue]


@runtime_checkable
class Subscription(Protocol):
    """An open subscription: iterate to receive, ``aclose()`` to stop."""

    def __aiter__(self) -> AsyncIterator[SubMessage]:
        """Iterate over received messages until closed."""
        ...

    async def get(self, timeout: float | None = None) -> SubMessage | None:
        """Wait for the next message; None when ``timeout`` seconds pass first."""
        ...

    async def aclose(self) -> None:
        """Stop receiving; idempotent."""
        ...


@runtime_checkable
class Sub(Provider, Protocol):
    """Best-effort publish/subscribe.

    Rules (cited by the kit as "Sub rule N"):

    1. Once ``subscribe`` has returned, every message later published to a matching topic by any
       process is received by that subscription, in publish order per publisher, while both stay
       connected. Nothing is stored: a message published with no subscriber is gone.
    2. Every open matching subscription receives each message (fan-out), including ones in the
       publishing process.
    3. With SUB_PATTERNS, ``subscribe(p, pattern=True)`` matches topics where ``*`` stands for any
       run of characters; without it, ``pattern=True`` raises CapabilityNotSupportedError.
    4. After ``aclose()`` the subscription receives nothing more, and iteration ends.
    5. Payloads are JSON objects and arrive equal to what was published.
    """

    async def publish(self, topic: str, payload: Mapping[str, JSONValue], /) -> None:
        """Send a notification to current subscribers (rules 1, 2, 5)."""
        ...

    async def subscribe(self, topic: str, /, *, pattern: bool = False) -> Subscription:
        """Start receiving messages on a topic or pattern (rules 1, 3)."""
        ...
