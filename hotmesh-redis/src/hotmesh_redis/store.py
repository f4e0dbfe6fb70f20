"""RedisStore: job hashes changed by one Lua call per transition (Store rules 1-18).

Keys (``hm`` prefix, ``s`` for store; ``ns`` the namespace):

- ``hm:s:{ns:j:<job>}`` job hash (JSON values) and ``hm:s:{ns:j:<job>}:steps`` step records;
- ``hm:s:{ns}:t:due|lease|body|tok`` timers (one slot, claimed with a token under a lease);
- ``hm:s:{ns:g:<signal>}:buf|data|seen|w|wl|done`` signal buffer and waiters;
- ``hm:s:{ns:c:<key>}`` cached values (string with PX).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from redis.commands.core import AsyncScript

from hotmesh.errors import ValidationError
from hotmesh.providers import (
    Capability,
    ClaimedTimer,
    CreateResult,
    JSONValue,
    Message,
    NewJob,
    Signal,
    Stream,
    Timer,
    Transition,
    TransitionResult,
    TransitionStatus,
    Waiter,
    check_json,
    dumps,
    loads,
)
from hotmesh_redis import _store_lua as lua
from hotmesh_redis._base import Client, RedisProvider
from hotmesh_redis.stream import RedisStream
from hotmesh_redis.sub import RedisSub


def _ms(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def _encode_messages(messages: Sequence[Message]) -> str:
    return dumps([[m.stream, dict(m.body), dict(m.headers)] for m in messages])


def _decode_messages(text: str) -> tuple[Message, ...]:
    raw = loads(text)
    assert isinstance(raw, list)
    out: list[Message] = []
    for item in raw:
        assert isinstance(item, list)
        stream, body, headers = item
        assert isinstance(stream, str) and isinstance(body, dict) and isinstance(headers, dict)
        out.append(Message(stream=stream, body=body, headers={k: str(v) for k, v in headers.items()}))
    return tuple(out)


def _encode_timer(timer: Timer) -> str:
    due = timer.due.astimezone(UTC)
    m = timer.message
    return dumps(
        {
            "d": math.ceil(due.timestamp() * 1000),
            "due": due.isoformat(),
            "s": m.stream,
            "b": dict(m.body),
            "h": dict(m.headers),
        }
    )


def _decode_timer(timer_id: str, text: str) -> Timer:
    raw: Any = loads(text)
    message = Message(stream=raw["s"], body=raw["b"], headers=raw["h"])
    return Timer(timer_id=timer_id, due=datetime.fromisoformat(raw["due"]), message=message)


class RedisStore(RedisProvider):
    """Store on Redis: every transition is one EVALSHA (Store rule 2)."""

    role: ClassVar[str] = "store"
    role_letter: ClassVar[str] = "s"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scripts: dict[str, AsyncScript] = {}

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Redis adds TTL, the server clock and (off cluster) the atomic outbox."""
        caps = set(self.declared) | {Capability.STORE_TTL, Capability.STORE_CLOCK}
        if not self.settings.cluster:
            caps.add(Capability.ATOMIC_STORE_AND_STREAM)
        return frozenset(caps)

    async def _on_open(self, client: Client) -> None:
        # Scripts are registered once; AsyncScript calls EVALSHA and reloads on NOSCRIPT
        # (after a server restart or SCRIPT FLUSH).
        for name in (
            "CREATE", "TRANSITION", "ADD_TIMER", "CLAIM_TIMERS", "COMPLETE_TIMER",
            "CANCEL_TIMER", "NEXT_TIMER", "DELIVER_SIGNAL", "ADD_WAITER", "CONSUME_SIGNAL",
            "REMOVE_WAITER",
        ):
            self._scripts[name] = client.register_script(getattr(lua, name))

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self.client
        with self.errors(name.lower()):
            return await self._scripts[name](keys=list(keys), args=list(args), client=client)

    # -- keys -----------------------------------------------------------------------------
    def _job_keys(self, job_id: str) -> list[str]:
        base = self.tagged("j", job_id)
        return [base, base + ":steps"]

    def _timer_keys(self) -> list[str]:
        return [self.ns_key(f"t:{k}") for k in ("due", "lease", "body", "tok")]

    def _signal_keys(self, signal_id: str) -> list[str]:
        base = self.tagged("g", signal_id)
        return [f"{base}:{k}" for k in ("buf", "data", "seen", "w", "wl", "done")]

    # -- outbox (Store rule 6) --------------------------------------------------------------
    def can_publish_to(self, stream: object, /) -> bool:
        """True for an open RedisStream on the same server and db, outside cluster mode.

        In cluster mode this is always False: a stream key and a job key live in different
        hash slots, and one script may only touch one slot; the engine then publishes after
        the commit (engine rule 3).
        """
        return (
            isinstance(stream, RedisStream)
            and not self.settings.cluster
            and stream.settings.identity == self.settings.identity
            and not stream.closed
        )

    def can_notify(self, sub: object, /) -> bool:
        """True for a RedisSub on the same server, db and namespace, outside cluster mode:
        the transition's script PUBLISHes its notifications (Store rule 6c)."""
        return (
            isinstance(sub, RedisSub)
            and not self.settings.cluster
            and sub.settings.identity == self.settings.identity
            and sub.channel_prefix == self._channel_prefix()
        )

    def _channel_prefix(self) -> str:
        return f"{self.settings.options.key_prefix}:{RedisSub.role_letter}:{self.namespace}:"

    def _outbox(
        self, messages: Sequence[Message], stream: Stream | None
    ) -> tuple[bool, list[str], list[list[str]]]:
        if not messages or stream is None or not self.can_publish_to(stream):
            return False, [], []
        assert isinstance(stream, RedisStream)
        keys = [stream.stream_key(m.stream) for m in messages]
        payload = [[dumps(dict(m.body)), dumps(dict(m.headers))] for m in messages]
        return True, keys, payload

    # -- jobs -----------------------------------------------------------------------------
    async def create_job(self, job: NewJob, /, *, stream: Stream | None = None) -> CreateResult:
        """Create the job if absent, with its messages in the same script (rules 1, 6, 8)."""
        fields = [[k, dumps(v, f"fields[{k!r}]")] for k, v in job.fields.items()]
        for m in job.messages:
            check_json(dict(m.body), "messages.body")
        published, skeys, payload = self._outbox(job.messages, stream)
        arg = dumps({"f": fields, "exp": -1 if job.expire is None else _ms(job.expire),
                     "pub": payload})
        created = await self._run("CREATE", self._job_keys(job.job_id) + skeys, [arg, lua.SENTINEL])
        return CreateResult(created=bool(created), published=published and bool(created))

    async def apply_transition(
        self, transition: Transition, /, *, stream: Stream | None = None
    ) -> TransitionResult:
        """One EVALSHA: guard, step record, field changes, expiry, XADD (rules 2-6, 8)."""
        t = transition
        sets = [[k, dumps(v, f"set[{k!r}]")] for k, v in t.set.items()]
        incs: list[list[str]] = []
        for k, v in t.increment.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValidationError(f"increment[{k!r}] must be a number, got {v!r}")
            check_json(v, f"increment[{k!r}]")
            incs.append([k, str(v) if isinstance(v, int) else repr(float(v))])
        reqs = [[k] if v is None else [k, dumps(v, f"require[{k!r}]")] for k, v in t.require.items()]
        published, skeys, payload = self._outbox(t.messages, stream)
        doc: dict[str, Any] = {
            "step": t.step,
            "set": sets,
            "inc": incs,
            "del": list(t.delete),
            "req": reqs,
            "read": list(t.read),
            "rec": _encode_messages(t.messages),
            "exp": -1 if t.expire is None else _ms(t.expire),
            "pub": payload,
        }
        if t.ack is not None and stream is not None and self.can_publish_to(stream):  # Store rule 6b
            assert isinstance(stream, RedisStream)
            skeys = skeys + stream.ack_keys(t.ack.message.stream, t.ack.group)
            doc["ack"] = [t.ack.group, t.ack.id]
        if t.notify:  # Store rule 6c (the engine sends notify only when can_notify holds)
            prefix = self._channel_prefix()
            doc["note"] = [[prefix + topic, dumps(dict(payload), "notify.payload")] for topic, payload in t.notify]
        status, rec, values, *flags = await self._run("TRANSITION", self._job_keys(t.job_id) + skeys, [dumps(doc)])
        if status == "notnumber":
            raise ValidationError(f"cannot increment field {rec!r} of job {t.job_id!r}: not a number")
        fields = {f: loads(v) for f, v in zip(t.read, values, strict=False) if v is not None}
        if status == "applied":
            return TransitionResult(
                TransitionStatus.APPLIED,
                fields,
                tuple(t.messages),
                published and bool(t.messages),
                acked=bool(flags and flags[0]),
                notified=len(flags) > 1 and bool(flags[1]),
            )
        if status == "duplicate":
            return TransitionResult(TransitionStatus.DUPLICATE, fields, _decode_messages(rec))
        return TransitionResult(TransitionStatus.REJECTED)

    async def get_job(
        self, job_id: str, /, fields: Sequence[str] | None = None
    ) -> dict[str, JSONValue] | None:
        """Requested fields, or None when the job does not exist (rule 7)."""
        key = self._job_keys(job_id)[0]
        client = self.client
        with self.errors("get_job"):
            if fields is None:
                raw: Any = await client.hgetall(key)
                if not raw:
                    return None
                return {k: loads(v) for k, v in raw.items() if k != lua.SENTINEL}
            wanted = [lua.SENTINEL, *fields]
            values: Any = await client.hmget(key, wanted)
        if values[0] is None:
            return None
        return {f: loads(v) for f, v in zip(fields, values[1:], strict=True) if v is not None}

    async def delete_job(self, job_id: str, /) -> bool:
        """Delete a job and its step records."""
        job, steps = self._job_keys(job_id)
        with self.errors("delete_job"):
            existed = await self.client.delete(job)
            await self.client.delete(steps)
        return bool(existed)

    # -- timers (rules 9-12) ----------------------------------------------------------------
    async def add_timer(self, timer: Timer, /) -> bool:
        """Schedule a timer; False if the id exists (rule 9)."""
        if timer.due.tzinfo is None:
            raise ValidationError("Timer.due must be timezone-aware")
        body = _encode_timer(timer)
        # Round up: a timer is never claimed before its due time (rule 10).
        due_ms = math.ceil(timer.due.timestamp() * 1000)
        return bool(await self._run("ADD_TIMER", self._timer_keys(), [timer.timer_id, due_ms, body]))

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        """Claim due timers by the server clock, earliest first (rule 10)."""
        if limit <= 0:
            return []
        raw = await self._run(
            "CLAIM_TIMERS", self._timer_keys(), [limit, max(1, _ms(lease)), uuid.uuid4().hex]
        )
        return [
            ClaimedTimer(timer=_decode_timer(raw[i], raw[i + 1]), token=raw[i + 2])
            for i in range(0, len(raw), 3)
        ]

    async def complete_timer(self, claimed: ClaimedTimer, /) -> bool:
        """Delete a fired timer if the token still holds (rule 10, fencing)."""
        args = [claimed.timer.timer_id, claimed.token]
        return bool(await self._run("COMPLETE_TIMER", self._timer_keys(), args))

    async def cancel_timer(self, timer_id: str, /) -> bool:
        """Delete a timer, claimed or not (rule 11)."""
        return bool(await self._run("CANCEL_TIMER", self._timer_keys(), [timer_id]))

    async def next_timer_due(self) -> datetime | None:
        """Earliest due time among unclaimed timers (rule 12)."""
        raw = await self._run("NEXT_TIMER", self._timer_keys(), [])
        if not raw:
            return None
        return _decode_timer("", raw).due

    # -- signals (rules 13-16) --------------------------------------------------------------
    @staticmethod
    def _waiter_key(job_id: str, step: str) -> str:
        return dumps([job_id, step])

    async def deliver_signal(
        self, signal_id: str, data: JSONValue, /, *, delivery_id: str
    ) -> list[Waiter]:
        """Buffer the signal once per delivery id; return current waiters (rule 13)."""
        encoded = dumps(data, "data")
        raw = await self._run("DELIVER_SIGNAL", self._signal_keys(signal_id), [delivery_id, encoded])
        waiters: list[Waiter] = []
        for text in raw:
            item: Any = loads(text)
            job_id, step, stream, body, headers = item
            waiters.append(
                Waiter(job_id=job_id, step=step, message=Message(stream, body, headers))
            )
        return waiters

    async def add_waiter(self, signal_id: str, waiter: Waiter, /) -> Signal | None:
        """Register a waiter; return the oldest buffered signal (rule 14)."""
        m = waiter.message
        text = dumps([waiter.job_id, waiter.step, m.stream, dict(m.body), dict(m.headers)])
        key = self._waiter_key(waiter.job_id, waiter.step)
        raw = await self._run("ADD_WAITER", self._signal_keys(signal_id), [key, text])
        if not raw:
            return None
        return Signal(signal_id=signal_id, data=loads(raw[1]), delivery_id=raw[0])

    async def consume_signal(self, signal_id: str, /, *, job_id: str, step: str) -> Signal | None:
        """Take the oldest buffered signal; repeatable for the same waiter (rule 15)."""
        key = self._waiter_key(job_id, step)
        raw = await self._run("CONSUME_SIGNAL", self._signal_keys(signal_id), [key])
        if not raw:
            return None
        return Signal(signal_id=signal_id, data=loads(raw[1]), delivery_id=raw[0])

    async def remove_waiter(self, signal_id: str, /, *, job_id: str, step: str) -> bool:
        """Remove a waiter without consuming (rule 16)."""
        key = self._waiter_key(job_id, step)
        return bool(await self._run("REMOVE_WAITER", self._signal_keys(signal_id), [key]))

    # -- cache (rule 17) --------------------------------------------------------------------
    async def set_cached(self, key: str, value: JSONValue, /, *, ttl: timedelta | None) -> None:
        """SET with PX (rule 17)."""
        encoded = dumps(value, "value")
        with self.errors("set_cached"):
            if ttl is None:
                await self.client.set(self.tagged("c", key), encoded)
            else:
                await self.client.set(self.tagged("c", key), encoded, px=max(1, _ms(ttl)))

    async def get_cached(self, key: str, /) -> tuple[bool, JSONValue]:
        """GET (rule 17)."""
        with self.errors("get_cached"):
            raw = await self.client.get(self.tagged("c", key))
        return (False, None) if raw is None else (True, loads(raw))

    async def delete_cached(self, key: str, /) -> bool:
        """DEL (rule 17)."""
        with self.errors("delete_cached"):
            return bool(await self.client.delete(self.tagged("c", key)))

    # -- clock (rule 18) --------------------------------------------------------------------
    async def now(self) -> datetime:
        """The server clock (TIME), so every engine sees one clock (STORE_CLOCK)."""
        with self.errors("now"):
            seconds, micros = await self.client.time()
        return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=micros)
