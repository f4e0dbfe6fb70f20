"""PostgresStore: job rows with JSONB fields; each operation one plpgsql call (one round trip)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from psycopg import sql

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
)
from hotmesh_postgres._base import PostgresProvider
from hotmesh_postgres._stream import PostgresStream, decode_message, message_ids, message_list
from hotmesh_postgres._sub import MAX_INLINE_BYTES, PostgresSub

SWEEP_MAX_BATCHES = 100
"""Batches per sweep round at most (a backlog of 50,000 rows per round with the defaults)."""
SWEEP_PAUSE = 0.05
VACUUM_EVERY_SWEEPS = 1
"""Sweeps between two VACUUMs of the namespace when the server runs without autovacuum."""
"""Seconds between two batches of one round."""


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _expire_seconds(expire: timedelta | None) -> float | None:
    if expire is None:
        return None
    if not isinstance(expire, timedelta) or expire <= timedelta(0):
        raise ValidationError("expire must be a positive timedelta")
    return expire.total_seconds()


def _message_json(message: Message) -> str:
    return dumps(
        {"stream": message.stream, "body": dict(message.body), "headers": dict(message.headers)},
        "message",
    )


def _decode_messages(raw: Any) -> tuple[Message, ...]:
    return tuple(
        decode_message(m["stream"], m.get("body"), m.get("headers")) for m in (raw or [])
    )


class PostgresStore(PostgresProvider):
    """Durable job state on PostgreSQL (Store rules 1-18)."""

    role: ClassVar[str] = "store"
    declared: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.STORE_TTL,
            Capability.STORE_CLOCK,
            Capability.ATOMIC_STORE_AND_STREAM,
            Capability.MULTI_PROCESS,
            Capability.DURABLE,
        }
    )

    def __init__(self, url: str, *, namespace: str = "hotmesh", options: Any = None) -> None:
        super().__init__(url, namespace=namespace, options=options)
        q = self.names.qualified
        self._q_create = sql.SQL("SELECT {}(%s::jsonb, %s)").format(q("store_create"))
        self._q_apply = sql.SQL("SELECT {}(%s::jsonb, %s)").format(q("store_apply"))
        # Store rules 6b and 6c: the transition, the ack of the delivery it completes and its
        # notifications in one statement (one transaction, one round trip). The DELETE and the
        # NOTIFYs depend on the function's result, so they run after it and only when the
        # transition was applied; NOTIFY is delivered at commit. A NULL ack deletes nothing.
        self._q_apply_more = sql.SQL(
            "WITH r AS MATERIALIZED (SELECT {f}(%s::jsonb, %s) AS res),"
            " a AS (DELETE FROM {d} WHERE stream = %s AND grp = %s AND msg_id = %s"
            " AND delivery_count > 0 AND (SELECT res->>'status' FROM r) = 'applied' RETURNING 1),"
            " n AS (SELECT pg_notify(%s, x) FROM unnest(%s::text[]) AS x"
            " WHERE (SELECT res->>'status' FROM r) = 'applied')"
            " SELECT res, (SELECT count(*) FROM a), (SELECT count(*) FROM n) FROM r"
        ).format(f=q("store_apply"), d=q("deliveries"))
        self._q_consume = sql.SQL("SELECT {}(%s, %s, %s)").format(q("store_consume_signal"))
        self._sweeper: asyncio.Task[None] | None = None

    # -- background sweep (bounded, no long locks) ----------------------------------------------
    async def _after_open(self) -> None:
        if self.options.sweep_interval > 0:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_loop(), name="hotmesh-pg-sweep"
            )

    async def _before_close(self) -> None:
        task, self._sweeper = self._sweeper, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _sweep_loop(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.options.sweep_interval)
            rounds += 1
            with contextlib.suppress(Exception):
                await self.sweep_backlog()
            if rounds % VACUUM_EVERY_SWEEPS == 0:
                with contextlib.suppress(Exception):
                    await self.vacuum_if_autovacuum_is_off()

    async def vacuum_if_autovacuum_is_off(self, *, force: bool = False) -> bool:
        """VACUUM (ANALYZE) the namespace's tables when the server's autovacuum is off.

        Every step leaves dead row versions behind (transitions update ``jobs``, acks delete
        ``deliveries``); without autovacuum nothing reclaims them and the tables grow for ever
        (measured: ~20 MiB a minute under load, flat with a VACUUM a minute). One process at a
        time does it (a session advisory lock); True if this call vacuumed.
        """
        schema = self.names.schema
        lock = self.names.lock_prefix + "vacuum"

        async def work(conn: Any) -> bool:
            cur = await conn.execute("SELECT current_setting('autovacuum')")
            row = await cur.fetchone()
            if row is not None and row[0] == "on" and not force:
                return False
            cur = await conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (lock,))
            got = await cur.fetchone()
            if got is None or not got[0]:
                return False
            try:
                cur = await conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
                )
                tables = [sql.Identifier(schema, r[0]) for r in await cur.fetchall()]
                if tables:
                    await conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.SQL(", ").join(tables)))
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lock,))
            return True

        return await self._run(work, retry=False)

    async def sweep_backlog(self, *, max_batches: int = SWEEP_MAX_BATCHES) -> int:
        """Sweep in batches while they come back full (a backlog), at most ``max_batches``.

        Each batch is one short transaction of at most ``sweep_limit`` rows per table; a short
        pause between batches lets other work through. Returns the rows deleted.
        """
        total = 0
        for _ in range(max_batches):
            jobs, cache = await self._sweep_batch()
            total += jobs + cache
            if jobs < self.options.sweep_limit and cache < self.options.sweep_limit:
                break
            await asyncio.sleep(SWEEP_PAUSE)
        return total

    async def sweep(self) -> int:
        """Delete at most ``sweep_limit`` expired jobs (with their steps) and cache rows.

        SKIP LOCKED keeps it off rows that transitions hold, and the limit bounds each
        statement, so a sweep never holds long locks; expired rows are invisible anyway.
        """
        jobs, cache = await self._sweep_batch()
        return jobs + cache

    async def _sweep_batch(self) -> tuple[int, int]:
        q = self.names.qualified
        query = sql.SQL(
            "WITH j AS (DELETE FROM {jobs} WHERE job_id IN (SELECT job_id FROM {jobs}"
            " WHERE expires_at <= clock_timestamp() LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING job_id),"
            " s AS (DELETE FROM {steps} st USING j WHERE st.job_id = j.job_id RETURNING 1),"
            " g AS (DELETE FROM {signals} sg USING j WHERE sg.consumed_job = j.job_id RETURNING 1),"
            " w AS (DELETE FROM {waiters} wt USING j WHERE wt.job_id = j.job_id RETURNING 1),"
            " c AS (DELETE FROM {cache} WHERE key IN (SELECT key FROM {cache}"
            " WHERE expires_at <= clock_timestamp() LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING 1)"
            " SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM c),"
            " (SELECT count(*) FROM s) + (SELECT count(*) FROM g) + (SELECT count(*) FROM w)"
        ).format(
            jobs=q("jobs"), steps=q("steps"), signals=q("signals"), waiters=q("waiters"),
            cache=q("cache"),
        )
        limit = self.options.sweep_limit
        row = await self._fetchone(query, (limit, limit))
        return int(row[0]), int(row[1])

    # -- jobs ------------------------------------------------------------------------------------
    def can_publish_to(self, stream: object, /) -> bool:
        """True for a PostgresStream on the same database and namespace (Store rule 6)."""
        return isinstance(stream, PostgresStream) and stream.database_key == self.database_key

    def can_notify(self, sub: object, /) -> bool:
        """True for a PostgresSub on the same database and namespace: the transition's statement
        NOTIFYs, delivered at its commit (Store rule 6c)."""
        return isinstance(sub, PostgresSub) and sub.database_key == self.database_key

    def _publish_flag(self, stream: Stream | None) -> bool:
        return stream is not None and self.can_publish_to(stream)

    async def create_job(self, job: NewJob, /, *, stream: Stream | None = None) -> CreateResult:
        """Create the job if absent; emit its messages only then (Store rules 1, 6, 8)."""
        if not isinstance(job.job_id, str) or not job.job_id:
            raise ValidationError("job_id must be a non-empty string")
        args = dumps(
            {
                "job_id": job.job_id,
                "fields": dict(job.fields),
                "expire": _expire_seconds(job.expire),
                "messages": message_list(job.messages),
            },
            "job",
        )
        pub = self._publish_flag(stream) and bool(job.messages)
        payload = args
        row = await self._fetchone(self._q_create, (payload, pub), retry=False)
        created = bool(row[0])
        return CreateResult(created=created, published=created and pub)

    async def apply_transition(
        self, transition: Transition, /, *, stream: Stream | None = None
    ) -> TransitionResult:
        """Apply one transition in one round trip (Store rules 2-6, 8)."""
        t = transition
        if not isinstance(t.job_id, str) or not t.job_id:
            raise ValidationError("job_id must be a non-empty string")
        if not isinstance(t.step, str) or not t.step:
            raise ValidationError("step must be a non-empty string")
        for name, amount in t.increment.items():
            if isinstance(amount, bool) or not isinstance(amount, (int, float)) or (
                isinstance(amount, float) and not math.isfinite(amount)
            ):
                raise ValidationError(f"increment[{name!r}] must be a finite number")
        args: dict[str, JSONValue] = {
            "job_id": t.job_id,
            "step": t.step,
            "set": dict(t.set),
            "increment": dict(t.increment),
            "delete": list(t.delete),
            "require": dict(t.require),
            "read": list(t.read),
            "expire": _expire_seconds(t.expire),
            "messages": message_list(t.messages),
        }
        payload = dumps(args, "transition")
        pub = self._publish_flag(stream) and bool(t.messages)
        ack = t.ack if t.ack is not None and self._publish_flag(stream) else None
        ack_id = message_ids([ack.id]) if ack is not None else []
        notes = [dumps({"t": topic, "p": dict(payload)}, "notify.payload") for topic, payload in t.notify]
        if any(len(n.encode()) > MAX_INLINE_BYTES for n in notes):
            notes = []  # too large for a NOTIFY: the engine publishes them (by reference)
        if ack_id or notes:
            row = await self._fetchone(
                self._q_apply_more,
                (
                    payload,
                    pub,
                    ack.message.stream if ack is not None else None,
                    ack.group if ack is not None else None,
                    ack_id[0] if ack_id else None,
                    self.names.sub_channel,
                    notes,
                ),
            )
        else:
            row = await self._fetchone(self._q_apply, (payload, pub))
        result = row[0]
        applied = result["status"] == "applied"
        status = TransitionStatus(result["status"])
        if status is TransitionStatus.REJECTED:
            return TransitionResult(status=status)
        fields: dict[str, JSONValue] = dict(result.get("fields") or {})
        if status is TransitionStatus.APPLIED:
            return TransitionResult(
                status=status,
                fields=fields,
                messages=tuple(t.messages),
                published=bool(result.get("published")),
                acked=bool(ack_id) and applied,
                notified=bool(notes) and applied,
            )
        return TransitionResult(
            status=status,
            fields=fields,
            messages=_decode_messages(result.get("messages")),
            published=bool(result.get("published")),
        )

    async def get_job(
        self, job_id: str, /, fields: Sequence[str] | None = None
    ) -> dict[str, JSONValue] | None:
        """Requested fields, or None when absent or expired (Store rule 7)."""
        q = self.names.qualified("jobs")
        if fields is None:
            query = sql.SQL(
                "SELECT fields FROM {} WHERE job_id = %s"
                " AND (expires_at IS NULL OR expires_at > clock_timestamp())"
            ).format(q)
            rows = await self._fetchall(query, (job_id,))
        else:
            query = sql.SQL(
                "SELECT coalesce((SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(fields) e"
                " WHERE e.key = ANY(%s)), '{{}}'::jsonb) FROM {} WHERE job_id = %s"
                " AND (expires_at IS NULL OR expires_at > clock_timestamp())"
            ).format(q)
            rows = await self._fetchall(query, (list(fields), job_id))
        if not rows:
            return None
        return dict(rows[0][0])

    async def delete_job(self, job_id: str, /) -> bool:
        """Delete a job and its step records; True if it existed (and had not expired)."""
        q = self.names.qualified
        query = sql.SQL(
            "WITH j AS (DELETE FROM {jobs} WHERE job_id = %s RETURNING expires_at),"
            " s AS (DELETE FROM {steps} WHERE job_id = %s RETURNING 1),"
            " g AS (DELETE FROM {signals} WHERE consumed_job = %s RETURNING 1),"
            " w AS (DELETE FROM {waiters} WHERE job_id = %s RETURNING 1)"
            " SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > clock_timestamp()),"
            " (SELECT count(*) FROM s) + (SELECT count(*) FROM g) + (SELECT count(*) FROM w) FROM j"
        ).format(jobs=q("jobs"), steps=q("steps"), signals=q("signals"), waiters=q("waiters"))
        row = await self._fetchone(query, (job_id, job_id, job_id, job_id))
        return bool(row[0])

    # -- timers (Store rules 9-12) ----------------------------------------------------------------
    async def add_timer(self, timer: Timer, /) -> bool:
        """Schedule a timer; False if the id exists (rule 9)."""
        if timer.due.tzinfo is None:
            raise ValidationError("timer.due must be timezone-aware")
        rows = await self._fetchall(
            sql.SQL(
                "INSERT INTO {} (timer_id, due_at, message) VALUES (%s, %s, %s::jsonb)"
                " ON CONFLICT (timer_id) DO NOTHING RETURNING 1"
            ).format(self.names.qualified("timers")),
            (timer.timer_id, timer.due, _message_json(timer.message)),
            retry=False,
        )
        return bool(rows)

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        """Claim due timers by the server clock, earliest first (rule 10)."""
        if limit < 1:
            return []
        q = self.names.qualified("timers")
        query = sql.SQL(
            "UPDATE {t} SET token = gen_random_uuid()::text,"
            " lease_until = clock_timestamp() + make_interval(secs => %s)"
            " WHERE timer_id IN (SELECT timer_id FROM {t} WHERE due_at <= clock_timestamp()"
            " AND (lease_until IS NULL OR lease_until <= clock_timestamp())"
            " ORDER BY due_at, timer_id LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING timer_id, due_at, message, token"
        ).format(t=q)
        rows = await self._fetchall(query, (lease.total_seconds(), limit), retry=False)
        rows.sort(key=lambda r: (r[1], r[0]))
        return [
            ClaimedTimer(
                timer=Timer(
                    timer_id=r[0],
                    due=_utc(r[1]),
                    message=decode_message(r[2]["stream"], r[2].get("body"), r[2].get("headers")),
                ),
                token=r[3],
            )
            for r in rows
        ]

    async def complete_timer(self, claimed: ClaimedTimer, /) -> bool:
        """Delete a fired timer if this claim's token still holds (rule 10, fencing)."""
        count = await self._execute(
            sql.SQL("DELETE FROM {} WHERE timer_id = %s AND token = %s").format(
                self.names.qualified("timers")
            ),
            (claimed.timer.timer_id, claimed.token),
        )
        return count > 0

    async def cancel_timer(self, timer_id: str, /) -> bool:
        """Delete a timer, claimed or not (rule 11)."""
        count = await self._execute(
            sql.SQL("DELETE FROM {} WHERE timer_id = %s").format(self.names.qualified("timers")),
            (timer_id,),
        )
        return count > 0

    async def next_timer_due(self) -> datetime | None:
        """Earliest due time among claimable timers (rule 12)."""
        row = await self._fetchone(
            sql.SQL(
                "SELECT min(due_at) FROM {} WHERE lease_until IS NULL"
                " OR lease_until <= clock_timestamp()"
            ).format(self.names.qualified("timers"))
        )
        return None if row[0] is None else _utc(row[0])

    # -- signals (Store rules 13-16) ----------------------------------------------------------------
    async def deliver_signal(
        self, signal_id: str, data: JSONValue, /, *, delivery_id: str
    ) -> list[Waiter]:
        """Buffer the signal (idempotent by delivery id); return current waiters (rule 13)."""
        check_json(data, "data")
        rows = await self._fetchall(
            sql.SQL("SELECT * FROM {}(%s, %s, %s::jsonb)").format(self.names.qualified("store_deliver_signal")),
            (signal_id, delivery_id, dumps(data, "data")),
        )
        return [
            Waiter(
                job_id=r[0],
                step=r[1],
                message=decode_message(r[2]["stream"], r[2].get("body"), r[2].get("headers")),
            )
            for r in rows
        ]

    async def add_waiter(self, signal_id: str, waiter: Waiter, /) -> Signal | None:
        """Register a waiter; return the oldest buffered signal, if any (rule 14)."""
        row = await self._fetchone(
            sql.SQL("SELECT {}(%s, %s, %s, %s::jsonb)").format(self.names.qualified("store_add_waiter")),
            (signal_id, waiter.job_id, waiter.step, _message_json(waiter.message)),
        )
        if row[0] is None:
            return None
        return Signal(signal_id=signal_id, data=row[0]["data"], delivery_id=row[0]["delivery_id"])

    async def consume_signal(self, signal_id: str, /, *, job_id: str, step: str) -> Signal | None:
        """Take the oldest buffered signal for this waiter, exactly once (rule 15)."""
        row = await self._fetchone(self._q_consume, (signal_id, job_id, step))
        if row[0] is None:
            return None
        return Signal(signal_id=signal_id, data=row[0]["data"], delivery_id=row[0]["delivery_id"])

    async def remove_waiter(self, signal_id: str, /, *, job_id: str, step: str) -> bool:
        """Remove a waiter without consuming (rule 16)."""
        count = await self._execute(
            sql.SQL("DELETE FROM {} WHERE signal_id = %s AND job_id = %s AND step = %s").format(
                self.names.qualified("waiters")
            ),
            (signal_id, job_id, step),
        )
        return count > 0

    # -- cache (Store rule 17) ----------------------------------------------------------------------
    async def set_cached(self, key: str, value: JSONValue, /, *, ttl: timedelta | None) -> None:
        """Cache a JSON value for ``ttl`` (None: forever)."""
        seconds = _expire_seconds(ttl)
        encoded = dumps(value, "value")
        await self._execute(
            sql.SQL(
                "INSERT INTO {} (key, value, expires_at) VALUES (%s, %s::jsonb,"
                " clock_timestamp() + make_interval(secs => %s))"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value,"
                " expires_at = EXCLUDED.expires_at"
            ).format(self.names.qualified("cache")),
            (key, encoded, seconds),
        )

    async def get_cached(self, key: str, /) -> tuple[bool, JSONValue]:
        """``(True, value)`` or ``(False, None)`` when absent or expired."""
        rows = await self._fetchall(
            sql.SQL(
                "SELECT value FROM {} WHERE key = %s"
                " AND (expires_at IS NULL OR expires_at > clock_timestamp())"
            ).format(self.names.qualified("cache")),
            (key,),
        )
        if not rows:
            return (False, None)
        value: JSONValue = rows[0][0]
        return (True, value)

    async def delete_cached(self, key: str, /) -> bool:
        """Drop a cached value; True if a live one existed."""
        rows = await self._fetchall(
            sql.SQL(
                "WITH d AS (DELETE FROM {} WHERE key = %s RETURNING expires_at)"
                " SELECT count(*) FILTER (WHERE expires_at IS NULL"
                " OR expires_at > clock_timestamp()) FROM d"
            ).format(self.names.qualified("cache")),
            (key,),
        )
        return bool(rows and rows[0][0])

    # -- clock (Store rule 18) ------------------------------------------------------------------------
    async def now(self) -> datetime:
        """The server's clock, UTC (STORE_CLOCK)."""
        row = await self._fetchone("SELECT clock_timestamp()")
        value: datetime = row[0]
        return _utc(value)
