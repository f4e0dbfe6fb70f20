"""Quorum: engines see each other over the sub channel (roll call: who is alive, what they serve)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

from hotmesh.providers import JSONValue, Sub, SubMessage, Subscription

QUORUM_TOPIC = "hm.quorum"


class Quorum:
    """Answers roll calls with this engine's identity and the topics/streams it serves."""

    def __init__(self, sub: Sub, engine_id: str, describe: Callable[[], dict[str, JSONValue]]) -> None:
        self.sub = sub
        self.engine_id = engine_id
        self.describe = describe
        self._task: asyncio.Task[None] | None = None

    def profile(self) -> dict[str, JSONValue]:
        """What this engine says about itself."""
        return {"engine_id": self.engine_id, "host": socket.gethostname(), "pid": os.getpid(), **self.describe()}

    async def start(self) -> None:
        """Listen for roll calls."""
        subscription = await self.sub.subscribe(QUORUM_TOPIC)
        self._task = asyncio.create_task(self._answer(subscription), name="quorum")

    async def _answer(self, subscription: Subscription) -> None:
        try:
            async for message in subscription:
                if message.payload.get("type") == "roll_call":
                    reply_to = str(message.payload.get("reply_to"))
                    await self.sub.publish(reply_to, {"type": "present", "profile": self.profile()})
        finally:
            await subscription.aclose()

    async def stop(self) -> None:
        """Stop answering."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def roll_call(sub: Sub, *, wait: float = 0.5) -> list[dict[str, JSONValue]]:
    """Ask every engine to report; collect the profiles that arrive within ``wait`` seconds."""
    reply_to = f"{QUORUM_TOPIC}.reply.{os.urandom(6).hex()}"
    replies = await sub.subscribe(reply_to)
    profiles: list[dict[str, JSONValue]] = []
    try:
        await sub.publish(QUORUM_TOPIC, {"type": "roll_call", "reply_to": reply_to})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            message: SubMessage | None = await replies.get(timeout=left)
            if message is None:
                break
            profile = message.payload.get("profile")
            if isinstance(profile, dict):
                profiles.append(profile)
    finally:
        await replies.aclose()
    return profiles
