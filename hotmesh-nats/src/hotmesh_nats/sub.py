"""NatsSub: ephemeral fan-out on core NATS subjects ``hm.<ns>.p.<topic>``.

A topic is encoded as ONE subject token (see :func:`hotmesh_nats._names.token`), so an exact
subscription is an exact NATS subscription. Sub rule 3 says ``*`` matches any run of characters,
including dots; NATS ``*`` matches exactly one token and ``>`` only whole trailing tokens, so a
pattern subscription listens on ``hm.<ns>.p.*`` and filters decoded topics client-side with a
regex. Cost: a pattern subscriber receives every notification of the namespace.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as _DriverSubscription

from hotmesh.errors import CapabilityNotSupportedError
from hotmesh.providers import Capability, JSONValue, SubMessage, dumps
from hotmesh_nats._base import NatsProvider
from hotmesh_nats._names import token, untoken


def topic_matcher(topic: str) -> re.Pattern[str]:
    """Regex for a pattern where ``*`` is any run of characters (Sub rule 3)."""
    return re.compile(".*".join(re.escape(part) for part in topic.split("*")) + r"\Z", re.S)


class NatsSubscription:
    """An open NATS subscription feeding an asyncio queue."""

    def __init__(self, owner: NatsSub, matcher: re.Pattern[str] | None) -> None:
        self._owner = owner
        self._matcher = matcher
        self._queue: asyncio.Queue[SubMessage | None] = asyncio.Queue()
        self._sub: _DriverSubscription | None = None
        self.closed = False

    async def _on_message(self, msg: Msg) -> None:
        if self.closed:
            return
        topic = untoken(msg.subject.split(".", 3)[3])
        if self._matcher is not None and not self._matcher.match(topic):
            return
        try:
            payload = json.loads(msg.data)
        except ValueError:
            return  # not ours: foreign publishers on our subjects are ignored
        if isinstance(payload, dict):
            self._queue.put_nowait(SubMessage(topic=topic, payload=payload))

    async def get(self, timeout: float | None = None) -> SubMessage | None:
        """Next message, or None on timeout or when closed."""
        if self.closed and self._queue.empty():
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def __aiter__(self) -> AsyncIterator[SubMessage]:
        while True:
            message = await self.get()
            if message is None:
                return
            yield message

    async def aclose(self) -> None:
        """Unsubscribe; iteration ends (Sub rule 4). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._owner.detach(self)
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        self._queue.put_nowait(None)


class NatsSub(NatsProvider):
    """Sub provider on core NATS (nothing is stored: is_empty is always true)."""

    role = "sub"
    declared = frozenset({Capability.SUB_PATTERNS, Capability.MULTI_PROCESS})

    def __init__(self, url: str, *, namespace: str, options: Any) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._subscriptions: list[NatsSubscription] = []

    def _subject(self, topic: str) -> str:
        return f"hm.{self.namespace}.p.{token(topic)}"

    async def publish(self, topic: str, payload: Mapping[str, JSONValue], /) -> None:
        """Publish to current subscribers (Sub rules 1, 2, 5)."""
        data = dumps(dict(payload), "payload").encode()
        nc = self.nc
        async with self.errors("publish"):
            await nc.publish(self._subject(topic), data)

    async def subscribe(self, topic: str, /, *, pattern: bool = False) -> NatsSubscription:
        """Subscribe; returns once the server has registered it (Sub rules 1, 3)."""
        if pattern and Capability.SUB_PATTERNS not in self.capabilities:
            raise CapabilityNotSupportedError(self.name, Capability.SUB_PATTERNS)
        nc = self.nc
        wildcard = pattern and "*" in topic
        subscription = NatsSubscription(self, topic_matcher(topic) if wildcard else None)
        subject = f"hm.{self.namespace}.p.*" if wildcard else self._subject(topic)
        async with self.errors("subscribe"):
            subscription._sub = await nc.subscribe(subject, cb=subscription._on_message)
            # Rule 1: after the PONG the server routes every later publish to us.
            await nc.flush(timeout=math.ceil(self._settings.options.request_timeout))
        self._subscriptions.append(subscription)
        return subscription

    def detach(self, subscription: NatsSubscription) -> None:
        """Forget a closed subscription."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def _closing(self) -> None:
        # Deliver what we published before the socket goes away, then end iterations.
        try:
            await self.nc.flush(timeout=2)
        except Exception:
            pass
        for subscription in list(self._subscriptions):
            await subscription.aclose()

    async def purge(self) -> None:
        """Nothing is stored; open subscriptions are closed (like the memory reference)."""
        _ = self.nc  # Provider rule 5: a closed provider raises
        for subscription in list(self._subscriptions):
            await subscription.aclose()

    async def is_empty(self) -> bool:
        """Core NATS stores nothing (Provider rule 4)."""
        _ = self.nc
        return True
