"""The side-effect ledger and the checker every fault test ends with (reliability catalogue §5.3).

Two append-only files survive any process kill (each line is one ``write(2)`` on a descriptor
opened with ``O_APPEND``, so lines from many processes never interleave):

- the **activity ledger** (``path``): the kit's activities append one line per execution,
  ``<pid> <name> <idempotency key> <attempt> <workflow id> <seq> <wall time> <monotonic time>``;
- the **commit ledger** (``path`` + ``.commits``): a worker whose store is wrapped in
  :class:`RecordingStore` appends ``<pid> <job id> <step> <monotonic time>`` for every transition
  the store reports APPLIED.

Monotonic times are ``CLOCK_MONOTONIC``, one clock for every process of a Linux host, unaffected
by wall-clock skew: the fault tests compare them with their own ``time.monotonic()``.

:func:`check` then asserts the promises on what the backend holds at quiescence:

- every started workflow has exactly one outcome, the expected one (C1, C2, C8);
- its history has one outcome per durable call, numbered without gaps, none pending (C2);
- no transition was applied twice (the commit ledger has each ``(job, step)`` once: Store rule 3
  held across processes, so no result was written twice) (C2);
- every activity call in a history ran at least once, every run belongs to a recorded call (C3);
- nothing is left pending: no undelivered or unacked workflow/activity message, no dead letter,
  no timer (C4, C6, C8).

The checker returns the figures of the run (workflows, calls, runs, reruns, recovery times); with
``HOTMESH_FAULT_REPORT`` set, :func:`report` appends them as a JSON line
(``python -m hotmesh_conformance.fault_report`` turns the lines into a table).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from hotmesh.errors import HotMeshError, ProviderError, WorkflowFailed
from hotmesh.providers import Transition, TransitionResult, TransitionStatus

__all__ = [
    "ANY_RESULT",
    "LEDGER_ENV",
    "REPORT_ENV",
    "ActivityRun",
    "Commit",
    "Figures",
    "Ledger",
    "RecordingStore",
    "backend_label",
    "check",
    "check_commits",
    "check_nothing_pending",
    "finish",
    "record_activity",
    "report",
]

LEDGER_ENV = "HOTMESH_KIT_LEDGER"
"""Activities append to the file this names (the worker script sets it from ``--ledger``)."""
REPORT_ENV = "HOTMESH_FAULT_REPORT"
"""When set, :func:`report` appends each fault run's figures to this file (JSON lines)."""


def _append(path: str | os.PathLike[str], line: str, *, sync: bool = False) -> None:
    """One ``write(2)`` of one line with ``O_APPEND``: atomic against other appenders, kept by
    the kernel whatever happens to this process after it returns."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def record_activity(name: str, key: str, attempt: int, workflow_id: str, seq: int, run: int = 1) -> None:
    """Append one activity execution to the ledger named by ``HOTMESH_KIT_LEDGER`` (if set)."""
    path = os.environ.get(LEDGER_ENV)
    if path:
        now, mono = time.time(), time.monotonic()
        line = f"{os.getpid()} {name} {key} {attempt} {workflow_id} {seq} {now:.6f} {mono:.6f} {run}\n"
        _append(path, line, sync=True)


@dataclass(frozen=True)
class ActivityRun:
    """One execution of an activity, as the ledger recorded it."""

    pid: int
    name: str
    key: str
    attempt: int
    workflow_id: str
    seq: int
    at: float
    mono: float
    run: int = 1

    @property
    def call(self) -> tuple[str, int, int]:
        """(workflow id, run, seq): one durable call (seq restarts with each continue-as-new)."""
        return (self.workflow_id, self.run, self.seq)


@dataclass(frozen=True)
class Commit:
    """One transition the store reported APPLIED to a worker."""

    pid: int
    job_id: str
    step: str
    mono: float


class Ledger:
    """Reads the activity and commit ledgers of one test (a torn last line is ignored)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.commits_path = path.with_name(path.name + ".commits")

    @staticmethod
    def _lines(path: Path) -> list[list[str]]:
        if not path.exists():
            return []
        text = path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a line torn by a kill mid-append is not a record
        return [line.split() for line in complete.splitlines() if line.strip()]

    def runs(self, name: str | None = None) -> list[ActivityRun]:
        """Activity executions, in the order they were appended."""
        out = []
        for parts in self._lines(self.path):
            if len(parts) < 8 or (name is not None and parts[1] != name):
                continue
            out.append(ActivityRun(int(parts[0]), parts[1], parts[2], int(parts[3]), parts[4], int(parts[5]),
                                   float(parts[6]), float(parts[7]), int(parts[8]) if len(parts) > 8 else 1))  # fmt: skip
        return out

    def commits(self) -> list[Commit]:
        """Applied transitions, in the order they were appended."""
        return [Commit(int(p[0]), p[1], p[2], float(p[3])) for p in self._lines(self.commits_path) if len(p) == 4]

    def first_progress_after(self, mono: float) -> float | None:
        """Seconds from ``mono`` to the first transition a worker committed after it (progress
        that needed the backend; an activity run may not)."""
        later = [c.mono for c in self.commits() if c.mono > mono]
        return min(later) - mono if later else None


class RecordingStore:
    """Wraps a store: every transition it reports APPLIED is appended to the commit ledger.

    Everything else is forwarded. A process killed between the commit and the append loses a
    line, which can only hide a duplicate, never invent one.
    """

    def __init__(self, inner: Any, commits_path: str | os.PathLike[str]) -> None:
        self._inner = inner
        self._path = commits_path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def apply_transition(self, transition: Transition, /, *, stream: Any = None) -> TransitionResult:
        result: TransitionResult = await self._inner.apply_transition(transition, stream=stream)
        if result.status is TransitionStatus.APPLIED:
            _append(self._path, f"{os.getpid()} {transition.job_id} {transition.step} {time.monotonic():.6f}\n")
        return result


@dataclass
class Figures:
    """What one fault run did and how it ended (one row of the fault report)."""

    test: str
    backend: str
    workflows: int = 0
    faults: int = 0
    lost: int = 0
    duplicates: int = 0
    activity_calls: int = 0
    activity_runs: int = 0
    reruns: int = 0
    recovery_worker_kill: list[float] = field(default_factory=list)
    recovery_server_restart: list[float] = field(default_factory=list)
    recovery_partition: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def backend_label(urls: Iterable[str]) -> str:
    """``redis``, ``postgresql``, ``sqlite``, or ``nats+postgresql`` for a mix (by URL scheme)."""
    schemes = []
    for url in urls:
        scheme = url.split(":", 1)[0].split("+", 1)[0]
        scheme = {"postgres": "postgresql", "rediss": "redis"}.get(scheme, scheme)
        if scheme not in schemes:
            schemes.append(scheme)
    return "+".join(schemes)


def report(figures: Figures) -> None:
    """Append the figures as one JSON line to ``HOTMESH_FAULT_REPORT`` (when set)."""
    path = os.environ.get(REPORT_ENV)
    if path:
        _append(path, json.dumps(asdict(figures), sort_keys=True) + "\n")


async def _patiently(call: Any, deadline: float) -> Any:
    """Await ``call()`` again while the backend is unreachable (a fault test's own connections
    may be broken by the fault), until ``deadline``."""
    while True:
        try:
            return await call()
        except ProviderError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


_UNSET = object()


async def check(
    started: Sequence[tuple[Any, Any]],
    ledger: Ledger,
    figures: Figures,
    *,
    store: Any,
    stream: Any,
    queue: str,
    timeout: float = 90.0,
    settle: float = 20.0,
    calls: Sequence[int | None] | None = None,
    kills: Sequence[float] = (),
    restarts: Sequence[float] = (),
    partitions: Sequence[float] = (),
    injected: Callable[[], int] | None = None,
    failing: Sequence[tuple[Any, str]] = (),
) -> Figures:
    """Assert the promises for ``started`` = ``[(handle, expected result), ...]`` and fill in
    ``figures`` (reported, then asserted: a failing run is in the report too).

    ``failing`` = ``[(handle, text), ...]`` are workflows that must fail (C6): each must end in
    ``WorkflowFailed`` whose message contains ``text``; their activity runs count as recorded
    calls, and dead letters of theirs are expected rather than left over.

    ``store`` and ``stream`` are providers of the test's namespace (unwrapped); ``queue`` is the
    task queue the workflows ran on. ``calls[i]``, when given, is the number of durable calls the
    i-th workflow makes (its history must have exactly that many). Child workflows found in the
    histories are checked the same way (one outcome, complete history). ``kills`` and
    ``restarts`` / ``partitions`` are the ``time.monotonic()`` moments a worker died / a server
    was back after a restart / after a pause: the
    recovery time after each is the time to the first transition any worker committed after it.
    ``injected``, when given, counts faults a wrapper injected during the run (read at the end).
    """
    from hotmesh.meshflow import _records as rec

    deadline = time.monotonic() + timeout
    problems = figures.problems
    figures.workflows += len(started)

    async def outcome(handle: Any) -> Any:
        try:
            return await _patiently(lambda: handle.result(timeout=max(1.0, deadline - time.monotonic())), deadline)
        except WorkflowFailed as exc:
            return exc
        except HotMeshError as exc:
            return exc

    results = await asyncio.gather(*(outcome(h) for h, _ in started))
    calls_made: set[tuple[str, int, int]] = set()  # (workflow id, run, seq) of every activity call
    final_run: dict[str, int] = {}  # a workflow's last run: continue-as-new discards earlier histories

    async def record_calls(workflow_id: str, events: list[Any]) -> None:
        job = await _patiently(lambda: store.get_job(rec.job_id(workflow_id), ["run"]), deadline)
        run = job.get("run") if job else None
        final_run[workflow_id] = run if isinstance(run, int) else 1
        calls_made.update(
            (workflow_id, final_run[workflow_id], int(e["seq"])) for e in events if e["type"] == "activity"
        )

    for handle, text in failing:
        figures.workflows += 1
        failure = await outcome(handle)
        if not isinstance(failure, WorkflowFailed) or text not in str(failure):
            figures.lost += 1
            problems.append(f"{handle.workflow_id}: outcome {failure!r}, expected a failure naming {text!r}")
        await record_calls(handle.workflow_id, await _patiently(handle.history, deadline))
    pending: list[tuple[str, list[Any]]] = []  # (workflow id, events) still to inspect
    for i, ((handle, expected), result) in enumerate(zip(started, results, strict=True)):
        if isinstance(result, Exception) or (expected is not _UNSET and result != expected):
            figures.lost += 1
            problems.append(f"{handle.workflow_id}: outcome {result!r}, expected {expected!r}")
            continue
        status = await _patiently(handle.status, deadline)
        if status != rec.COMPLETED:
            figures.lost += 1
            problems.append(f"{handle.workflow_id}: status {status!r} after its result")
            continue
        events = await _patiently(handle.history, deadline)
        want = calls[i] if calls is not None else None
        if want is not None and len(events) != want:
            problems.append(f"{handle.workflow_id}: {len(events)} durable calls in history, expected {want}")
        pending.append((handle.workflow_id, events))
    seen: set[str] = set()
    while pending:
        workflow_id, events = pending.pop()
        if workflow_id in seen:
            continue
        seen.add(workflow_id)
        if [e["seq"] for e in events] != list(range(1, len(events) + 1)):
            problems.append(f"{workflow_id}: history seqs {[e['seq'] for e in events]} (a call lost or doubled)")
        await record_calls(workflow_id, events)
        for event in events:
            if event["status"] != "completed":
                problems.append(f"{workflow_id}: call #{event['seq']} is {event['status']}")
            if event["type"] == "child":
                child = _child_id(event)
                if child is not None:
                    job = await _patiently(lambda c=child: store.get_job(rec.job_id(c)), deadline)
                    if job is None or job.get("status") != rec.COMPLETED:
                        figures.lost += 1
                        problems.append(f"child {child} of {workflow_id}: {job and job.get('status')!r}")
                    else:
                        pending.append((child, rec.history_events(job)))
    check_commits(ledger, figures)
    for moment, into in [(t, figures.recovery_worker_kill) for t in kills] + [
        (t, figures.recovery_server_restart) for t in restarts
    ] + [(t, figures.recovery_partition) for t in partitions]:
        recovery = ledger.first_progress_after(moment)
        if recovery is not None:
            into.append(round(recovery, 3))
    # C3: every activity call ran at least once, with one idempotency key on every attempt;
    # every run belongs to a recorded call (or to an earlier run of a workflow that continued as
    # new, whose history is gone by design).
    runs = ledger.runs()
    ran = collections.Counter(r.call for r in runs)
    keys: dict[tuple[str, int, int], set[str]] = collections.defaultdict(set)
    for r in runs:
        keys[r.call].add(r.key)
    never = sorted(calls_made - set(ran))
    if never:
        problems.append(f"activity calls in history that never ran: {never[:10]}")
    strays = sorted(c for c in set(ran) - calls_made if c[1] >= final_run.get(c[0], 1))
    if strays:
        problems.append(f"activity runs for calls no history recorded: {strays[:10]}")
    unstable = {k: v for k, v in keys.items() if len(v) > 1}
    if unstable:
        problems.append(f"idempotency key changed between runs of one call: {dict(list(unstable.items())[:5])}")
    figures.activity_calls += len(calls_made)
    figures.activity_runs += sum(ran.values())
    figures.reruns += sum(n - 1 for n in ran.values())
    await check_nothing_pending(
        store, stream, queue, figures, settle=min(settle, max(1.0, deadline - time.monotonic())),
        dead_letters_of={h.workflow_id for h, _ in failing},
    )  # fmt: skip
    if injected is not None:
        figures.faults += injected()
    return finish(figures)


def check_commits(ledger: Ledger, figures: Figures) -> None:
    """C2: no transition applied twice (so no result written twice), across every process."""
    applied = collections.Counter((c.job_id, c.step) for c in ledger.commits())
    doubled = {k: n for k, n in applied.items() if n > 1}
    figures.duplicates += len(doubled)
    if doubled:
        figures.problems.append(f"transitions applied more than once: {dict(list(doubled.items())[:10])}")


async def check_nothing_pending(
    store: Any, stream: Any, queue: str, figures: Figures, *, settle: float = 20.0,
    dead_letters_of: Collection[str] = (),
) -> None:  # fmt: skip
    """Nothing pending (C4, C6, C8): no backlog or dead letter on the queue's workflow and activity
    streams (but those of the workflows in ``dead_letters_of``), no timer waiting and no due timer
    left claimable. The last acks follow the result announcement, so this waits up to ``settle``
    seconds for quiescence."""
    from hotmesh.meshflow import _records as rec

    leftovers = await _leftovers(store, stream, queue, rec, time.monotonic() + settle, set(dead_letters_of))
    if not leftovers:
        # A due timer that some claim still hides (a lease held by a dead process) is invisible
        # to next_timer_due(); once its lease has run out, a claim finds it. The run is over, so
        # taking it changes nothing that is checked.
        try:
            stale = await store.claim_due_timers(limit=10, lease=timedelta(seconds=30))
        except ProviderError as exc:
            stale = []
            leftovers["unreachable"] = str(exc)
        if stale:
            leftovers["due timers nobody fired"] = [c.timer.timer_id for c in stale]
    if leftovers:
        figures.problems.append(f"left pending at quiescence: {leftovers}")


def finish(figures: Figures) -> Figures:
    """Report the figures, then fail with the problems found (if any)."""
    report(figures)
    assert not figures.problems, f"{figures.test} on {figures.backend}: " + "; ".join(figures.problems[:20])
    return figures


def _child_id(event: dict[str, Any]) -> str | None:
    command = event.get("command")
    if isinstance(command, dict):
        for name in ("workflow_id", "child_id", "id"):
            if isinstance(command.get(name), str):
                return str(command[name])
    return None


async def _leftovers(
    store: Any, stream: Any, queue: str, rec: Any, until: float, expected_dead: Collection[str] = ()
) -> dict[str, Any]:
    while True:
        found: dict[str, Any] = {}
        try:
            for name in (rec.workflow_stream(queue), rec.activity_stream(queue)):
                backlog = await stream.backlog(name, rec.GROUP)
                if backlog:
                    found[f"{name} backlog"] = backlog
                dead = [
                    d for d in await stream.dead_letters(name, rec.GROUP)
                    if d.message.body.get("workflow_id") not in expected_dead
                ]  # fmt: skip
                if dead:
                    found[f"{name} dead letters"] = [d.error for d in dead][:5]
            due = await store.next_timer_due()
            if due is not None:
                found["timer due"] = due.isoformat()
        except ProviderError as exc:
            found["unreachable"] = str(exc)
        if not found or time.monotonic() > until:
            return found
        await asyncio.sleep(0.25)


ANY_RESULT: Any = _UNSET
"""Pass as the expected result to accept whatever completed result the workflow returned."""
