"""Frozen value types that cross the provider boundary.

Core owns these types; providers never return driver objects. Adding a field with a default never
breaks a provider (the request-object habit of temporalio's ``*Input`` dataclasses).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypeAlias, Union

JSONValue: TypeAlias = Union[
    None, bool, int, float, str, list["JSONValue"], dict[str, "JSONValue"]
]
"""A value that survives ``json.dumps``/``json.loads`` unchanged (tuples become lists)."""

JSONObject: TypeAlias = dict[str, JSONValue]


def _empty() -> Mapping[str, JSONValue]:
    return {}


def _empty_headers() -> Mapping[str, str]:
    return {}


@dataclass(frozen=True)
class Message:
    """A unit of work addressed to one stream.

    Attributes:
        stream: the stream (queue) name inside the provider's namespace.
        body: the JSON payload.
        headers: string metadata that travels with the body (trace context, attempt, ...).
    """

    stream: str
    body: Mapping[str, JSONValue] = field(default_factory=_empty)
    headers: Mapping[str, str] = field(default_factory=_empty_headers)


@dataclass(frozen=True)
class Delivery:
    """A message handed to one consumer of a group.

    Attributes:
        id: provider-assigned message id, unique within the stream; stable across redeliveries.
        message: the message as published.
        delivery_count: 1 on first delivery, +1 on each redelivery.
        group: the consumer group it was read through.
    """

    id: str
    message: Message
    delivery_count: int
    group: str


@dataclass(frozen=True)
class ReadRequest:
    """Parameters of :meth:`Stream.read`.

    Attributes:
        stream: stream to read.
        group: consumer group (created on first use).
        consumer: this consumer's name, unique among live consumers.
        count: at most this many deliveries are returned.
        block: wait this long for work when none is ready (zero: do not wait).
        visibility_timeout: an unacked delivery becomes deliverable again after this long.
        max_deliveries: a message whose next delivery would exceed this count is dead-lettered
            instead of delivered (None: never).
    """

    stream: str
    group: str
    consumer: str
    count: int = 1
    block: timedelta = timedelta(0)
    visibility_timeout: timedelta = timedelta(seconds=30)
    max_deliveries: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    """A message that was given up on, with the reason."""

    id: str
    message: Message
    delivery_count: int
    group: str
    error: str


class TransitionStatus(enum.Enum):
    """Outcome of :meth:`Store.apply_transition`."""

    APPLIED = "applied"
    """The transition was applied now."""
    DUPLICATE = "duplicate"
    """This (job id, step) was already applied; nothing changed."""
    REJECTED = "rejected"
    """The job does not exist or a ``require`` guard did not hold; nothing changed."""


@dataclass(frozen=True)
class Transition:
    """One atomic, idempotent change to a job, with the messages it emits.

    Attributes:
        job_id: the job changed.
        step: idempotency key of this transition within the job (e.g. ``"a1:3"`` or a message id).
        set: fields to set (JSON values).
        increment: numeric fields to add to (missing fields count as 0).
        delete: fields to remove.
        require: guard: apply only if each named field currently equals the given value
            (``None`` means the field must be absent).
        read: after applying, return the current value of these fields.
        messages: follow-up messages emitted by this transition.
        expire: from now on the job (and its step records) expires after this long; ``None``
            leaves the expiry as it is.
        ack: the delivery whose handling this transition completes. A store that can publish
            to the delivery's stream acks it in the same atomic operation when the transition
            is APPLIED (Store rule 6b), saving the separate ack round trip; every
            other store ignores it and the engine acks afterwards as usual.
        notify: ``(topic, payload)`` notifications for the Sub role, sent when the transition
            is APPLIED. A store whose ``can_notify(sub)`` is true sends them itself, delivered
            no earlier than the commit (Store rule 6c); otherwise the engine publishes them
            right after the commit.
    """

    job_id: str
    step: str
    set: Mapping[str, JSONValue] = field(default_factory=_empty)
    increment: Mapping[str, float] = field(default_factory=dict)
    delete: tuple[str, ...] = ()
    require: Mapping[str, JSONValue] = field(default_factory=_empty)
    read: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    expire: timedelta | None = None
    ack: Delivery | None = None
    notify: tuple[tuple[str, Mapping[str, JSONValue]], ...] = ()


@dataclass(frozen=True)
class TransitionResult:
    """What :meth:`Store.apply_transition` did.

    Attributes:
        status: applied, duplicate or rejected.
        fields: the ``read`` fields after the transition (absent fields are left out). On a
            duplicate, their current values.
        messages: the messages this step emitted when it was first applied (on APPLIED the
            transition's own; on DUPLICATE the recorded ones; empty on REJECTED). The engine
            re-publishes them on redelivery: re-applying is a no-op that re-emits the follow-ups.
        published: True when the provider already enqueued ``messages`` on the stream in the
            same atomic operation (see Store rule 6).
        acked: True when the provider acked the transition's ``ack`` delivery in the same
            atomic operation (Store rule 6b); the caller must not rely on acking it again.
        notified: True when the provider sent the transition's ``notify`` notifications
            (Store rule 6c).
    """

    status: TransitionStatus
    fields: Mapping[str, JSONValue] = field(default_factory=_empty)
    messages: tuple[Message, ...] = ()
    published: bool = False
    acked: bool = False
    notified: bool = False


@dataclass(frozen=True)
class NewJob:
    """A job to create if its id is absent.

    Attributes:
        job_id: the id; unique within the namespace while the job exists.
        fields: initial fields.
        messages: messages emitted only if the job is created.
        expire: the job expires after this long (None: never, until a transition sets it).
    """

    job_id: str
    fields: Mapping[str, JSONValue] = field(default_factory=_empty)
    messages: tuple[Message, ...] = ()
    expire: timedelta | None = None


@dataclass(frozen=True)
class CreateResult:
    """What :meth:`Store.create_job` did."""

    created: bool
    published: bool = False


@dataclass(frozen=True)
class Timer:
    """A message to publish at or after ``due``.

    Attributes:
        timer_id: unique id; adding an existing id is a no-op.
        due: when it is due (timezone-aware UTC).
        message: what to publish when it fires.
    """

    timer_id: str
    due: datetime
    message: Message


@dataclass(frozen=True)
class ClaimedTimer:
    """A due timer claimed by one engine for a lease.

    Attributes:
        timer: the timer.
        token: proof of the claim; :meth:`Store.complete_timer` needs it.
    """

    timer: Timer
    token: str


@dataclass(frozen=True)
class Waiter:
    """Who waits for a signal, and the message that wakes them.

    Attributes:
        job_id: the waiting job.
        step: the waiting step within the job (waiter identity is (signal id, job id, step)).
        message: published by the engine when the signal arrives; its body gets the signal data.
    """

    job_id: str
    step: str
    message: Message


@dataclass(frozen=True)
class Signal:
    """A signal buffered in the store until a waiter consumes it."""

    signal_id: str
    data: JSONValue
    delivery_id: str


class FieldType(enum.Enum):
    """Types of indexed search fields."""

    TEXT = "TEXT"
    TAG = "TAG"
    NUMERIC = "NUMERIC"


@dataclass(frozen=True)
class SearchField:
    """One indexed field.

    Attributes:
        name: field name (letters, digits, underscore).
        type: TEXT (full-text words), TAG (exact strings) or NUMERIC.
        sortable: may be used in ``Query.sort_by``.
        nostem: TEXT only: match words exactly, without stemming.
    """

    name: str
    type: FieldType
    sortable: bool = False
    nostem: bool = False


@dataclass(frozen=True)
class IndexSpec:
    """A search index over documents of one kind."""

    name: str
    fields: tuple[SearchField, ...]


class Op(enum.Enum):
    """Comparison operators of a :class:`Condition`."""

    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    BETWEEN = "between"
    IN = "in"
    MATCH = "match"


@dataclass(frozen=True)
class Condition:
    """``field op value``.

    EQ/NE/IN on TAG compare whole strings; on NUMERIC, numbers. LT..GE and BETWEEN (value a
    two-item tuple, inclusive) are NUMERIC only; IN takes a tuple of values. MATCH is TEXT only:
    every word of ``value`` must occur as a word of the field, case-insensitively; words are runs
    of Unicode letters and digits (``\\w+``), and a MATCH value with no word matches nothing.
    Values are data, never query syntax.
    """

    field: str
    op: Op
    value: JSONValue | tuple[JSONValue, ...]


@dataclass(frozen=True)
class And:
    """All of the clauses hold."""

    clauses: tuple[Where, ...]


@dataclass(frozen=True)
class Or:
    """At least one of the clauses holds."""

    clauses: tuple[Where, ...]


Where: TypeAlias = Union[Condition, And, Or]


@dataclass(frozen=True)
class Query:
    """A structured search.

    Attributes:
        index: the index name.
        where: the filter; None matches every document.
        sort_by: a sortable field, or None to order by document id. Documents without the field
            come last in either direction; ties are broken by document id, ascending.
        descending: sort direction.
        offset: skip this many hits.
        limit: return at most this many hits.
        fields: return these fields of each hit (empty: all indexed fields).
    """

    index: str
    where: Where | None = None
    sort_by: str | None = None
    descending: bool = False
    offset: int = 0
    limit: int = 10
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One matching document."""

    doc_id: str
    fields: Mapping[str, JSONValue]


@dataclass(frozen=True)
class QueryResult:
    """Hits of a page and the total number of matches (before offset/limit)."""

    total: int
    hits: tuple[Hit, ...]


class Survives(enum.IntEnum):
    """The worst event an acknowledged write survives on the configuration found (promise C9).

    Ordered, so a requirement is a comparison: ``info.survives >= Survives.PROCESS_CRASH``.
    """

    NOTHING = 0
    """A crash or restart of the server (or of this process, when embedded) may lose it."""
    PROCESS_CRASH = 1
    """A killed server process loses nothing; an OS crash or power loss may lose recent writes."""
    POWER_LOSS = 2
    """Flushed to stable storage (fsync) before it was acknowledged."""

    @property
    def label(self) -> str:
        """``"process-crash"``: the spelling of the command line and the kit option."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def from_label(cls, label: str) -> Survives:
        """Parse ``nothing`` / ``process-crash`` / ``power-loss``."""
        for level in cls:
            if level.label == label:
                return level
        raise ValueError(f"unknown durability level {label!r}: use one of {', '.join(lv.label for lv in cls)}")


@dataclass(frozen=True)
class ProviderInfo:
    """Describes a live provider, for report headers and ``python -m hotmesh doctor``.

    Attributes:
        name: provider name (``"sqlite"``).
        server_version: version of the server it talks to ("" when embedded).
        durability: what a committed write survives, in words (e.g. "fsync per commit"),
            naming the settings it was read from.
        survives: the same as a level, read from the server's settings; None when they cannot
            be read (e.g. Redis ``CONFIG`` forbidden by an ACL).
    """

    name: str
    server_version: str = ""
    durability: str = ""
    survives: Survives | None = None
