"""The Store contract: job state, atomic transitions, timers, signal waiters, cached results."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from hotmesh.providers._base import Provider
from hotmesh.providers._types import (
    ClaimedTimer,
    CreateResult,
    JSONValue,
    NewJob,
    Signal,
    Timer,
    Transition,
    TransitionResult,
    Waiter,
)
from hotmesh.providers.stream import Stream


@runtime_checkable
class Store(Provider, Protocol):
    """Durable job state with atomic, idempotent transitions.

    Rules (cited by the kit as "Store rule N"):

    Jobs
        1. ``create_job`` creates the job only if no job with that id exists (an expired job does
           not exist). Exactly one of many concurrent creators gets ``created=True``; the others
           change nothing and emit nothing.
        2. ``apply_transition`` is atomic: the guard check, field changes, step record, expiry and
           (rule 6) message enqueueing all happen, or none does; no reader sees half of it.
        3. It is idempotent per ``(job_id, step)``: the first application returns APPLIED; every
           later one changes nothing and returns DUPLICATE with the messages recorded by the first
           (so the engine can re-emit them) and the current values of ``read`` fields.
        4. A transition on a missing job, or whose ``require`` guard fails, returns REJECTED and
           changes nothing (its step is not recorded, so it may be retried).
        5. ``increment`` adds to numeric fields (absent = 0) and is exact for integers up to
           2**53; ``read`` returns values after the transition.
        6. When ``stream`` is given and ``can_publish_to(stream)`` is true, the messages are
           enqueued on it in the same atomic operation and ``published`` is True. Otherwise
           ``published`` is False and the caller publishes them (after commit: engine rule 3).
        6b. When ``ack`` is given and ``can_publish_to(stream)`` is true, a transition that
           returns APPLIED also acks that delivery (Stream rule 3) in the same atomic operation
           and ``acked`` is True; if the operation fails, nothing is acked. DUPLICATE and
           REJECTED do not ack (``acked`` is False): the caller may still have work to do for
           that delivery (re-do the step's effects, replay newer state) and acks it itself.
           Any other store ignores ``ack`` and returns ``acked=False``.
        6c. ``can_notify(sub)`` is true only for a Sub provider of the same backend and
           namespace that this store can publish through. When it is, and the caller passes a
           transition with ``notify`` (the engine does so only then), an APPLIED transition
           publishes each ``(topic, payload)`` on that sub as part of the same operation,
           visible to subscribers no earlier than the commit, and ``notified`` is True.
           DUPLICATE and REJECTED publish nothing. A store that cannot returns False.
        7. ``get_job`` returns the requested fields (all when ``fields`` is None) or None when the
           job does not exist. Values come back as the JSON that was stored.
        8. With STORE_TTL, a job with an expiry disappears (create may reuse the id) once it
           passes; ``expire`` on a transition resets the expiry. Without STORE_TTL, an ``expire``
           raises CapabilityNotSupportedError before anything is written.

    Timers
        9. ``add_timer`` is idempotent by ``timer_id`` (returns False if it exists).
        10. ``claim_due_timers`` returns timers whose due time has passed by the store's clock,
            earliest first. A claimed timer is invisible to other claims for ``lease``; at any
            moment at most one claimer holds it. ``complete_timer`` with the claim's token
            deletes it and returns True; an expired lease makes it claimable again (a new token),
            after which the old token no longer completes it (fencing).
        11. ``cancel_timer`` deletes a timer whether or not it is claimed.
        12. ``next_timer_due`` returns the earliest due time of unclaimed timers, or None, so a
            scheduler can sleep until then instead of polling.

    Signals (promise C5: never lost, consumed once, buffered before a waiter exists)
        13. ``deliver_signal`` buffers the signal (idempotent by ``delivery_id``) and returns the
            current waiters of ``signal_id`` so the caller can wake them.
        14. ``add_waiter`` registers a waiter (idempotent by (signal id, job id, step)) and returns
            the oldest buffered signal for that id, if any, so a waiter added after the signal
            still wakes.
        15. ``consume_signal`` atomically takes the oldest buffered signal for the waiter and
            removes the waiter: exactly one waiter receives each signal. Repeating the call for the
            same (signal id, job id, step) returns the same signal again (so a crash between
            consume and the job transition loses nothing); other waiters get None.
        16. ``remove_waiter`` removes a waiter without consuming anything.

    Cache
        17. ``set_cached`` stores a JSON value under a key for ``ttl`` (None: forever);
            ``get_cached`` returns ``(True, value)`` or ``(False, None)`` when absent or expired;
            ``delete_cached`` removes it and says whether it existed.

    Clock
        18. ``now`` returns a timezone-aware UTC datetime from the store's clock when
            STORE_CLOCK is declared, otherwise from this host's clock.
    """

    async def create_job(self, job: NewJob, /, *, stream: Stream | None = None) -> CreateResult:
        """Create ``job`` if its id is absent (rules 1, 6, 8)."""
        ...

    async def apply_transition(
        self, transition: Transition, /, *, stream: Stream | None = None
    ) -> TransitionResult:
        """Apply one transition atomically and idempotently (rules 2-6, 8)."""
        ...

    async def get_job(
        self, job_id: str, /, fields: Sequence[str] | None = None
    ) -> dict[str, JSONValue] | None:
        """Read fields of a job (rule 7)."""
        ...

    async def delete_job(self, job_id: str, /) -> bool:
        """Delete a job and its step records; True if it existed."""
        ...

    def can_publish_to(self, stream: object, /) -> bool:
        """Whether this store can enqueue on ``stream`` atomically with a transition (rule 6)."""
        ...

    def can_notify(self, sub: object, /) -> bool:
        """True if this store sends a transition's ``notify`` on ``sub`` itself (rule 6c)."""
        ...

    async def add_timer(self, timer: Timer, /) -> bool:
        """Schedule a timer (rule 9)."""
        ...

    async def claim_due_timers(self, *, limit: int, lease: timedelta) -> list[ClaimedTimer]:
        """Claim due timers for ``lease`` (rule 10)."""
        ...

    async def complete_timer(self, claimed: ClaimedTimer, /) -> bool:
        """Delete a fired timer if the claim still holds (rule 10)."""
        ...

    async def cancel_timer(self, timer_id: str, /) -> bool:
        """Delete a timer (rule 11)."""
        ...

    async def next_timer_due(self) -> datetime | None:
        """Earliest due time among unclaimed timers (rule 12)."""
        ...

    async def deliver_signal(
        self, signal_id: str, data: JSONValue, /, *, delivery_id: str
    ) -> list[Waiter]:
        """Buffer a signal and return its waiters (rule 13)."""
        ...

    async def add_waiter(self, signal_id: str, waiter: Waiter, /) -> Signal | None:
        """Register a waiter; return a buffered signal if one is there (rule 14)."""
        ...

    async def consume_signal(self, signal_id: str, /, *, job_id: str, step: str) -> Signal | None:
        """Take the oldest buffered signal for this waiter (rule 15)."""
        ...

    async def remove_waiter(self, signal_id: str, /, *, job_id: str, step: str) -> bool:
        """Remove a waiter (rule 16)."""
        ...

    async def set_cached(self, key: str, value: JSONValue, /, *, ttl: timedelta | None) -> None:
        """Cache a value (rule 17)."""
        ...

    async def get_cached(self, key: str, /) -> tuple[bool, JSONValue]:
        """Read a cached value (rule 17)."""
        ...

    async def delete_cached(self, key: str, /) -> bool:
        """Drop a cached value (rule 17)."""
        ...

    async def now(self) -> datetime:
        """The store's clock (rule 18)."""
        ...
