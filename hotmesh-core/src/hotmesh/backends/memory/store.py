"""MemoryStore: the reference implementation of the Store rules, in one process."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from hotmesh.backends.memory._provider import MemoryProvider
from hotmesh.backends.memory.stream import MemoryStream
from hotmesh.backends.memory.sub import MemorySub, notify
from hotmesh.providers import (
    Capability,
    ClaimedTimer,
    CreateResult,
    JSONValue,
    NewJob,
    Signal,
    Stream,
    Timer,
    Transition,
    TransitionResult,
    TransitionStatus,
    Waiter,
    dumps,
    loads,
)


def _copy(value: Any) -> JSONValue:
    """Store values as JSON would: isolated copies, tuples become lists."""
    return loads(dumps(value))


def _add(current: JSONValue, delta: float) -> int | float:
    base = current if isinstance(current, (int, float)) and not isinstance(current, bool) else 0
    total = base + delta
    if isinstance(base, int) and float(delta).is_integer() and not isinstance(delta, bool):
        return int(total)
    return total


class MemoryStore(MemoryProvider):
    """Jobs, timers, signals and cache in a dict guarded by the database lock."""

    role: ClassVar[str] = "store"
    declared: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.STORE_TTL, Capability.ATOMIC_STORE_AND_STREAM}
    )

    def _empty(self) -> dict[str, Any]:
        return {
            "jobs": {},
            "timers": {},
            "waiters": {},
            "signals": {},
            "deliveries": set(),
            "consumed": {},
            "cache": {},
        }

    # -- jobs ---------------------------------------------------------------------------------

    def _live_job(self, data: dict[str, Any], job_id: str) -> dict[str, Any] | None:
        job: dict[str, Any] | None = data["jobs"].get(job_id)
        if job is not None and job["expires"] is not None and job["expires"] <= time.time():
            del data["jobs"][job_id]
            return None
        return job

    def can_publish_to(self, stream: object, /) -> bool:
        """True for a MemoryStream of the same memory:// database and namespace (Store rule 6)."""
        return (
            isinstance(stream, MemoryStream)
            and stream.database is self.database
            and stream.namespace == self.namespace
        )

    def can_notify(self, sub: object, /) -> bool:
        """True for a MemorySub of the same memory:// database and namespace (Store rule 6c)."""
        return isinstance(sub, MemorySub) and sub.database is self.database and sub.namespace == self.namespace

    def _outbox(self, stream: Stream | None) -> MemoryStream | None:
        return stream if isinstance(stream, MemoryStream) and self.can_publish_to(stream) else None

    async def create_job(self, job: NewJob, /, *, stream: Stream | None = None) -> CreateResult:
        """Store rules 1, 6, 8."""
        fields = {key: _copy(value) for key, value in job.fields.items()}
        outbox = self._outbox(stream)
        with self.database.lock:
            data = self._data()
            if self._live_job(data, job.job_id) is not None:
                return CreateResult(created=False)
            expires = time.time() + job.expire.total_seconds() if job.expire is not None else None
            data["jobs"][job.job_id] = {"fields": fields, "steps": {}, "expires": expires}
            if outbox is not None and job.messages:
                outbox.append_locked(job.messages)
        return CreateResult(created=True, published=outbox is not None and bool(job.messages))

    async def apply_transition(
        self, transition: Transition, /, *, stream: Stream | None = None
    ) -> TransitionResult:
        """Store rules 2-6, 8."""
        t = transition
        new_values = {key: _copy(value) for key, value in t.set.items()}
        outbox = self._outbox(stream)
        with self.database.lock:
            data = self._data()
            job = self._live_job(data, t.job_id)
            if job is None:
                return TransitionResult(status=TransitionStatus.REJECTED)
            fields: dict[str, JSONValue] = job["fields"]
            if t.step in job["steps"]:
                return TransitionResult(
                    status=TransitionStatus.DUPLICATE,
                    fields={k: _copy(fields[k]) for k in t.read if k in fields},
                    messages=job["steps"][t.step],
                )
            for key, expected in t.require.items():
                if expected is None:
                    if key in fields:
                        return TransitionResult(status=TransitionStatus.REJECTED)
                elif key not in fields or fields[key] != _copy(expected):
                    return TransitionResult(status=TransitionStatus.REJECTED)
            fields.update(new_values)
            for key, delta in t.increment.items():
                fields[key] = _add(fields.get(key), delta)
            for key in t.delete:
                fields.pop(key, None)
            job["steps"][t.step] = t.messages
            if t.expire is not None:
                job["expires"] = time.time() + t.expire.total_seconds()
            if outbox is not None and t.messages:
                outbox.append_locked(t.messages)
            acked = outbox is not None and t.ack is not None
            if acked:
                assert outbox is not None and t.ack is not None
                outbox.ack_locked(t.ack.message.stream, t.ack.group, [t.ack.id])
            read = {k: _copy(fields[k]) for k in t.read if k in fields}
        for topic, payload in t.notify:  # rule 6c: after the change is visible
            notify(self.database, self.namespace, topic, payload)
        return TransitionResult(
            status=TransitionStatus.APPLIED,
            fields=read,
            messages=t.messages,
            published=outbox is not None and bool(t.messages),
            acked=acked,
            notified=bool(t.notify),
        )

    async def get_job(
        self, job_id: str, /, fields: Sequence[str] | None = None
    ) -> dict[str, JSONValue] | None:
        """Store rule 7."""
        with self.database.lock:
            job = self._live_job(self._data(), job_id)
            if job is None:
                return None
            stored: dict[str, JSONValue] = job["fields"]
            names = stored.keys() if fields is None else [f for f in fields if f in stored]
            return {name: _copy(stored[name]) for name in names}

    async def delete_job(self, job_id: str, /) -> bool:
        """Delete a job and its step records."""
        with self.database.lock:
            data = self._data()
            existed = self._live_job(data, job_id) is not None
            data["jobs"].pop(job_id, None)
            return existed

    # -- timers -------------------------------------------------------------------------------

    async def add_timer(self, timer: Timer, /) -> bool:
        """Store rule 9."""
        with self.database.lock:
            timers = self._data()["timers"]
            if timer.timer_id in timers:
                return False
            timers[timer.timer_id] = {"timer": timer, "lease_until": 0.0, "token": ""}
            return True

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        """Store rule 10."""
        now = time.time()
        claimed: list[ClaimedTimer] = []
        with self.database.lock:
            timers = self._data()["timers"]
            due = sorted(
                (e for e in timers.values() if e["timer"].due.timestamp() <= now and e["lease_until"] <= now),
                key=lambda e: (e["timer"].due, e["timer"].timer_id),
            )
            for entry in due[: max(limit, 0)]:
                entry["token"] = uuid.uuid4().hex
                entry["lease_until"] = now + lease.total_seconds()
                claimed.append(ClaimedTimer(timer=entry["timer"], token=entry["token"]))
        return claimed

    async def complete_timer(self, claimed: ClaimedTimer, /) -> bool:
        """Store rule 10 (fenced by token and lease)."""
        with self.database.lock:
            timers = self._data()["timers"]
            entry = timers.get(claimed.timer.timer_id)
            if entry is None or entry["token"] != claimed.token or entry["lease_until"] <= time.time():
                return False
            del timers[claimed.timer.timer_id]
            return True

    async def cancel_timer(self, timer_id: str, /) -> bool:
        """Store rule 11."""
        with self.database.lock:
            return self._data()["timers"].pop(timer_id, None) is not None

    async def next_timer_due(self) -> datetime | None:
        """Store rule 12."""
        now = time.time()
        with self.database.lock:
            dues = [e["timer"].due for e in self._data()["timers"].values() if e["lease_until"] <= now]
        return min(dues) if dues else None

    # -- signals ------------------------------------------------------------------------------

    async def deliver_signal(
        self, signal_id: str, data: JSONValue, /, *, delivery_id: str
    ) -> list[Waiter]:
        """Store rule 13."""
        value = _copy(data)
        with self.database.lock:
            state = self._data()
            if (signal_id, delivery_id) not in state["deliveries"]:
                state["deliveries"].add((signal_id, delivery_id))
                state["signals"].setdefault(signal_id, []).append(
                    Signal(signal_id=signal_id, data=value, delivery_id=delivery_id)
                )
            return list(state["waiters"].get(signal_id, {}).values())

    async def add_waiter(self, signal_id: str, waiter: Waiter, /) -> Signal | None:
        """Store rule 14."""
        with self.database.lock:
            state = self._data()
            state["waiters"].setdefault(signal_id, {})[(waiter.job_id, waiter.step)] = waiter
            buffered: list[Signal] = state["signals"].get(signal_id, [])
            first: Signal | None = buffered[0] if buffered else None
            return first

    async def consume_signal(self, signal_id: str, /, *, job_id: str, step: str) -> Signal | None:
        """Store rule 15."""
        with self.database.lock:
            state = self._data()
            key = (signal_id, job_id, step)
            if key in state["consumed"]:
                found: Signal = state["consumed"][key]
                return found
            waiters = state["waiters"].get(signal_id, {})
            if (job_id, step) not in waiters:
                return None
            buffered = state["signals"].get(signal_id, [])
            if not buffered:
                return None
            signal: Signal = buffered.pop(0)
            if not buffered:
                state["signals"].pop(signal_id, None)
            del waiters[(job_id, step)]
            if not waiters:
                state["waiters"].pop(signal_id, None)
            state["consumed"][key] = signal
            return signal

    async def remove_waiter(self, signal_id: str, /, *, job_id: str, step: str) -> bool:
        """Store rule 16."""
        with self.database.lock:
            waiters = self._data()["waiters"].get(signal_id, {})
            return waiters.pop((job_id, step), None) is not None

    # -- cache --------------------------------------------------------------------------------

    async def set_cached(self, key: str, value: JSONValue, /, *, ttl: timedelta | None) -> None:
        """Store rule 17."""
        stored = _copy(value)
        expires = time.time() + ttl.total_seconds() if ttl is not None else None
        with self.database.lock:
            self._data()["cache"][key] = (stored, expires)

    async def get_cached(self, key: str, /) -> tuple[bool, JSONValue]:
        """Store rule 17."""
        with self.database.lock:
            cache = self._data()["cache"]
            entry = cache.get(key)
            if entry is None:
                return (False, None)
            if entry[1] is not None and entry[1] <= time.time():
                del cache[key]
                return (False, None)
            return (True, _copy(entry[0]))

    async def delete_cached(self, key: str, /) -> bool:
        """Store rule 17."""
        found, _ = await self.get_cached(key)
        with self.database.lock:
            self._data()["cache"].pop(key, None)
        return found

    async def now(self) -> datetime:
        """Store rule 18: this host's clock."""
        return datetime.now(UTC)
