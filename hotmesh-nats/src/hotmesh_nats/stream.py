"""NatsStream: HotMesh work queues on JetStream durable pull consumers.

Layout (one JetStream stream per namespace, ``hotmesh_<ns>``):

* messages of HotMesh stream ``S``: subject ``hm.<ns>.s.<S>``; the message id is the JetStream
  stream sequence, stable across redeliveries;
* dead letters of (``S``, group ``G``): subject ``hm.<ns>.d.<S>.<G>`` in the same stream;
* group ``G`` of ``S``: a durable pull consumer filtered on ``hm.<ns>.s.<S>``, deliver-all
  (Stream rule 2), explicit ack (rule 3), ``ack_wait`` = visibility timeout (rule 4).

Visibility timeout: JetStream's ``ack_wait`` belongs to the consumer, not to a read. A read with a
different ``visibility_timeout`` than the consumer has updates the consumer's ``ack_wait`` (last
reader wins; it then applies to every pending delivery of the group). Engines use one value per
group, so in practice the update happens once.

Dead letters (rule 7) are decided client-side from the delivery count JetStream puts in each
message's metadata, so ``max_deliveries`` may differ per read like the contract says; the
consumer's own ``max_deliver`` is unlimited (a server-side limit would strand messages).

Leases (rule 11, STREAM_EXTEND): ``extend`` sends JetStream's in-progress ack (``+WPI``), which
restarts the delivery's ``ack_wait``. The server does not check which delivery a ``+WPI`` names,
so the fence (same ``delivery_count``) is kept by this process over the deliveries it handed out.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import OrderedDict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import api
from nats.js.errors import NotFoundError

from hotmesh.errors import CapabilityNotSupportedError, ValidationError
from hotmesh.providers import (
    Capability,
    DeadLetter,
    Delivery,
    JSONValue,
    Message,
    ReadRequest,
    dumps,
)
from hotmesh_nats._base import NatsProvider
from hotmesh_nats._names import durable, token

_ACKED_MEMORY = 10_000


class NatsStream(NatsProvider):
    """Stream provider on NATS JetStream."""

    role = "stream"
    declared = frozenset(
        {
            Capability.STREAM_DELAY,
            Capability.STREAM_EXTEND,
            Capability.MULTI_PROCESS,
            Capability.DURABLE,
        }
    )

    def __init__(self, url: str, *, namespace: str, options: Any) -> None:
        super().__init__(url, namespace=namespace, options=options)
        self._stream_name = f"hotmesh_{self.namespace}"
        self._stream_ready = False
        self._consumers: dict[tuple[str, str], float] = {}
        # Reply subjects of deliveries this instance handed out and not yet settled, so that
        # ack/release by id reach the exact delivery (Stream rule 3).
        self._pending: dict[tuple[str, str], dict[int, str]] = {}
        self._acked: OrderedDict[tuple[str, str, int], None] = OrderedDict()

    # ---------------------------------------------------------------- names
    def _subject(self, stream: str) -> str:
        return f"hm.{self.namespace}.s.{token(stream)}"

    def _dlq_subject(self, stream: str, group: str) -> str:
        return f"hm.{self.namespace}.d.{token(stream)}.{token(group)}"

    # ---------------------------------------------------------------- setup
    async def _ensure_stream(self) -> None:
        if self._stream_ready:
            return
        opts = self._settings.options
        config = api.StreamConfig(
            name=self._stream_name,
            subjects=[f"hm.{self.namespace}.s.>", f"hm.{self.namespace}.d.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE if opts.storage == "file" else api.StorageType.MEMORY,
            num_replicas=opts.replicas,
            discard=api.DiscardPolicy.OLD,
        )
        async with self.errors("create stream"):
            try:
                await self.js.stream_info(self._stream_name)
            except NotFoundError:
                await self.js.add_stream(config)
        self._stream_ready = True

    async def _ensure_consumer(self, stream: str, group: str, ack_wait: float) -> str:
        name = durable(stream, group)
        if self._consumers.get((stream, group)) == ack_wait:
            return name
        await self._ensure_stream()
        config = api.ConsumerConfig(
            durable_name=name,
            description=f"hotmesh group {group!r} of stream {stream!r}",
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=ack_wait,
            max_deliver=-1,
            filter_subject=self._subject(stream),
            max_ack_pending=self._settings.options.max_ack_pending,
            replay_policy=api.ReplayPolicy.INSTANT,
        )
        async with self.errors("create consumer"):
            try:
                info = await self.js.consumer_info(self._stream_name, name)
                if info.config.ack_wait is None or not math.isclose(info.config.ack_wait, ack_wait):
                    await self.js.add_consumer(self._stream_name, config)
            except NotFoundError:
                await self.js.add_consumer(self._stream_name, config)
        self._consumers[(stream, group)] = ack_wait
        return name

    def _forget(self) -> None:
        self._stream_ready = False
        self._consumers.clear()

    # ---------------------------------------------------------------- publish
    async def publish(self, messages: Sequence[Message], /) -> list[str]:
        """Append messages; returns JetStream sequences as ids (Stream rules 1, 5)."""
        # Encode everything first: bad input never half-writes.
        encoded = [
            (self._subject(m.stream), _encode(m).encode()) for m in messages
        ]
        if not encoded:
            return []
        _ = self.nc
        await self._ensure_stream()
        for attempt in (1, 2):
            try:
                async with self.errors("publish"):
                    # Requests are written to the socket in order, so JetStream stores them in
                    # publish order (rule 5) while the acks are awaited together (one round trip).
                    acks = await asyncio.gather(
                        *(self.js.publish(subject, payload) for subject, payload in encoded)
                    )
                return [str(ack.seq) for ack in acks]
            except Exception as exc:
                # The stream was purged by someone else: recreate it once.
                if attempt == 2 or "no response" not in str(exc).lower():
                    raise
                self._forget()
                await self._ensure_stream()
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- read
    async def read(self, request: ReadRequest, /) -> list[Delivery]:
        """Deliver ready and stale messages (Stream rules 2-7)."""
        if request.count < 1:
            raise ValidationError(f"read count must be >= 1, got {request.count}")
        _ = self.nc
        ack_wait = max(request.visibility_timeout.total_seconds(), 0.001)
        consumer = await self._ensure_consumer(request.stream, request.group, ack_wait)
        block = request.block.total_seconds()
        out: list[Delivery] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + block
        while len(out) < request.count:
            want = request.count - len(out)
            msgs = await self._pull(consumer, want, expires=None)
            if not msgs:
                remaining = deadline - loop.time()
                if out or remaining <= 0.001:
                    break
                # Block for the first message only (batch 1), so no request stays open at the
                # server after we return (rule 6: woken by the server, not by polling).
                msgs = await self._pull(consumer, 1, expires=remaining)
                if not msgs:
                    break
            for msg in msgs:
                delivery = await self._admit(request, msg)
                if delivery is not None:
                    out.append(delivery)
        return out

    async def _pull(self, consumer: str, batch: int, *, expires: float | None) -> list[Msg]:
        msgs, status = await self.pull(self._stream_name, consumer, batch, expires=expires)
        if status == "409":
            self._forget()  # consumer deleted under us (purge by another process)
        return msgs

    async def _admit(self, request: ReadRequest, msg: Msg) -> Delivery | None:
        meta = msg.metadata
        seq = meta.sequence.stream
        count = meta.num_delivered
        message = _decode(request.stream, msg.data)
        key = (request.stream, request.group)
        self._pending.setdefault(key, {})[seq] = msg.reply
        self._acked.pop((request.stream, request.group, seq), None)
        if request.max_deliveries is not None and count > request.max_deliveries:
            # Stream rule 7: this delivery would exceed the limit: dead-letter it instead.
            await self._dead_letter(
                request.stream, request.group, str(seq), message, count - 1,
                "max deliveries exceeded",
            )
            return None
        return Delivery(id=str(seq), message=message, delivery_count=count, group=request.group)

    # ---------------------------------------------------------------- settle
    async def _settle(
        self, stream: str, group: str, ids: Sequence[str], payload: bytes, *, forget: bool
    ) -> int:
        """Send ``payload`` (+ACK / -NAK) to each pending delivery; count those pending."""
        _ = self.nc
        pending = self._pending.setdefault((stream, group), {})
        known: list[tuple[int, str]] = []
        unknown: list[int] = []
        for raw in ids:
            seq = _seq(raw)
            if (stream, group, seq) in self._acked:
                continue
            reply = pending.get(seq)
            if reply is None:
                unknown.append(seq)
            else:
                known.append((seq, reply))
        count = 0
        async with self.errors("ack"):
            if known:
                await asyncio.gather(*(self._send(reply, payload) for _, reply in known))
                count += len(known)
                for seq, _ in known:
                    pending.pop(seq, None)
                    if forget:
                        self._remember_acked(stream, group, seq)
            if unknown:
                count += await self._settle_unknown(stream, group, unknown, payload, forget)
        return count

    async def _settle_unknown(
        self, stream: str, group: str, seqs: list[int], payload: bytes, forget: bool
    ) -> int:
        """Settle deliveries handed out by another process: build their ack subjects."""
        name = durable(stream, group)
        try:
            before = await self.js.consumer_info(self._stream_name, name)
        except NotFoundError:
            return 0
        floor = before.ack_floor.stream_seq if before.ack_floor else 0
        dseq = before.delivered.consumer_seq if before.delivered else 0
        live = [s for s in seqs if s > floor]
        if not live:
            return 0
        await asyncio.gather(
            *(
                self._send(f"$JS.ACK.{self._stream_name}.{name}.1.{s}.{dseq}.0.0", payload)
                for s in live
            )
        )
        after = await self.js.consumer_info(self._stream_name, name)
        if forget:
            for s in live:
                self._remember_acked(stream, group, s)
        if not forget:
            return len(live)
        settled = (before.num_ack_pending or 0) - (after.num_ack_pending or 0)
        return max(0, min(len(live), settled))

    async def _send(self, reply: str, payload: bytes) -> None:
        # A request: the server answers once it processed the ack, so later reads see it.
        await self.nc.request(reply, payload, timeout=self._settings.options.request_timeout)

    def _remember_acked(self, stream: str, group: str, seq: int) -> None:
        self._acked[(stream, group, seq)] = None
        while len(self._acked) > _ACKED_MEMORY:
            self._acked.popitem(last=False)

    async def ack(self, stream: str, group: str, ids: Sequence[str], /) -> int:
        """Acknowledge for good; acking twice returns 0 the second time (Stream rule 3)."""
        return await self._settle(stream, group, ids, b"+ACK", forget=True)

    async def release(
        self, stream: str, group: str, ids: Sequence[str], /, *, delay: timedelta = timedelta(0)
    ) -> int:
        """NAK, optionally with a delay (Stream rule 9, STREAM_DELAY)."""
        if delay < timedelta(0):
            raise ValidationError("release delay must not be negative")
        if delay > timedelta(0) and Capability.STREAM_DELAY not in self.capabilities:
            raise CapabilityNotSupportedError("nats stream", Capability.STREAM_DELAY)
        payload = b"-NAK"
        if delay > timedelta(0):
            payload = b"-NAK " + json.dumps({"delay": int(delay.total_seconds() * 1e9)}).encode()
        return await self._settle(stream, group, ids, payload, forget=False)

    async def extend(
        self, deliveries: Sequence[Delivery], /, *, visibility_timeout: timedelta
    ) -> int:
        """Renew leases with in-progress acks (``+WPI``), fenced by delivery count (rule 11).

        Only deliveries this instance handed out and still holds *as that delivery* are renewed:
        the ack subject kept for the id must carry the same delivery count. One acked or
        dead-lettered is gone from ``_pending``; one redelivered since (read here again) has a
        newer subject. Both are left alone, so a worker that lost its lease cannot take it back.
        Deliveries read by another process are unknown here and count 0: JetStream's ``+WPI``
        does not check the delivery (it renews whatever delivery of that sequence is pending),
        so it is only sent where this process can vouch for it, and the fence is per process.

        ``ack_wait`` belongs to the consumer: a ``+WPI`` restarts the delivery's timer for the
        consumer's ``ack_wait``, not for ``visibility_timeout``. The two agree when, as the
        router does, ``extend`` is given the visibility timeout of the group's reads (a read sets
        the consumer's ``ack_wait`` to it). ``+WPI`` leaves the delivery count alone, so this is
        not a delivery.

        One request per distinct delivery, sent together (one round trip); each awaits the
        server's reply like ``_send`` does for acks, so a read that follows sees the renewal
        (a bare publish could reach the server after its redelivery timer fired).
        """
        if visibility_timeout < timedelta(0):
            raise ValidationError(
                f"extend visibility_timeout must not be negative, got {visibility_timeout}"
            )
        _ = self.nc
        # (stream, group, seq) -> (reply subject, how many times it was named): duplicates
        # count each time, like the reference, but cost one request.
        held: dict[tuple[str, str, int], tuple[str, int]] = {}
        for delivery in deliveries:
            stream, group, seq = delivery.message.stream, delivery.group, _seq(delivery.id)
            reply = self._pending.get((stream, group), {}).get(seq)
            if reply is None or _delivered(reply) != delivery.delivery_count:
                continue
            times = held.get((stream, group, seq), (reply, 0))[1]
            held[(stream, group, seq)] = (reply, times + 1)
        if not held:
            return 0
        async with self.errors("extend"):
            sent = await asyncio.gather(*(self._renew(reply) for reply, _ in held.values()))
        renewed = 0
        for ((stream, group, seq), (reply, times)), ok in zip(held.items(), sent, strict=True):
            # Settled or redelivered here while the +WPI was in flight: the lease is not ours.
            if ok and self._pending.get((stream, group), {}).get(seq) == reply:
                renewed += times
        return renewed

    async def _renew(self, reply: str) -> bool:
        """Send one ``+WPI``; False when nobody answers (the consumer is gone, and its deliveries)."""
        try:
            await self._send(reply, b"+WPI")
        except NoRespondersError:
            return False
        return True

    # ---------------------------------------------------------------- dead letters
    async def dead_letter(self, delivery: Delivery, error: str, /) -> None:
        """Record the delivery as a dead letter, then ack it (Stream rule 8)."""
        await self._dead_letter(
            delivery.message.stream, delivery.group, delivery.id, delivery.message,
            delivery.delivery_count, error,
        )

    async def _dead_letter(
        self, stream: str, group: str, msg_id: str, message: Message, count: int, error: str
    ) -> None:
        record = {
            "id": msg_id,
            "b": dict(message.body),
            "h": dict(message.headers),
            "n": count,
            "g": group,
            "e": error,
        }
        await self._ensure_stream()
        async with self.errors("dead_letter"):
            await self.js.publish(self._dlq_subject(stream, group), dumps(record).encode())
        await self._settle(stream, group, [msg_id], b"+ACK", forget=True)

    async def dead_letters(
        self, stream: str, group: str, /, *, limit: int = 100
    ) -> list[DeadLetter]:
        """Dead letters of the group, oldest first (Stream rule 8)."""
        if limit < 1:
            return []
        msgs = await self._scan(self._dlq_subject(stream, group), limit)
        out: list[DeadLetter] = []
        for msg in msgs:
            rec = json.loads(msg.data)
            out.append(
                DeadLetter(
                    id=str(rec["id"]),
                    message=Message(stream=stream, body=rec["b"], headers=rec["h"]),
                    delivery_count=int(rec["n"]),
                    group=str(rec["g"]),
                    error=str(rec["e"]),
                )
            )
        return out

    async def _scan(self, subject: str, limit: int) -> list[Msg]:
        """Read up to ``limit`` stored messages of a subject with a throwaway consumer."""
        _ = self.nc
        async with self.errors("scan"):
            try:
                info = await self.js.add_consumer(
                    self._stream_name,
                    api.ConsumerConfig(
                        deliver_policy=api.DeliverPolicy.ALL,
                        ack_policy=api.AckPolicy.NONE,
                        filter_subject=subject,
                        inactive_threshold=30.0,
                        mem_storage=True,
                        num_replicas=1,
                    ),
                )
            except NotFoundError:
                return []
            try:
                return await self._pull(info.name, limit, expires=None)
            finally:
                try:
                    await self.js.delete_consumer(self._stream_name, info.name)
                except NotFoundError:
                    pass

    # ---------------------------------------------------------------- sizes
    async def length(self, stream: str, /) -> int:
        """Messages of ``stream`` held by JetStream (Stream rule 10)."""
        subject = self._subject(stream)
        async with self.errors("length"):
            try:
                info = await self.js.stream_info(self._stream_name, subjects_filter=subject)
            except NotFoundError:
                return 0
        return int((info.state.subjects or {}).get(subject, 0))

    async def backlog(self, stream: str, group: str, /) -> int:
        """Not yet delivered + delivered but unacked (Stream rule 10)."""
        async with self.errors("backlog"):
            try:
                info = await self.js.consumer_info(self._stream_name, durable(stream, group))
            except NotFoundError:
                # The group does not exist yet; it would start at the beginning (rule 2).
                return await self.length(stream)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def trim(self, stream: str, /, *, max_length: int) -> int:
        """Drop the oldest messages every group acked, down to ``max_length`` (rule 10).

        The bound is the lowest *ack floor* (highest contiguously acked stream sequence) of the
        stream's groups, so a message some group has not acked is never removed; a message acked
        out of order above a floor waits until the floor passes it.
        """
        if max_length < 0:
            raise ValidationError("max_length must be >= 0")
        subject = self._subject(stream)
        total = await self.length(stream)
        excess = total - max_length
        if excess <= 0:
            return 0
        async with self.errors("trim"):
            floors = [
                (c.ack_floor.stream_seq if c.ack_floor else 0)
                for c in await self.js.consumers_info(self._stream_name)
                if c.config.filter_subject == subject and c.config.durable_name
            ]
            if not floors:
                await self.js.purge_stream(self._stream_name, subject=subject, keep=max_length)
                return excess
            floor = min(floors)
            if floor <= 0:
                return 0
            above = await self._count_from(subject, floor + 1)
            removable = min(excess, total - above)
            if removable <= 0:
                return 0
            if removable == excess:
                await self.js.purge_stream(self._stream_name, subject=subject, keep=max_length)
            else:
                await self.js.purge_stream(self._stream_name, subject=subject, seq=floor + 1)
        return removable

    async def _count_from(self, subject: str, seq: int) -> int:
        info = await self.js.add_consumer(
            self._stream_name,
            api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=seq,
                ack_policy=api.AckPolicy.NONE,
                filter_subject=subject,
                inactive_threshold=30.0,
                mem_storage=True,
                num_replicas=1,
            ),
        )
        try:
            return int(info.num_pending or 0)
        finally:
            await self.js.delete_consumer(self._stream_name, info.name)

    # ---------------------------------------------------------------- namespace
    async def purge(self) -> None:
        """Delete the namespace's JetStream stream with its consumers (Provider rule 4)."""
        _ = self.nc
        async with self.errors("purge"):
            try:
                await self.js.delete_stream(self._stream_name)
            except NotFoundError:
                pass
        self._forget()
        self._pending.clear()
        self._acked.clear()

    async def is_empty(self) -> bool:
        """No stream, or a stream with neither messages nor groups (Provider rule 4)."""
        _ = self.nc
        async with self.errors("is_empty"):
            try:
                info = await self.js.stream_info(self._stream_name)
            except NotFoundError:
                return True
        return info.state.messages == 0 and info.state.consumer_count == 0


def _encode(message: Message) -> str:
    envelope: dict[str, JSONValue] = {"b": dict(message.body), "h": dict(message.headers)}
    return dumps(envelope, "message.body")


def _decode(stream: str, data: bytes) -> Message:
    envelope = json.loads(data)
    return Message(stream=stream, body=envelope.get("b", {}), headers=envelope.get("h", {}))


def _delivered(reply: str) -> int | None:
    """The delivery count carried by a JetStream ack subject (None if it is not one).

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (9 tokens), or with
    a domain and account hash after ``$JS.ACK`` (11 or 12 tokens), as nats-py parses it.
    """
    tokens = reply.split(".")
    if tokens[:2] != ["$JS", "ACK"]:
        return None
    if len(tokens) == 9:
        index = 4
    elif len(tokens) >= 11:
        index = 6
    else:
        return None
    try:
        return int(tokens[index])
    except ValueError:
        return None


def _seq(raw: str) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationError(f"not a nats stream message id: {raw!r}") from None
    if value < 1:
        raise ValidationError(f"not a nats stream message id: {raw!r}")
    return value
