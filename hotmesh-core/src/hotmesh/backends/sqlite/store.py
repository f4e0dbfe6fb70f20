"""SqliteStore: jobs, timers, signals and cache in one SQLite file (Store rules 1-18).

Each operation is one transaction; every read-modify-write takes ``BEGIN IMMEDIATE`` so it is
atomic against other connections and processes (Store rules 1, 2, 10, 15). Expired jobs and
cache entries are treated as absent on read and deleted when a writer next meets them.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from hotmesh.backends.sqlite._db import from_us, now_us, span_us, to_us
from hotmesh.backends.sqlite._messages import (
    decode_message,
    encode_message,
    encode_messages,
    insert_messages,
    messages_from_json,
    messages_to_json,
    notify_streams,
)
from hotmesh.backends.sqlite._notify import notifier_for
from hotmesh.backends.sqlite._provider import BASE_CAPABILITIES, SqliteProvider
from hotmesh.backends.sqlite.stream import SqliteStream, ack_seqs, delete_pending
from hotmesh.backends.sqlite.sub import SqliteSub, insert_note
from hotmesh.errors import ValidationError
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

#: One in this many job creations / cache writes also sweeps expired rows of the namespace.
_SWEEP_EVERY = 64


def _add(current: JSONValue, delta: float) -> int | float:
    """Store rule 5: integers stay exact integers; a non-number counts as 0 (memory reference)."""
    base = current if isinstance(current, (int, float)) and not isinstance(current, bool) else 0
    total = base + delta
    if isinstance(base, int) and float(delta).is_integer() and not isinstance(delta, bool):
        return int(total)
    return total


def _check_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"increment of {name!r} must be a number, got {value!r}")
    return value


def _expiry(expire: timedelta | None, now: int) -> int | None:
    return None if expire is None else now + span_us(expire)


def _check_due(timer: Timer) -> int:
    if not isinstance(timer.due, datetime) or timer.due.tzinfo is None:
        raise ValidationError(f"timer {timer.timer_id!r}: due must be a timezone-aware datetime")
    return to_us(timer.due)


class SqliteStore(SqliteProvider):
    """The Store role on a SQLite file."""

    role: ClassVar[str] = "store"
    tables: ClassVar[tuple[str, ...]] = (
        "hm_jobs",
        "hm_steps",
        "hm_timers",
        "hm_signals",
        "hm_waiters",
        "hm_cache",
    )
    declared: ClassVar[frozenset[Capability]] = BASE_CAPABILITIES | {
        Capability.STORE_TTL,
        Capability.ATOMIC_STORE_AND_STREAM,
    }

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "hotmesh",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._writes = 0
        self._creates = 0

    # -- outbox (Store rule 6) ------------------------------------------------------------------

    def can_publish_to(self, stream: object, /) -> bool:
        """True for a SqliteStream on the same file and namespace: one transaction covers both."""
        return (
            isinstance(stream, SqliteStream)
            and stream.path == self._path
            and stream.namespace == self._namespace
        )

    def can_notify(self, sub: object, /) -> bool:
        """True for a SqliteSub on the same file and namespace: the note joins the transaction."""
        return isinstance(sub, SqliteSub) and sub.path == self._path and sub.namespace == self._namespace

    # -- jobs -----------------------------------------------------------------------------------

    def _live_fields(self, conn: sqlite3.Connection, job_id: str, now: int) -> str | None:
        """The job's fields JSON, or None when missing or expired (Store rules 1, 8)."""
        row = conn.execute(
            "SELECT fields, expires_us FROM hm_jobs WHERE ns = ? AND job_id = ?",
            (self._namespace, job_id),
        ).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        fields: str = row[0]
        return fields

    def _drop_job(self, conn: sqlite3.Connection, job_id: str) -> None:
        conn.execute(
            "DELETE FROM hm_jobs WHERE ns = ? AND job_id = ?", (self._namespace, job_id)
        )
        conn.execute(
            "DELETE FROM hm_steps WHERE ns = ? AND job_id = ?", (self._namespace, job_id)
        )

    def _sweep_jobs(self, conn: sqlite3.Connection, now: int) -> None:
        """Delete expired jobs and their steps (they already read as absent: Store rule 8)."""
        ns = self._namespace
        conn.execute(
            "DELETE FROM hm_steps WHERE ns = ? AND job_id IN (SELECT job_id FROM hm_jobs"
            " WHERE ns = ? AND expires_us IS NOT NULL AND expires_us <= ?)",
            (ns, ns, now),
        )
        conn.execute(
            "DELETE FROM hm_jobs WHERE ns = ? AND expires_us IS NOT NULL AND expires_us <= ?",
            (ns, now),
        )
        # Notifications the store wrote with transitions (rule 6c) age out like the sub's own.
        retention_us = int(self._options.sub_retention_s * 1_000_000)
        conn.execute("DELETE FROM hm_notes WHERE ns = ? AND created_us < ?", (ns, now - retention_us))

    async def create_job(self, job: NewJob, /, *, stream: Stream | None = None) -> CreateResult:
        """Create the job if its id is absent or expired (Store rules 1, 6, 8)."""
        if not isinstance(job.job_id, str) or not job.job_id:
            raise ValidationError("job_id must be a non-empty string")
        fields = dumps(dict(job.fields), "fields")
        rows = encode_messages(job.messages)
        outbox = stream if self.can_publish_to(stream) and rows else None
        ns = self._namespace
        self._creates += 1
        sweep = self._creates % _SWEEP_EVERY == 0

        def run(conn: sqlite3.Connection) -> bool:
            now = now_us()
            if sweep:
                self._sweep_jobs(conn, now)
            row = conn.execute(
                "SELECT expires_us FROM hm_jobs WHERE ns = ? AND job_id = ?", (ns, job.job_id)
            ).fetchone()
            if row is not None:
                if row[0] is None or row[0] > now:
                    return False
                self._drop_job(conn, job.job_id)  # expired: the id is free again (rule 8)
            conn.execute(
                "INSERT INTO hm_jobs (ns, job_id, fields, expires_us) VALUES (?, ?, ?, ?)",
                (ns, job.job_id, fields, _expiry(job.expire, now)),
            )
            if outbox is not None:
                insert_messages(conn, outbox.namespace, rows)
            return True

        created = await self._db.write(run)
        if created and outbox is not None:
            notify_streams(self._path, outbox.namespace, rows)
        return CreateResult(created=created, published=created and outbox is not None)

    async def apply_transition(
        self, transition: Transition, /, *, stream: Stream | None = None
    ) -> TransitionResult:
        """Guard, change, record the step and enqueue, all in one transaction (rules 2-6, 8)."""
        t = transition
        new_values: dict[str, Any] = loads(dumps(dict(t.set), "set"))  # type: ignore[assignment]
        require: dict[str, Any] = loads(dumps(dict(t.require), "require"))  # type: ignore[assignment]
        increments = {name: _check_number(name, delta) for name, delta in t.increment.items()}
        rows = encode_messages(t.messages)
        steps_json = messages_to_json(t.messages)
        outbox = stream if self.can_publish_to(stream) and rows else None
        ack = t.ack if t.ack is not None and self.can_publish_to(stream) else None
        ack_ns = stream.namespace if isinstance(stream, SqliteStream) else ""
        notes = [(topic, dumps(dict(payload), "notify.payload")) for topic, payload in t.notify]
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> TransitionResult:
            now = now_us()
            text = self._live_fields(conn, t.job_id, now)
            if text is None:
                return TransitionResult(status=TransitionStatus.REJECTED)  # rule 4
            fields: dict[str, Any] = loads(text)  # type: ignore[assignment]
            recorded = conn.execute(
                "SELECT messages FROM hm_steps WHERE ns = ? AND job_id = ? AND step = ?",
                (ns, t.job_id, t.step),
            ).fetchone()
            if recorded is not None:  # rule 3
                return TransitionResult(
                    status=TransitionStatus.DUPLICATE,
                    fields={k: fields[k] for k in t.read if k in fields},
                    messages=messages_from_json(recorded[0]),
                )
            for key, expected in require.items():  # rule 4
                if expected is None:
                    if key in fields:
                        return TransitionResult(status=TransitionStatus.REJECTED)
                elif key not in fields or fields[key] != expected:
                    return TransitionResult(status=TransitionStatus.REJECTED)
            fields.update(new_values)
            for key, delta in increments.items():  # rule 5
                fields[key] = _add(fields.get(key), delta)
            for key in t.delete:
                fields.pop(key, None)
            if t.expire is not None:  # rule 8
                conn.execute(
                    "UPDATE hm_jobs SET fields = ?, expires_us = ? WHERE ns = ? AND job_id = ?",
                    (dumps(fields), _expiry(t.expire, now), ns, t.job_id),
                )
            else:
                conn.execute(
                    "UPDATE hm_jobs SET fields = ? WHERE ns = ? AND job_id = ?",
                    (dumps(fields), ns, t.job_id),
                )
            conn.execute(
                "INSERT INTO hm_steps (ns, job_id, step, messages) VALUES (?, ?, ?, ?)",
                (ns, t.job_id, t.step, steps_json),
            )
            if outbox is not None:  # rule 6
                insert_messages(conn, outbox.namespace, rows)
            if ack is not None:  # rule 6b
                delete_pending(conn, ack_ns, ack.message.stream, ack.group, ack_seqs([ack.id]))
            for topic, text in notes:  # rule 6c: readers see the note once this commits
                insert_note(conn, ns, topic, text, now_us())
            return TransitionResult(
                status=TransitionStatus.APPLIED,
                fields={k: fields[k] for k in t.read if k in fields},
                messages=tuple(t.messages),
                published=outbox is not None,
                acked=ack is not None,
                notified=bool(notes),
            )

        result = await self._db.write(run)
        if result.published and outbox is not None:
            notify_streams(self._path, outbox.namespace, rows)
        if result.notified:
            notifier_for(self._path, ns, "sub").notify()
        return result

    async def get_job(
        self, job_id: str, /, fields: Sequence[str] | None = None
    ) -> dict[str, JSONValue] | None:
        """The requested fields that exist, or None for a missing/expired job (rule 7)."""

        def run(conn: sqlite3.Connection) -> str | None:
            return self._live_fields(conn, job_id, now_us())

        text = await self._db.read(run)
        if text is None:
            return None
        stored: dict[str, JSONValue] = loads(text)  # type: ignore[assignment]
        if fields is None:
            return stored
        return {name: stored[name] for name in fields if name in stored}

    async def delete_job(self, job_id: str, /) -> bool:
        """Delete a job and its step records; True if it existed (and had not expired)."""

        def run(conn: sqlite3.Connection) -> bool:
            existed = self._live_fields(conn, job_id, now_us()) is not None
            self._drop_job(conn, job_id)
            return existed

        return await self._db.write(run)

    # -- timers ---------------------------------------------------------------------------------

    async def add_timer(self, timer: Timer, /) -> bool:
        """Insert unless the id exists (rule 9)."""
        due = _check_due(timer)
        _, body, headers = encode_message(timer.message, "timer.message")
        message = dumps({"stream": timer.message.stream, "body": loads(body), "headers": loads(headers)})
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "INSERT OR IGNORE INTO hm_timers (ns, timer_id, due_us, message) VALUES"
                    " (?, ?, ?, ?)",
                    (ns, timer.timer_id, due, message),
                ).rowcount
                == 1
            )

        return await self._db.write(run)

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        """Lease due, unleased timers with a fresh token each, earliest first (rule 10)."""
        if limit <= 0:
            return []
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> list[ClaimedTimer]:
            now = now_us()
            until = now + span_us(lease)
            rows = conn.execute(
                "SELECT timer_id, due_us, message FROM hm_timers WHERE ns = ? AND due_us <= ?"
                " AND (lease_until_us IS NULL OR lease_until_us <= ?)"
                " ORDER BY due_us, timer_id LIMIT ?",
                (ns, now, now, limit),
            ).fetchall()
            claimed: list[ClaimedTimer] = []
            for timer_id, due, message in rows:
                token = uuid.uuid4().hex  # a new token fences out the previous holder
                conn.execute(
                    "UPDATE hm_timers SET lease_until_us = ?, token = ? WHERE ns = ?"
                    " AND timer_id = ?",
                    (until, token, ns, timer_id),
                )
                item: Any = loads(message)
                timer = Timer(
                    timer_id=timer_id,
                    due=from_us(due),
                    message=decode_message(item["stream"], dumps(item["body"]), dumps(item["headers"])),
                )
                claimed.append(ClaimedTimer(timer=timer, token=token))
            return claimed

        return await self._db.write(run)

    async def complete_timer(self, claimed: ClaimedTimer, /) -> bool:
        """Delete the timer only while this claim's lease holds (rule 10 fencing)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "DELETE FROM hm_timers WHERE ns = ? AND timer_id = ? AND token = ?"
                    " AND lease_until_us > ?",
                    (ns, claimed.timer.timer_id, claimed.token, now_us()),
                ).rowcount
                == 1
            )

        return await self._db.write(run)

    async def cancel_timer(self, timer_id: str, /) -> bool:
        """Delete a timer, claimed or not (rule 11)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "DELETE FROM hm_timers WHERE ns = ? AND timer_id = ?", (ns, timer_id)
                ).rowcount
                == 1
            )

        return await self._db.write(run)

    async def next_timer_due(self) -> datetime | None:
        """Earliest due time among timers not under a live lease (rule 12)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT MIN(due_us) FROM hm_timers WHERE ns = ?"
                " AND (lease_until_us IS NULL OR lease_until_us <= ?)",
                (ns, now_us()),
            ).fetchone()
            value: int | None = row[0]
            return value

        due = await self._db.read(run)
        return None if due is None else from_us(due)

    # -- signals --------------------------------------------------------------------------------

    def _waiters(self, conn: sqlite3.Connection, signal_id: str) -> list[Waiter]:
        rows = conn.execute(
            "SELECT job_id, step, message FROM hm_waiters WHERE ns = ? AND signal_id = ?"
            " ORDER BY seq",
            (self._namespace, signal_id),
        ).fetchall()
        out: list[Waiter] = []
        for job_id, step, message in rows:
            item: Any = loads(message)
            out.append(
                Waiter(
                    job_id=job_id,
                    step=step,
                    message=decode_message(item["stream"], dumps(item["body"]), dumps(item["headers"])),
                )
            )
        return out

    def _oldest_signal(self, conn: sqlite3.Connection, signal_id: str) -> Signal | None:
        row = conn.execute(
            "SELECT delivery_id, data FROM hm_signals WHERE ns = ? AND signal_id = ?"
            " AND consumer_job IS NULL ORDER BY seq LIMIT 1",
            (self._namespace, signal_id),
        ).fetchone()
        if row is None:
            return None
        return Signal(signal_id=signal_id, data=loads(row[1]), delivery_id=row[0])

    async def deliver_signal(
        self, signal_id: str, data: JSONValue, /, *, delivery_id: str
    ) -> list[Waiter]:
        """Buffer once per delivery id and return the current waiters (rule 13)."""
        text = dumps(data, "data")
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> list[Waiter]:
            conn.execute(
                "INSERT OR IGNORE INTO hm_signals (ns, signal_id, delivery_id, data) VALUES"
                " (?, ?, ?, ?)",
                (ns, signal_id, delivery_id, text),
            )
            return self._waiters(conn, signal_id)

        return await self._db.write(run)

    async def add_waiter(self, signal_id: str, waiter: Waiter, /) -> Signal | None:
        """Register (or refresh) a waiter and return the oldest buffered signal (rule 14)."""
        _, body, headers = encode_message(waiter.message, "waiter.message")
        message = dumps({"stream": waiter.message.stream, "body": loads(body), "headers": loads(headers)})
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> Signal | None:
            conn.execute(
                "INSERT INTO hm_waiters (ns, signal_id, job_id, step, message) VALUES"
                " (?, ?, ?, ?, ?) ON CONFLICT (ns, signal_id, job_id, step)"
                " DO UPDATE SET message = excluded.message",
                (ns, signal_id, waiter.job_id, waiter.step, message),
            )
            return self._oldest_signal(conn, signal_id)

        return await self._db.write(run)

    async def consume_signal(self, signal_id: str, /, *, job_id: str, step: str) -> Signal | None:
        """Take the oldest buffered signal for a registered waiter, once (rule 15)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> Signal | None:
            again = conn.execute(
                "SELECT delivery_id, data FROM hm_signals WHERE ns = ? AND signal_id = ?"
                " AND consumer_job = ? AND consumer_step = ?",
                (ns, signal_id, job_id, step),
            ).fetchone()
            if again is not None:  # a repeated consume returns the same signal
                return Signal(signal_id=signal_id, data=loads(again[1]), delivery_id=again[0])
            registered = conn.execute(
                "SELECT 1 FROM hm_waiters WHERE ns = ? AND signal_id = ? AND job_id = ?"
                " AND step = ?",
                (ns, signal_id, job_id, step),
            ).fetchone()
            if registered is None:
                return None
            signal = self._oldest_signal(conn, signal_id)
            if signal is None:
                return None
            conn.execute(
                "UPDATE hm_signals SET consumer_job = ?, consumer_step = ? WHERE ns = ?"
                " AND signal_id = ? AND delivery_id = ?",
                (job_id, step, ns, signal_id, signal.delivery_id),
            )
            conn.execute(
                "DELETE FROM hm_waiters WHERE ns = ? AND signal_id = ? AND job_id = ? AND step = ?",
                (ns, signal_id, job_id, step),
            )
            return signal

        return await self._db.write(run)

    async def remove_waiter(self, signal_id: str, /, *, job_id: str, step: str) -> bool:
        """Remove a waiter without consuming (rule 16)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "DELETE FROM hm_waiters WHERE ns = ? AND signal_id = ? AND job_id = ?"
                    " AND step = ?",
                    (ns, signal_id, job_id, step),
                ).rowcount
                == 1
            )

        return await self._db.write(run)

    # -- cache (rule 17) ------------------------------------------------------------------------

    async def set_cached(self, key: str, value: JSONValue, /, *, ttl: timedelta | None) -> None:
        """Upsert a value with an optional TTL; now and then sweep expired entries."""
        text = dumps(value, "value")
        ns = self._namespace
        self._writes += 1
        sweep = self._writes % _SWEEP_EVERY == 0

        def run(conn: sqlite3.Connection) -> None:
            now = now_us()
            if sweep:
                conn.execute(
                    "DELETE FROM hm_cache WHERE ns = ? AND expires_us IS NOT NULL"
                    " AND expires_us <= ?",
                    (ns, now),
                )
            conn.execute(
                "INSERT INTO hm_cache (ns, key, value, expires_us) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value,"
                " expires_us = excluded.expires_us",
                (ns, key, text, _expiry(ttl, now)),
            )

        await self._db.write(run)

    async def get_cached(self, key: str, /) -> tuple[bool, JSONValue]:
        """``(True, value)``, or ``(False, None)`` when absent or expired."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT value FROM hm_cache WHERE ns = ? AND key = ?"
                " AND (expires_us IS NULL OR expires_us > ?)",
                (ns, key, now_us()),
            ).fetchone()
            return None if row is None else str(row[0])

        text = await self._db.read(run)
        return (False, None) if text is None else (True, loads(text))

    async def delete_cached(self, key: str, /) -> bool:
        """Delete; True if a live (unexpired) value was there."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "DELETE FROM hm_cache WHERE ns = ? AND key = ? RETURNING expires_us", (ns, key)
            ).fetchone()
            return row is not None and (row[0] is None or row[0] > now_us())

        return await self._db.write(run)

    async def now(self) -> datetime:
        """This host's clock (rule 18; STORE_CLOCK is not declared: the file has no clock)."""
        return datetime.now(UTC)
