"""RedisSub: pub/sub on channels ``hm:u:<ns>:<topic>`` (Sub rules 1-5).

All subscriptions of a provider share one pub/sub connection and one reader task (see _Hub).
After a connection loss the reader reconnects with backoff and the driver re-issues
SUBSCRIBE/PSUBSCRIBE; messages published while disconnected are gone (pub/sub stores nothing:
Sub rule 1). In cluster mode
classic pub/sub is broadcast over the cluster bus, so a plain connection to the seed node
serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import redis.asyncio as aioredis
import redis.exceptions as rexc

from hotmesh.errors import ProviderError, ValidationError
from hotmesh.providers import Capability, JSONValue, SubMessage, check_json, dumps, loads
from hotmesh_redis._base import Client, RedisProvider

_GLOB_SPECIAL = re.compile(r"([?\[\]\\])")
_CLOSED: Any = object()


class RedisSubscription:
    """One subscription: a queue fed by the provider's shared pub/sub connection."""

    def __init__(self, hub: _Hub, channel: str, pattern: bool) -> None:
        self._hub = hub
        self.key = (pattern, channel)
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False

    def deliver(self, message: SubMessage) -> None:
        if not self._closed:
            self._queue.put_nowait(message)

    def __aiter__(self) -> AsyncIterator[SubMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[SubMessage]:
        while True:
            item = await self._queue.get()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)
                return
            yield item

    async def get(self, timeout: float | None = None) -> SubMessage | None:
        """Next message, or None after ``timeout`` seconds or once closed."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            return None
        result: SubMessage = item
        return result

    async def aclose(self) -> None:
        """Stop receiving; idempotent (Sub rule 4)."""
        if self._closed:
            return
        self._closed = True
        # Drop anything not yet consumed: nothing is received after aclose (Sub rule 4).
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)
        await self._hub.remove(self)


class _Hub:
    """One pub/sub connection per provider, shared by all its subscriptions.

    A subscription costs one SUBSCRIBE on an open connection (none when its channel is already
    subscribed), not a new TCP connection: ``MeshCall.exec`` and ``handle.result`` subscribe once
    per call. A single reader task dispatches messages and the server's confirmations; after a
    connection loss it reconnects with backoff and the driver re-issues every SUBSCRIBE.
    """

    def __init__(self, owner: RedisSub) -> None:
        self._owner = owner
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._listeners: dict[tuple[bool, str], set[RedisSubscription]] = {}
        self._confirmed: dict[tuple[bool, str], asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()

    async def add(self, sub: RedisSubscription, timeout: float) -> None:
        """Register ``sub``; return once the server confirmed its channel (Sub rule 1)."""
        pattern, channel = sub.key
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self._owner.pubsub_client.pubsub()
            listeners = self._listeners.setdefault(sub.key, set())
            listeners.add(sub)
            confirmed = self._confirmed.get(sub.key)
            if confirmed is None:
                confirmed = self._confirmed[sub.key] = asyncio.get_running_loop().create_future()
                try:
                    with self._owner.errors("subscribe"):
                        if pattern:
                            await self._pubsub.psubscribe(channel)
                        else:
                            await self._pubsub.subscribe(channel)
                except BaseException:
                    # Not subscribed (the server was unreachable): forget the channel, or the
                    # next subscriber would wait on this confirmation, which never comes (a
                    # reconnect re-subscribes only the channels the client recorded).
                    listeners.discard(sub)
                    if not listeners:
                        del self._listeners[sub.key]
                    self._confirmed.pop(sub.key, None)
                    raise
                if self._task is None or self._task.done():
                    self._task = asyncio.create_task(self._pump(), name="hotmesh-redis-sub")
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), timeout)
        except TimeoutError:
            await self.remove(sub)
            raise ProviderError(f"redis sub: no subscribe confirmation from {self._owner.settings.where}") from None

    async def remove(self, sub: RedisSubscription) -> None:
        pattern, channel = sub.key
        async with self._lock:
            listeners = self._listeners.get(sub.key)
            if listeners is None:
                return
            listeners.discard(sub)
            if listeners:
                return
            del self._listeners[sub.key]
            self._confirmed.pop(sub.key, None)
            if self._pubsub is not None:
                with contextlib.suppress(Exception):  # the channel is forgotten locally anyway
                    if pattern:
                        await self._pubsub.punsubscribe(channel)
                    else:
                        await self._pubsub.unsubscribe(channel)

    async def _pump(self) -> None:
        backoff = 0.05
        prefix_len = len(self._owner.channel_prefix)
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
                backoff = 0.05
            except (rexc.ConnectionError, rexc.TimeoutError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                with contextlib.suppress(rexc.ConnectionError, rexc.TimeoutError, OSError):
                    await self._pubsub.connect()  # re-subscribes every channel
                continue
            if not msg:
                continue
            kind = msg.get("type")
            if kind in ("subscribe", "psubscribe"):
                waiting = self._confirmed.get((kind == "psubscribe", str(msg["channel"])))
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
                continue
            if kind == "message":
                key = (False, str(msg["channel"]))
            elif kind == "pmessage":
                key = (True, str(msg["pattern"]))
            else:
                continue
            listeners = self._listeners.get(key)
            if not listeners:
                continue
            try:
                payload = loads(msg["data"])
            except ValueError:
                continue
            if isinstance(payload, dict):
                message = SubMessage(topic=str(msg["channel"])[prefix_len:], payload=payload)
                for sub in list(listeners):
                    sub.deliver(message)

    async def aclose(self) -> None:
        for listeners in list(self._listeners.values()):
            for sub in list(listeners):
                await sub.aclose()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            with contextlib.suppress(Exception):
                await ps.aclose()


class RedisSub(RedisProvider):
    """Sub on Redis pub/sub; PSUBSCRIBE serves ``*`` patterns (SUB_PATTERNS)."""

    role: ClassVar[str] = "sub"
    role_letter: ClassVar[str] = "u"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hub: _Hub | None = None
        self._pubsub_client: aioredis.Redis | None = None

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Pub/sub stores nothing: multi-process and patterns, not durable."""
        return frozenset({Capability.MULTI_PROCESS, Capability.SUB_PATTERNS})

    @property
    def channel_prefix(self) -> str:
        """Every channel of this namespace starts with this."""
        return f"{self._prefix}{self.namespace}:"

    @property
    def pubsub_client(self) -> aioredis.Redis:
        """The plain (non-cluster) client pub/sub connections come from."""
        self.client  # noqa: B018 - raises when closed
        assert self._pubsub_client is not None
        return self._pubsub_client

    async def _on_open(self, client: Client) -> None:
        kwargs = self.settings.client_kwargs(blocking=True)
        kwargs["max_connections"] = 4  # one shared pub/sub connection (plus a spare on reconnect)
        self._pubsub_client = aioredis.Redis(**kwargs)
        self._hub = _Hub(self)

    async def aclose(self) -> None:
        """Close every subscription, then the pools."""
        hub, self._hub = self._hub, None
        if hub is not None:
            await hub.aclose()
        ps, self._pubsub_client = self._pubsub_client, None
        try:
            if ps is not None:
                await ps.aclose()
        finally:
            await super().aclose()

    @staticmethod
    def _check_topic(topic: str) -> str:
        if not isinstance(topic, str) or not topic:
            raise ValidationError(f"a topic must be a non-empty string, got {topic!r}")
        return topic

    async def publish(self, topic: str, payload: Mapping[str, JSONValue], /) -> None:
        """PUBLISH the JSON payload (rules 1, 2, 5)."""
        self._check_topic(topic)
        if not isinstance(payload, Mapping):
            raise ValidationError(f"a sub payload must be a JSON object, got {type(payload).__name__}")
        check_json(dict(payload), "payload")
        client = self.client
        with self.errors("publish"):
            await client.publish(self.channel_prefix + topic, dumps(dict(payload)))

    async def subscribe(self, topic: str, /, *, pattern: bool = False) -> RedisSubscription:
        """SUBSCRIBE, or PSUBSCRIBE with ``*`` as the only wildcard (rules 1, 3)."""
        self._check_topic(topic)
        if pattern:
            channel = self.channel_prefix + _GLOB_SPECIAL.sub(r"\\\1", topic)
        else:
            channel = self.channel_prefix + topic
        self.client  # noqa: B018 - raises when closed
        assert self._hub is not None
        sub = RedisSubscription(self._hub, channel, pattern)
        await self._hub.add(sub, self.settings.options.connect_timeout + 5.0)
        return sub

    async def purge(self) -> None:
        """Pub/sub stores nothing."""

    async def is_empty(self) -> bool:
        """Pub/sub stores nothing."""
        return True
