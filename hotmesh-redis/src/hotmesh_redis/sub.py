"""RedisSub: pub/sub on channels ``hm:u:<ns>:<topic>`` (Sub rules 1-5).

Each subscription owns one pub/sub connection and a reader task. After a connection loss the
reader reconnects with backoff and the driver re-issues SUBSCRIBE/PSUBSCRIBE; messages
published while disconnected are gone (pub/sub stores nothing: Sub rule 1). In cluster mode
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
    """One SUBSCRIBE or PSUBSCRIBE and the task that reads it."""

    def __init__(self, owner: RedisSub, channel: str, pattern: bool) -> None:
        self._owner = owner
        self._channel = channel
        self._pattern = pattern
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pubsub = owner.pubsub_client.pubsub()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self, timeout: float) -> None:
        """Subscribe and wait for the server's confirmation (Sub rule 1: after return, receive)."""
        ps = self._pubsub
        with self._owner.errors("subscribe"):
            if self._pattern:
                await ps.psubscribe(self._channel)
            else:
                await ps.subscribe(self._channel)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    raise ProviderError(
                        f"redis sub: no subscribe confirmation from {self._owner.settings.where}"
                    )
                msg = await ps.get_message(timeout=left)
                if msg and msg["type"] in ("subscribe", "psubscribe"):
                    break
        self._task = asyncio.create_task(self._pump(), name=f"hotmesh-redis-sub:{self._channel}")

    async def _pump(self) -> None:
        backoff = 0.05
        prefix_len = len(self._owner.channel_prefix)
        while not self._closed:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                backoff = 0.05
            except (rexc.ConnectionError, rexc.TimeoutError, OSError):
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                with contextlib.suppress(rexc.ConnectionError, rexc.TimeoutError, OSError):
                    await self._pubsub.connect()  # type: ignore[no-untyped-call]  # re-subscribes
                continue
            if not msg or msg.get("type") not in ("message", "pmessage"):
                continue
            try:
                payload = loads(msg["data"])
            except ValueError:
                continue
            if isinstance(payload, dict):
                self._queue.put_nowait(SubMessage(topic=msg["channel"][prefix_len:], payload=payload))

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
        """Unsubscribe and stop the reader; idempotent (Sub rule 4)."""
        if self._closed:
            return
        self._closed = True
        self._owner.forget(self)
        # Drop anything not yet consumed: nothing is received after aclose (Sub rule 4).
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisSub(RedisProvider):
    """Sub on Redis pub/sub; PSUBSCRIBE serves ``*`` patterns (SUB_PATTERNS)."""

    role: ClassVar[str] = "sub"
    role_letter: ClassVar[str] = "u"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._subs: set[RedisSubscription] = set()
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
        # Each subscription holds its connection for its lifetime: pool_size bounds commands in
        # flight, not how many subscriptions a process may hold (MeshCall.exec makes one a call).
        # (redis-py's pool would default to 100: the server's maxclients is the real bound.)
        kwargs["max_connections"] = 2**31
        self._pubsub_client = aioredis.Redis(**kwargs)

    async def aclose(self) -> None:
        """Close every subscription, then the pools."""
        for sub in list(self._subs):
            await sub.aclose()
        ps, self._pubsub_client = self._pubsub_client, None
        try:
            if ps is not None:
                await ps.aclose()
        finally:
            await super().aclose()

    def forget(self, sub: RedisSubscription) -> None:
        """A subscription closed itself."""
        self._subs.discard(sub)

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
        sub = RedisSubscription(self, channel, pattern)
        try:
            await sub.start(self.settings.options.connect_timeout + 5.0)
        except BaseException:
            await sub.aclose()
            raise
        self._subs.add(sub)
        return sub

    async def purge(self) -> None:
        """Pub/sub stores nothing."""

    async def is_empty(self) -> bool:
        """Pub/sub stores nothing."""
        return True
