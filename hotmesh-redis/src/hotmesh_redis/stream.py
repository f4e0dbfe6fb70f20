"""RedisStream: Redis Streams with consumer groups (Stream rules 1-11).

Keys (``ns`` the namespace): ``hm:q:{ns:s:<stream>}`` the stream, ``...:rel:<group>`` a zset of
the group's pending ids by when each becomes deliverable again (ms: the lease a delivery, a
release or an extend set; see ``_stream_lua``) and ``...:dl:<group>`` the dead letters. One hash
tag per stream, so every script touches one slot (Redis Cluster).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

from redis.commands.core import AsyncScript

from hotmesh.errors import ProviderError, ValidationError
from hotmesh.providers import (
    Capability,
    DeadLetter,
    Delivery,
    Message,
    ReadRequest,
    check_json,
    dumps,
    loads,
)
from hotmesh_redis import _stream_lua as lua
from hotmesh_redis._base import Client, RedisProvider, make_client


def _ms(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


def _message(stream: str, fields: Mapping[str, str]) -> Message:
    body: Any = loads(fields.get("b", "{}"))
    headers: Any = loads(fields.get("h", "{}"))
    return Message(stream=stream, body=body, headers=headers)


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)}


class RedisStream(RedisProvider):
    """Stream on Redis Streams: XREADGROUP with BLOCK on a dedicated connection pool."""

    role: ClassVar[str] = "stream"
    role_letter: ClassVar[str] = "q"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scripts: dict[str, AsyncScript] = {}
        self._groups: set[tuple[str, str]] = set()  # groups this instance made sure exist
        # Per group: when this instance last scanned for stale entries, and when that scan said
        # the next one may go stale (monotonic seconds).
        self._scanned: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._blocking: Client | None = None

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Redis streams add delayed release and lease renewal (both set a pending id's score)."""
        return self.declared | {Capability.STREAM_DELAY, Capability.STREAM_EXTEND}

    @property
    def closed(self) -> bool:
        """Whether aclose() was called (or open() never was)."""
        return self._closed or self._client is None

    def stream_key(self, stream: str) -> str:
        """The Redis key of a stream (RedisStore XADDs here in its transition script)."""
        if not isinstance(stream, str) or not stream:
            raise ValidationError(f"a stream name must be a non-empty string, got {stream!r}")
        return self.tagged("s", stream)

    def _skeys(self, stream: str, group: str) -> list[str]:
        base = self.stream_key(stream)
        return [base, f"{base}:rel:{group}", f"{base}:dl:{group}"]

    def ack_keys(self, stream: str, group: str) -> list[str]:
        """The keys an ack touches (the store acks with a transition: Store rule 6b)."""
        return self._skeys(stream, group)[:2]

    async def _on_open(self, client: Client) -> None:
        for name in ("READ", "ACK", "RELEASE", "EXTEND", "DEAD_LETTER", "BACKLOG", "TRIM"):
            self._scripts[name] = client.register_script(getattr(lua, name))
        # Blocking reads get their own pool without a read timeout: a BLOCK may outlast it.
        self._blocking = make_client(self.settings, blocking=True)

    async def aclose(self) -> None:
        """Close both pools (Provider rule 5)."""
        blocking, self._blocking = self._blocking, None
        try:
            if blocking is not None:
                await blocking.aclose()
        finally:
            await super().aclose()

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        client = self.client
        with self.errors(name.lower()):
            return await self._scripts[name](keys=list(keys), args=list(args), client=client)

    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        """XADD each message, in order, in one pipeline round trip (rule 1)."""
        encoded: list[tuple[str, str, str]] = []
        for i, m in enumerate(messages):
            check_json(dict(m.body), f"messages[{i}].body")
            for k, v in m.headers.items():
                if not isinstance(v, str):
                    raise ValidationError(f"messages[{i}].headers[{k!r}] must be a string")
            encoded.append((self.stream_key(m.stream), dumps(dict(m.body)), dumps(dict(m.headers))))
        if not encoded:
            return []
        client = self.client
        with self.errors("publish"):
            pipe = client.pipeline(transaction=False)
            for key, body, head in encoded:
                pipe.xadd(key, {"b": body, "h": head})
            ids: list[str] = await pipe.execute()
        return ids

    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        """Entries whose lease ended, stale, then new ones in one script; then XREADGROUP BLOCK
        (rules 2-7)."""
        r = request
        if r.count < 1:
            raise ValidationError(f"ReadRequest.count must be >= 1, got {r.count}")
        keys = self._skeys(r.stream, r.group)
        maxd = -1 if r.max_deliveries is None else r.max_deliveries
        vis_ms = max(1, _ms(r.visibility_timeout))
        deadline = time.monotonic() + r.block.total_seconds()
        # Every read hands out entries whose lease ended (a cheap zset range). Entries without a
        # lease (see _stream_lua) are looked for at most every quarter visibility timeout (capped
        # at 1 s): that scan is most of a read's server work, and a busy reader reads far more
        # often. A read tells how long until the next lease ends, a scan how long until an entry
        # without one goes stale, so an idle reader blocks until then and reads again.
        scan_every = min(1.0, vis_ms / 4000)
        while True:
            now = time.monotonic()
            group_key = (r.stream, r.group)
            last_scan, stale_at = self._scanned.get(group_key, (-1e9, None))
            scan = now - last_scan >= scan_every or (stale_at is not None and now >= stale_at)
            ensure = group_key not in self._groups
            args = [r.group, r.consumer, r.count, vis_ms, maxd, int(ensure), int(scan)]
            try:
                out, wait, stale = await self._run("READ", keys, args)
            except ProviderError as exc:
                if ensure or "NOGROUP" not in str(exc):
                    raise
                self._groups.discard(group_key)  # the group was deleted (a purge): make it again
                continue
            self._groups.add(group_key)
            if scan:  # remember when the scan said an entry without a lease may go stale
                self._scanned[group_key] = (now, now + stale / 1000 if stale >= 0 else None)
            if stale >= 0 and (wait < 0 or stale < wait):
                wait = stale
            if out:
                return [
                    Delivery(
                        id=i, message=_message(r.stream, _pairs(f)), delivery_count=int(n),
                        group=r.group,
                    )
                    for i, f, n in out
                ]
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return []
            block_ms = remaining_ms if wait < 0 else max(1, min(remaining_ms, int(wait)))
            if maxd == 0:
                # New entries would be dead-lettered by the script; just wait for time to pass.
                await _sleep(block_ms / 1000)
                continue
            found = await self._block(keys[0], r, block_ms)
            if found:
                # No lease for these: a blocking command cannot run in a script, and one more
                # round trip on the path of every woken reader is not worth it. The idle-time
                # scan covers them (stale once idle for the reader's timeout; the router reads a
                # group with one timeout), and an ``extend`` gives them a lease.
                return found

    async def _block(self, key: str, r: ReadRequest, block_ms: int) -> list[Delivery]:
        """Wait on XREADGROUP BLOCK: woken by the server when something is published (rule 6)."""
        if self._client is None or self._blocking is None:
            raise self._closed_error()
        with self.errors("read"):
            reply = await self._blocking.xreadgroup(
                r.group, r.consumer, {key: ">"}, count=r.count, block=block_ms
            )
        deliveries: list[Delivery] = []
        for _stream, entries in _entries(reply):
            for entry_id, fields in entries:
                deliveries.append(
                    Delivery(entry_id, _message(r.stream, fields), delivery_count=1, group=r.group)
                )
        return deliveries

    def _closed_error(self) -> Exception:
        return ProviderError(f"redis stream provider for {self.settings.redacted} is closed")

    async def ack(self, stream: str, group: str, ids: Sequence[str], /) -> int:
        """XACK (rule 3); acking twice returns 0 the second time."""
        if not ids:
            return 0
        keys = self._skeys(stream, group)[:2]
        return int(await self._run("ACK", keys, [group, *ids]))

    async def release(
        self, stream: str, group: str, ids: Sequence[str], /, *, delay: timedelta = timedelta(0)
    ) -> int:
        """Mark pending deliveries ready now or after ``delay`` (rule 9)."""
        if delay < timedelta(0):
            raise ValidationError(f"release delay must not be negative, got {delay}")
        if not ids:
            return 0
        keys = self._skeys(stream, group)[:2]
        return int(await self._run("RELEASE", keys, [group, _ms(delay), *ids]))

    async def extend(self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta) -> int:
        """Renew the leases of deliveries still pending with the same delivery count (rule 11).

        One script per stream and group the deliveries come from (a script touches one hash
        tag), so a router renewing what it read from its stream makes one round trip; an empty
        list makes none. The count is the fence: a lease lost to a redelivery stays lost.
        """
        by_key: dict[tuple[str, str], list[str | int]] = {}
        for d in deliveries:
            by_key.setdefault((d.message.stream, d.group), []).extend((d.id, d.delivery_count))
        vis_ms = _ms(visibility_timeout)
        renewed = 0
        for (stream, group), pairs in by_key.items():
            keys = self._skeys(stream, group)[:2]
            renewed += int(await self._run("EXTEND", keys, [group, vis_ms, *pairs]))
        return renewed

    async def dead_letter(self, delivery: Delivery, error: str, /) -> None:
        """Move a pending delivery to the group's dead letters and ack it (rule 8)."""
        keys = self._skeys(delivery.message.stream, delivery.group)
        await self._run("DEAD_LETTER", keys, [delivery.group, delivery.id, str(error)])

    async def dead_letters(self, stream: str, group: str, /, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters of a group, oldest first (rule 8)."""
        key = self._skeys(stream, group)[2]
        with self.errors("dead_letters"):
            entries: Any = await self.client.xrange(key, count=max(1, limit))
        return [
            DeadLetter(
                id=f["id"],
                message=_message(stream, f),
                delivery_count=int(f.get("n", "0")),
                group=group,
                error=f.get("e", ""),
            )
            for _dl_id, f in entries
        ]

    async def length(self, stream: str, /) -> int:
        """XLEN (rule 10)."""
        with self.errors("length"):
            return int(await self.client.xlen(self.stream_key(stream)))

    async def backlog(self, stream: str, group: str, /) -> int:
        """Pending plus undelivered entries of the group (rule 10)."""
        return int(await self._run("BACKLOG", self._skeys(stream, group)[:1], [group]))

    async def trim(self, stream: str, /, *, max_length: int) -> int:
        """XTRIM MINID below the oldest entry some group has not acked (rule 10)."""
        if max_length < 0:
            raise ValidationError(f"max_length must be >= 0, got {max_length}")
        return int(await self._run("TRIM", self._skeys(stream, "")[:1], [max_length]))


def _entries(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """Normalise XREADGROUP replies (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(s, e) for s, e in reply]


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)
