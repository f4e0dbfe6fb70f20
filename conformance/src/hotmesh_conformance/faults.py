"""Fault wrappers around any provider (reliability catalogue M-1 and B-5).

Wrap a provider instance and hand it to ``Connection(config, store=..., stream=...)``: the engine
then runs on a backend that misbehaves in one precise, seeded way. Every other attribute is
forwarded unchanged, so the wrapper works for every backend, including yours.

- :class:`AmbiguousCommitStore`: ``apply_transition`` commits, then raises ProviderError as if
  the reply had been lost (Temporal's "ExecuteAndTimeout"), at most once per (job, step). The caller cannot know whether the
  write happened; idempotent transitions (Store rule 3) must make the retry harmless.
- :class:`DuplicatingStream`: every published message is published twice (at-least-once delivery
  taken literally); handlers must be idempotent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from hotmesh.errors import ProviderError
from hotmesh.providers import Message, Transition, TransitionResult

__all__ = ["AmbiguousCommitStore", "DuplicatingStream"]


class _Forwarding:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def __aenter__(self) -> Any:
        await self._inner.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._inner.aclose()


class AmbiguousCommitStore(_Forwarding):
    """A store whose transitions sometimes commit and then report a failure."""

    def __init__(self, inner: Any, *, rate: float = 0.3, seed: int = 0) -> None:
        super().__init__(inner)
        self._random = random.Random(seed)
        self.rate = rate
        self.injected = 0
        self._seen: set[tuple[str, str]] = set()

    def can_publish_to(self, stream: object, /) -> bool:
        target = stream._inner if isinstance(stream, _Forwarding) else stream
        result: bool = self._inner.can_publish_to(target)
        return result

    async def apply_transition(self, transition: Transition, /, *, stream: Any = None) -> TransitionResult:
        target = stream._inner if isinstance(stream, _Forwarding) else stream
        result: TransitionResult = await self._inner.apply_transition(transition, stream=target)
        key = (transition.job_id, transition.step)
        first = key not in self._seen
        self._seen.add(key)
        # At most once per (job, step): the retry must then see DUPLICATE and carry on, which is
        # what is under test (a real outage would instead exhaust the retries: promise C6).
        if first and self._random.random() < self.rate:
            self.injected += 1
            raise ProviderError(f"injected: {transition.step!r} on {transition.job_id!r} committed, reply lost")
        return result


class DuplicatingStream(_Forwarding):
    """A stream that enqueues every published message twice."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.duplicated = 0

    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        doubled = [m for message in messages for m in (message, message)]
        self.duplicated += len(messages)
        ids: list[str] = await self._inner.publish(doubled)
        return ids
