"""Deliberately broken providers: the kit must catch each of them.

Each subclasses a memory reference provider and breaks exactly one rule. The meta-tests copy
this module into a pytester directory and register the classes under their own URL schemes.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from hotmesh.backends.memory import MemorySearch, MemoryStore, MemoryStream
from hotmesh.errors import ProviderError
from hotmesh.providers import (
    ClaimedTimer,
    Delivery,
    Query,
    QueryResult,
    ReadRequest,
    Stream,
    Transition,
    TransitionResult,
)


class _Renamed:
    """Accept any URL scheme but share the memory database named after the class."""

    def __init__(self, url: str, *, namespace: str, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"memory://{type(self).__name__}", namespace=namespace, options=options)  # type: ignore[call-arg]


class DroppingStream(_Renamed, MemoryStream):
    """Breaks Stream rule 4: every delivery is acked at once, so unacked work is never redelivered."""

    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        got: list[Delivery] = await super().read(request)
        if got:
            await self.ack(request.stream, request.group, [d.id for d in got])
        return got


class UnfencedStream(_Renamed, MemoryStream):
    """Breaks Stream rule 11: extend renews any pending delivery of the id, even one that was
    redelivered since, so a worker that lost its lease takes it back."""

    async def extend(self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta) -> int:
        with self.database.lock:
            current = [
                dataclasses.replace(d, delivery_count=entry["count"])
                for d in deliveries
                if (entry := self._group(d.message.stream, d.group)["pending"].get(int(d.id))) is not None
            ]
        renewed: int = await super().extend(current, visibility_timeout=visibility_timeout)
        return renewed


class TwiceStore(_Renamed, MemoryStore):
    """Breaks Store rule 3: no idempotency, a repeated step applies again."""

    async def apply_transition(self, transition: Transition, /, *, stream: Stream | None = None) -> TransitionResult:
        fresh = dataclasses.replace(transition, step=f"{transition.step}#{uuid.uuid4().hex}")
        result: TransitionResult = await super().apply_transition(fresh, stream=stream)
        return result


class LeakyTimerStore(_Renamed, MemoryStore):
    """Breaks Store rule 10: leases are ignored, so a claimed timer is claimable again at once."""

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        result: list[ClaimedTimer] = await super().claim_due_timers(limit=limit, lease=timedelta(0))
        return result


class DeadStore(_Renamed, MemoryStore):
    """A backend that is unreachable: the kit must report an ERROR, never a skip."""

    async def open(self) -> None:
        raise ProviderError("dead-store://127.0.0.1:1 is unreachable (connection refused)")


class OffsetlessSearch(_Renamed, MemorySearch):
    """Breaks Search rule 4: ``offset`` is ignored, so every page starts at the first hit."""

    async def query(self, query: Query, /) -> QueryResult:
        result: QueryResult = await super().query(dataclasses.replace(query, offset=0))
        return result
