"""Named crash points: deterministic process deaths at the await boundaries that matter.

In production ``crashpoint(name)`` is one dictionary lookup. When the environment variable
``HOTMESH_CRASHPOINT=<name>:<n>`` is set, the process exits with status 137 (as ``kill -9`` would
leave it) on the n-th time it reaches that point. The fault suite of the conformance kit enumerates
:data:`CRASHPOINTS`, kills a worker at each one in turn and checks that a fresh worker finishes the
work with exactly one outcome (promises C2, C3, C8). Inspired by FoundationDB's "buggify", but
deterministic and enumerated rather than random.
"""

from __future__ import annotations

import os

__all__ = ["CRASHPOINTS", "crashpoint"]

CRASHPOINTS: dict[str, str] = {
    "engine.after_commit": "a transition is committed, its follow-up messages not yet published",
    "router.before_ack": "a handler finished all its effects, the delivery is not yet acked",
    "scheduler.after_publish": "a due timer's message is published, the timer not yet completed",
    "workflow.after_record": "a workflow event (timer, signal, child outcome) is recorded, no replay yet",
    "workflow.after_dispatch": "new durable calls are committed, their timers/waiters/children not yet made",
    "workflow.after_side_effects": "timers, waiters and children are made, the task not yet acked",
    "workflow.after_finish": "the outcome is committed (and announced with it where the store can), its record ttl timer not yet scheduled",
    "activity.after_run": "an activity returned, its outcome is not yet written",
    "activity.after_attempt_error": "a failed attempt is recorded, its retry timer not yet scheduled",
}
"""Every crash point, with the state it leaves behind."""


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("HOTMESH_CRASHPOINT", "")
    if not spec:
        return None
    name, _, nth = spec.partition(":")
    if name not in CRASHPOINTS:
        raise ValueError(f"HOTMESH_CRASHPOINT names unknown point {name!r}; known: {sorted(CRASHPOINTS)}")
    return name, int(nth or "1")


_ARMED = _armed()
_hits: dict[str, int] = {}


def crashpoint(name: str) -> None:
    """Die here (exit 137) if this point is armed for this hit; otherwise do nothing."""
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _ARMED[1]:
        os.write(2, f"hotmesh: crash point {name} reached\n".encode())
        os._exit(137)
