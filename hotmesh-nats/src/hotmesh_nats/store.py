"""NatsStore: job state on JetStream KV, one bucket per namespace (``hotmesh_<ns>``).

Every piece of state that must change atomically lives in ONE KV entry, updated with
compare-and-set on the entry's revision and retried on conflict (Store rule 2):

* ``j.<id>``   a job: ``{"f": fields, "s": {step: [messages]}, "x": expires_at | null}``;
  the step records make transitions idempotent (rule 3) and are updated in the same CAS.
* ``t.<id>``   a timer: ``{"d": due ISO, "e": due epoch, "m": message, "l": lease_until, "k": token}``.
* ``s.<id>``   a signal id: buffered signals, seen delivery ids, waiters and consumed results,
  so deliver / add_waiter / consume are each one CAS on one entry (rules 13-16).
* ``c.<key>``  a cached value with its expiry.

Ids are base64url-encoded into keys. Cost: a transition is 2 round trips (get + CAS update), plus
one per retry under contention on the same job.

TTL without server support (nats-server 2.9 has no per-message TTL): the expiry is stored in the
value and an expired entry is treated as absent everywhere (rules 1, 8, 17); ``create_job``
overwrites an expired job with a CAS on its revision; reads delete expired entries lazily.

Timers are found by scanning the ``t.>`` keys with a throwaway JetStream consumer (last value per
subject): ``claim_due_timers`` and ``next_timer_due`` cost O(number of timers) per call, with no
write contention between ``add_timer`` calls. Each claim is a CAS that writes a new token and lease,
so at most one claimer holds a timer and an old token cannot complete it (rule 10).

No atomic outbox (rule 6): a KV write and a stream publish cannot be one JetStream operation on
2.9, so ``can_publish_to`` is always False and the engine publishes after commit.

Clock (rule 18, ``store.clock``): due times, leases and expiries are judged by the server's wall
clock, read from the stamp JetStream puts on a message stored under the bucket's ``clock`` key
(see :mod:`hotmesh_nats._clock`), so hosts whose clocks disagree still agree on when a timer is
due.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from nats.errors import MaxPayloadError
from nats.js import api
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from hotmesh.errors import ConfigError, PayloadTooLargeError, ProviderError, ValidationError
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
    dumps,
    loads,
)
from hotmesh_nats._base import NatsProvider
from hotmesh_nats._clock import ServerClock
from hotmesh_nats._names import key as kv_key

R = TypeVar("R")
_KEEP = object()
"""Returned by a mutation to mean "write nothing"."""
_DELETE = object()
"""Returned by a mutation to delete the entry."""
_MAX_RETRIES = 200
_PAYLOAD_SHARE = 8
"""One job's KV value must hold several copies of a payload (see ``NatsStore.payload_limit``)."""
_RECENT_ENTRIES = 4096
"""Entries whose last known (revision, value) this store remembers (see ``_mutate``)."""
_RECENT_MAX_BYTES = 64 * 1024
"""Larger values are not remembered (a long history would cost more memory than it saves)."""
_SCAN_BATCH = 1000
_CLOCK_KEY = "clock"
"""The bucket key whose messages carry the server's time stamps (no other key lacks a dot)."""
_CAS_SERIALIZED = (2, 9, 21)
"""First nats-server whose clustered streams check the expected revision inside the Raft
proposal (nats-io/nats-server#4320)."""


def _copy(value: Any) -> JSONValue:
    return loads(dumps(value))


def _add(current: JSONValue, delta: float) -> int | float:
    base = current if isinstance(current, (int, float)) and not isinstance(current, bool) else 0
    total = base + delta
    if isinstance(base, int) and float(delta).is_integer() and not isinstance(delta, bool):
        return int(total)
    return total


def _msg_out(message: Message) -> dict[str, JSONValue]:
    return {"s": message.stream, "b": dict(message.body), "h": dict(message.headers)}


def _msg_in(data: Any) -> Message:
    return Message(stream=data["s"], body=data["b"], headers=data["h"])


def _expires_at(delta: timedelta | None, now: float) -> float | None:
    return None if delta is None else now + delta.total_seconds()


def _live(expires: Any, now: float) -> bool:
    return expires is None or float(expires) > now


def _waiter_key(job_id: str, step: str) -> str:
    return dumps([job_id, step])


class NatsStore(NatsProvider):
    """Store provider on JetStream KV (see the module docstring for the layout)."""

    role = "store"
    declared = frozenset(
        {Capability.STORE_TTL, Capability.STORE_CLOCK, Capability.MULTI_PROCESS, Capability.DURABLE}
    )

    def __init__(self, url: str, *, namespace: str, options: Any) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._bucket = f"hotmesh_{self.namespace}"
        self._kv: KeyValue | None = None
        self._recent: OrderedDict[str, tuple[int, bytes]] = OrderedDict()
        self._clock = ServerClock(self._server_stamp)

    async def _opened(self) -> None:
        """Refuse replicated buckets on servers whose compare-and-set is not serialized."""
        if self._settings.options.replicas <= 1:
            return
        version = self.nc.connected_server_version
        found = (version.major, version.minor, version.patch)
        if found < _CAS_SERIALIZED:
            await self.aclose()
            raise ConfigError(
                f"nats store: replicas={self._settings.options.replicas} needs nats-server >= 2.9.21;"
                f" {self.display_url} runs {version}, whose replicated streams can accept two"
                " concurrent updates of the same revision (nats-io/nats-server#4320) and lose"
                " writes. Upgrade the server or use replicas=1"
            )

    # ---------------------------------------------------------------- plumbing
    async def _bucket_kv(self) -> KeyValue:
        _ = self.nc
        if self._kv is not None:
            return self._kv
        opts = self._settings.options
        async with self.errors("open bucket"):
            try:
                self._kv = await self.js.key_value(self._bucket)
            except (BucketNotFoundError, NotFoundError):
                try:
                    self._kv = await self.js.create_key_value(
                        api.KeyValueConfig(
                            bucket=self._bucket,
                            history=1,
                            storage=(
                                api.StorageType.FILE if opts.storage == "file"
                                else api.StorageType.MEMORY
                            ),
                            replicas=opts.replicas,
                        )
                    )
                except BadRequestError:
                    # Another process or connection created it at the same moment ("subjects
                    # overlap with an existing stream"): use theirs.
                    self._kv = await self.js.key_value(self._bucket)
        return self._kv

    async def _server_stamp(self) -> datetime:
        """Store an empty message under the clock key and return the server's stamp on the
        newest one: ours, or one stored by another process after ours and before this read,
        which was stamped inside the same request window (so ServerClock's error bound holds)."""
        kv = await self._bucket_kv()
        async with self.errors("read the server clock"):
            await kv.put(_CLOCK_KEY, b"")
            stored = await self.js.get_msg(f"KV_{self._bucket}", subject=f"$KV.{self._bucket}.{_CLOCK_KEY}")
        if stored.time is None:
            raise ProviderError(f"nats store: {self.display_url} returned a message without its time stamp")
        return stored.time

    async def _now(self) -> float:
        """The server's time, epoch seconds (no request unless the clock's anchor is stale)."""
        await self._bucket_kv()  # opened first: a reading times only its own two requests
        return await self._clock.now()

    async def _get(self, key: str) -> tuple[Any, int | None]:
        """(decoded value or None, revision or None)."""
        kv = await self._bucket_kv()
        async with self.errors("get"):
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:
                self._recent.pop(key, None)
                return None, None
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            self._recent.pop(key, None)
            return None, None
        self._remember(key, entry.revision, entry.value)
        return loads(entry.value), entry.revision

    def _remember(self, key: str, revision: int | None, raw: bytes) -> None:
        if revision is None or len(raw) > _RECENT_MAX_BYTES:
            self._recent.pop(key, None)
            return
        self._recent[key] = (revision, raw)
        self._recent.move_to_end(key)
        if len(self._recent) > _RECENT_ENTRIES:
            self._recent.popitem(last=False)

    async def _mutate(
        self, key: str, change: Callable[[Any], tuple[Any, R]], *, expect_absent: bool = False
    ) -> R:
        """Read-modify-write ``key`` with CAS on its revision, retrying on conflict.

        ``change(current)`` returns (new value | _KEEP | _DELETE, result); it must be pure
        because it is re-run on each retry.

        Round trips: the first attempt starts from this store's last known (revision, value)
        of the key when it has one (what it wrote or read last), or from "absent" when
        ``expect_absent`` says the caller expects a new key, so a worker that reads a job and
        then changes it, or changes the same job twice, pays one request instead of two. The
        compare-and-set makes a stale starting point harmless: it fails, and the change is
        re-run on a fresh read. A decision to write nothing made on such a guess is never
        trusted either: it is re-made on a fresh read.
        """
        kv = await self._bucket_kv()
        known = self._recent.get(key)
        guess: tuple[Any, int | None] | None = (
            (loads(known[1]), known[0]) if known is not None else (None, None) if expect_absent else None
        )
        for _ in range(_MAX_RETRIES):
            current, revision = guess if guess is not None else await self._get(key)
            guessed, guess = guess is not None, None
            new, result = change(current)
            if new is _KEEP:
                if guessed:
                    continue
                return result
            raw = b""
            try:
                async with self.errors("write"):
                    if new is _DELETE:
                        self._recent.pop(key, None)
                        if revision is not None:
                            await kv.delete(key, last=revision)
                        return result
                    raw = dumps(new).encode()
                    if revision is None:
                        written = await kv.create(key, raw)
                    else:
                        written = await kv.update(key, raw, last=revision)
                self._remember(key, written, raw)
                return result
            except ProviderError as exc:
                if _is_conflict(exc.__cause__):
                    self._recent.pop(key, None)
                    continue
                if isinstance(exc.__cause__, MaxPayloadError):
                    raise PayloadTooLargeError(
                        f"nats store: entry {key!r} would be {len(raw):,} bytes, over the NATS server's"
                        f" max_payload of {self.nc.max_payload:,} bytes (a job holds its workflow's"
                        " arguments, results and history): pass references instead of large values"
                    ) from exc
                raise
        raise ProviderError(f"nats store: too much contention on one entry of {self.display_url}")

    # ---------------------------------------------------------------- jobs
    def can_publish_to(self, stream: object, /) -> bool:
        """Never: KV write + stream publish is not one atomic JetStream operation (rule 6)."""
        return False

    @property
    def payload_limit(self) -> int | None:
        """The largest payload (argument, result, signal) accepted at the call site: an eighth of
        the server's ``max_payload``, because one job is one KV value that holds a workflow's
        arguments, each call's message and result and its own result (Connection.check_payload)."""
        if self._nc is None:
            return None
        return max(1024, int(self._nc.max_payload) // _PAYLOAD_SHARE)

    @property
    def payload_limit_reason(self) -> str:
        """Where ``payload_limit`` comes from, for the PayloadTooLargeError message."""
        server = int(self._nc.max_payload) if self._nc is not None else 0
        return (
            f"1/{_PAYLOAD_SHARE} of the NATS server's max_payload of {server:,} bytes: the NATS store keeps a"
            " workflow's arguments, results and history in one KV value, which max_payload caps"
        )

    def can_notify(self, sub: object, /) -> bool:
        """Never: the engine publishes a transition's notifications after it (rule 6c)."""
        return False

    async def create_job(self, job: NewJob, /, *, stream: Stream | None = None) -> CreateResult:
        """Create if absent or expired (Store rules 1, 8)."""
        fields = {k: _copy(v) for k, v in job.fields.items()}
        now = await self._now()
        record = {"f": fields, "s": {}, "x": _expires_at(job.expire, now)}

        def change(cur: Any) -> tuple[Any, bool]:
            if cur is not None and _live(cur.get("x"), now):
                return _KEEP, False
            return record, True

        created = await self._mutate(kv_key("j", job.job_id), change, expect_absent=True)
        return CreateResult(created=created)

    async def apply_transition(
        self, transition: Transition, /, *, stream: Stream | None = None
    ) -> TransitionResult:
        """One CAS on the job entry (Store rules 2-5, 8)."""
        t = transition
        new_values = {k: _copy(v) for k, v in t.set.items()}
        required = {k: _copy(v) for k, v in t.require.items()}
        recorded = [_msg_out(m) for m in t.messages]
        dumps(recorded, "transition.messages")
        now = await self._now()

        def change(cur: Any) -> tuple[Any, TransitionResult]:
            if cur is None or not _live(cur.get("x"), now):
                return _KEEP, TransitionResult(status=TransitionStatus.REJECTED)
            fields: dict[str, JSONValue] = cur["f"]
            if t.step in cur["s"]:
                return _KEEP, TransitionResult(
                    status=TransitionStatus.DUPLICATE,
                    fields={k: fields[k] for k in t.read if k in fields},
                    messages=tuple(_msg_in(m) for m in cur["s"][t.step]),
                )
            for name, expected in required.items():
                if expected is None:
                    if name in fields:
                        return _KEEP, TransitionResult(status=TransitionStatus.REJECTED)
                elif name not in fields or fields[name] != expected:
                    return _KEEP, TransitionResult(status=TransitionStatus.REJECTED)
            fields.update(new_values)
            for name, delta in t.increment.items():
                fields[name] = _add(fields.get(name), delta)
            for name in t.delete:
                fields.pop(name, None)
            cur["s"][t.step] = recorded
            if t.expire is not None:
                cur["x"] = _expires_at(t.expire, now)
            result = TransitionResult(
                status=TransitionStatus.APPLIED,
                fields={k: _copy(fields[k]) for k in t.read if k in fields},
                messages=t.messages,
            )
            return cur, result

        return await self._mutate(kv_key("j", t.job_id), change)

    async def get_job(
        self, job_id: str, /, fields: Sequence[str] | None = None
    ) -> dict[str, JSONValue] | None:
        """Rule 7; an expired job is absent (rule 8)."""
        cur, _ = await self._get(kv_key("j", job_id))
        if cur is None or not _live(cur.get("x"), await self._now()):
            return None
        stored: dict[str, JSONValue] = cur["f"]
        names = list(stored) if fields is None else [f for f in fields if f in stored]
        return {name: stored[name] for name in names}

    async def delete_job(self, job_id: str, /) -> bool:
        """Delete the job entry (fields and step records together)."""
        now = await self._now()
        return await self._mutate(
            kv_key("j", job_id),
            lambda cur: (_DELETE, cur is not None and _live(cur.get("x"), now)),
        )

    # ---------------------------------------------------------------- timers
    async def add_timer(self, timer: Timer, /) -> bool:
        """Rule 9: idempotent by timer id (KV create)."""
        if timer.due.tzinfo is None:
            raise ValidationError("timer due must be timezone-aware (UTC)")
        due = timer.due.astimezone(UTC)
        record = {
            "i": timer.timer_id,
            "d": due.isoformat(),
            "e": due.timestamp(),
            "m": _msg_out(timer.message),
            "l": 0.0,
            "k": "",
        }
        return await self._mutate(
            kv_key("t", timer.timer_id),
            lambda cur: (_KEEP, False) if cur is not None else (record, True),
        )

    async def _scan_timers(self) -> list[tuple[str, int, dict[str, Any]]]:
        """All timers as (key, revision, record): one throwaway consumer, O(timers)."""
        await self._bucket_kv()
        stream = f"KV_{self._bucket}"
        prefix = f"$KV.{self._bucket}."
        out: list[tuple[str, int, dict[str, Any]]] = []
        async with self.errors("scan timers"):
            info = await self.add_throwaway_consumer(
                stream,
                api.ConsumerConfig(
                    deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                    ack_policy=api.AckPolicy.NONE,
                    filter_subject=f"{prefix}t.>",
                    inactive_threshold=30.0,
                    mem_storage=True,
                    num_replicas=1,
                ),
            )
            try:
                remaining = int(info.num_pending or 0)
                while remaining > 0:
                    msgs, _ = await self.pull(
                        stream, info.name, min(remaining, _SCAN_BATCH), expires=None
                    )
                    if not msgs:
                        break
                    remaining -= len(msgs)
                    for msg in msgs:
                        op = msg.headers.get("KV-Operation") if msg.headers else None
                        if op in ("DEL", "PURGE") or not msg.data:
                            continue
                        out.append(
                            (msg.subject[len(prefix):], msg.metadata.sequence.stream,
                             loads(msg.data))  # type: ignore[arg-type]
                        )
            finally:
                try:
                    await self.js.delete_consumer(stream, info.name)
                except NotFoundError:
                    pass
        return out

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        """Rule 10: each claim is a CAS writing a fresh token and lease."""
        if limit <= 0:
            return []
        kv = await self._bucket_kv()
        now = await self._now()
        due = sorted(
            (
                (rec["e"], rec["i"], key, rev, rec)
                for key, rev, rec in await self._scan_timers()
                if rec["e"] <= now and rec["l"] <= now
            ),
            key=lambda item: (item[0], item[1]),
        )
        claimed: list[ClaimedTimer] = []
        for _, _, key, rev, rec in due:
            if len(claimed) >= limit:
                break
            token = uuid.uuid4().hex
            updated = dict(rec, l=await self._now() + lease.total_seconds(), k=token)
            try:
                async with self.errors("claim timer"):
                    await kv.update(key, dumps(updated).encode(), last=rev)
            except ProviderError as exc:
                if _is_conflict(exc.__cause__):
                    continue  # someone else claimed, completed or cancelled it
                raise
            claimed.append(ClaimedTimer(timer=_timer(rec), token=token))
        return claimed

    async def complete_timer(self, claimed: ClaimedTimer, /) -> bool:
        """Rule 10: fenced by token and unexpired lease."""
        now = await self._now()

        def change(cur: Any) -> tuple[Any, bool]:
            if cur is None or cur["k"] != claimed.token or cur["l"] <= now:
                return _KEEP, False
            return _DELETE, True

        return await self._mutate(kv_key("t", claimed.timer.timer_id), change)

    async def cancel_timer(self, timer_id: str, /) -> bool:
        """Rule 11."""
        return await self._mutate(
            kv_key("t", timer_id), lambda cur: (_DELETE, True) if cur is not None else (_KEEP, False)
        )

    async def next_timer_due(self) -> datetime | None:
        """Rule 12 (a scan: O(timers))."""
        now = await self._now()
        dues = [_timer(rec).due for _, _, rec in await self._scan_timers() if rec["l"] <= now]
        return min(dues) if dues else None

    # ---------------------------------------------------------------- signals
    async def deliver_signal(
        self, signal_id: str, data: JSONValue, /, *, delivery_id: str
    ) -> list[Waiter]:
        """Rule 13: buffer once per delivery id; return current waiters."""
        value = _copy(data)

        def change(cur: Any) -> tuple[Any, list[Waiter]]:
            state = cur or _empty_signal()
            waiters = [_waiter(w) for w in state["w"].values()]
            if delivery_id in state["seen"]:
                return _KEEP, waiters
            state["seen"].append(delivery_id)
            state["q"].append([value, delivery_id])
            return state, waiters

        return await self._mutate(kv_key("s", signal_id), change)

    async def add_waiter(self, signal_id: str, waiter: Waiter, /) -> Signal | None:
        """Rule 14."""
        record = {"j": waiter.job_id, "p": waiter.step, "m": _msg_out(waiter.message)}

        def change(cur: Any) -> tuple[Any, Signal | None]:
            state = cur or _empty_signal()
            first = state["q"][0] if state["q"] else None
            signal = None if first is None else Signal(signal_id, first[0], first[1])
            wkey = _waiter_key(waiter.job_id, waiter.step)
            if state["w"].get(wkey) == record:
                return _KEEP, signal
            state["w"][wkey] = record
            return state, signal

        return await self._mutate(kv_key("s", signal_id), change)

    async def consume_signal(self, signal_id: str, /, *, job_id: str, step: str) -> Signal | None:
        """Rule 15: one CAS takes the oldest signal and removes the waiter."""
        wkey = _waiter_key(job_id, step)

        def change(cur: Any) -> tuple[Any, Signal | None]:
            if cur is None:
                return _KEEP, None
            if wkey in cur["c"]:
                done = cur["c"][wkey]
                return _KEEP, Signal(signal_id, done[0], done[1])
            if wkey not in cur["w"] or not cur["q"]:
                return _KEEP, None
            first = cur["q"].pop(0)
            del cur["w"][wkey]
            cur["c"][wkey] = first
            return cur, Signal(signal_id, first[0], first[1])

        return await self._mutate(kv_key("s", signal_id), change)

    async def remove_waiter(self, signal_id: str, /, *, job_id: str, step: str) -> bool:
        """Rule 16."""
        wkey = _waiter_key(job_id, step)

        def change(cur: Any) -> tuple[Any, bool]:
            if cur is None or wkey not in cur["w"]:
                return _KEEP, False
            del cur["w"][wkey]
            return cur, True

        return await self._mutate(kv_key("s", signal_id), change)

    # ---------------------------------------------------------------- cache
    async def set_cached(self, key: str, value: JSONValue, /, *, ttl: timedelta | None) -> None:
        """Rule 17 (last writer wins: a plain put)."""
        data = dumps({"v": value, "x": _expires_at(ttl, await self._now())}, "value").encode()
        kv = await self._bucket_kv()
        async with self.errors("set_cached"):
            await kv.put(kv_key("c", key), data)

    async def get_cached(self, key: str, /) -> tuple[bool, JSONValue]:
        """Rule 17; an expired value is absent."""
        cur, _ = await self._get(kv_key("c", key))
        if cur is None or not _live(cur.get("x"), await self._now()):
            return (False, None)
        value: JSONValue = cur["v"]
        return (True, value)

    async def delete_cached(self, key: str, /) -> bool:
        """Rule 17."""
        now = await self._now()
        return await self._mutate(
            kv_key("c", key),
            lambda cur: (_DELETE, cur is not None and _live(cur.get("x"), now)),
        )

    async def now(self) -> datetime:
        """Rule 18: the NATS server's clock (STORE_CLOCK), see :mod:`hotmesh_nats._clock`."""
        return datetime.fromtimestamp(await self._now(), UTC)

    # ---------------------------------------------------------------- namespace
    async def purge(self) -> None:
        """Delete the namespace's KV bucket (Provider rule 4).

        A new bucket numbers its revisions from 1 again, so what this store remembers of the old
        one is dropped. Other processes still serving the namespace would keep theirs (and could
        win a compare-and-set with an old revision): purge a namespace only once every process
        using it has stopped, as the README says.
        """
        _ = self.nc
        self._recent.clear()
        async with self.errors("purge"):
            try:
                await self.js.delete_key_value(self._bucket)
            except (BucketNotFoundError, NotFoundError):
                pass
        self._kv = None

    async def is_empty(self) -> bool:
        """No bucket, or a bucket without live keys (the clock key holds no state)."""
        _ = self.nc
        async with self.errors("is_empty"):
            try:
                kv = await self.js.key_value(self._bucket)
            except (BucketNotFoundError, NotFoundError):
                return True
            try:
                keys = await kv.keys()
            except NoKeysError:
                return True
        return all(name == _CLOCK_KEY for name in keys)


def _empty_signal() -> dict[str, Any]:
    return {"q": [], "seen": [], "w": {}, "c": {}}


def _waiter(record: dict[str, Any]) -> Waiter:
    return Waiter(job_id=record["j"], step=record["p"], message=_msg_in(record["m"]))


def _timer(record: dict[str, Any]) -> Timer:
    return Timer(
        timer_id=record["i"],
        due=datetime.fromisoformat(record["d"]),
        message=_msg_in(record["m"]),
    )


def _is_conflict(exc: BaseException | None) -> bool:
    """A CAS lost the race (wrong last sequence) or a create met an existing key."""
    if isinstance(exc, KeyWrongLastSequenceError):
        return True
    text = str(exc).lower()
    return "wrong last sequence" in text or "10071" in text
