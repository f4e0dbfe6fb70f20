"""Hypothesis state machines comparing a provider with a plain-Python model of its contract.

Hypothesis drives rules synchronously; each machine owns an anyio blocking portal (an event
loop in a thread) and opens its provider inside it, because connections must live in the loop
that uses them. Each example gets a fresh namespace, purged and checked empty at teardown, so
examples never see each other and shrinking stays valid (reliability.md section 6).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from hotmesh.providers import (
    Capability,
    Delivery,
    Message,
    NewJob,
    ReadRequest,
    Role,
    Transition,
    TransitionStatus,
    default_registry,
)
from hotmesh_conformance.helpers import new_namespace

T = TypeVar("T")
JOBS = st.sampled_from(["j1", "j2", "j3"])
STEPS = st.sampled_from(["s1", "s2", "s3", "s4"])
CONSUMERS = st.sampled_from(["c1", "c2"])


class PortalMachine(RuleBasedStateMachine):
    """Owns a portal and one provider of ``role`` opened in it."""

    role: Role = Role.STORE

    def __init__(self, url: str) -> None:
        super().__init__()
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        self.provider: Any = default_registry().create(self.role, url, namespace=new_namespace())
        try:
            self.run(self.provider.open)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise

    def run(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run a coroutine function in the machine's event loop."""
        return self.portal.call(func, *args)

    def teardown(self) -> None:
        """Purge, check emptiness (Provider rule 4) and close."""
        try:
            self.run(self.provider.purge)
            assert self.run(self.provider.is_empty), "Provider rule 4: not empty after purge()"
        finally:
            try:
                self.run(self.provider.aclose)
            finally:
                self._portal_cm.__exit__(None, None, None)


class StoreMachine(PortalMachine):
    """Store rules 1, 3, 4, 5, 7 and delete_job against a dict model."""

    role = Role.STORE

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.steps: dict[str, set[str]] = {}

    @rule(job=JOBS, value=st.integers(-5, 5))
    def create(self, job: str, value: int) -> None:
        result = self.run(self.provider.create_job, NewJob(job, {"v": value}))
        assert result.created == (job not in self.jobs), f"Store rule 1: {result} for {job}"
        if result.created:
            self.jobs[job] = {"v": value}
            self.steps[job] = set()

    @rule(job=JOBS, step=STEPS, inc=st.integers(-3, 3), guard=st.booleans(), wrong=st.booleans())
    def transition(self, job: str, step: str, inc: int, guard: bool, wrong: bool) -> None:
        model = self.jobs.get(job)
        require: dict[str, Any] = {}
        if guard:
            current = model.get("last") if model else None
            require = {"last": "bogus" if wrong else current}
        t = Transition(job, step, set={"last": step}, increment={"v": inc}, require=require,
                       read=("v", "last"), messages=(Message("out", {"step": step}),))
        result = self.run(self.provider.apply_transition, t)
        if model is None:
            expected = TransitionStatus.REJECTED
        elif step in self.steps[job]:
            expected = TransitionStatus.DUPLICATE
        elif guard and wrong:
            expected = TransitionStatus.REJECTED
        else:
            expected = TransitionStatus.APPLIED
            model["v"] += inc
            model["last"] = step
            self.steps[job].add(step)
        assert result.status is expected, f"Store rules 3/4: {result.status} != {expected} for {t}"
        if expected is not TransitionStatus.REJECTED and model is not None:
            want = {k: model[k] for k in ("v", "last") if k in model}
            assert dict(result.fields) == want, f"Store rule 5: read {result.fields} != {want}"
            assert [m.body for m in result.messages] == [{"step": step}], f"Store rule 3: {result}"

    @rule(job=JOBS)
    def get(self, job: str) -> None:
        got = self.run(self.provider.get_job, job)
        assert got == self.jobs.get(job), f"Store rule 7: {got} != {self.jobs.get(job)}"

    @rule(job=JOBS)
    def delete(self, job: str) -> None:
        existed = self.run(self.provider.delete_job, job)
        assert existed == (job in self.jobs), f"delete_job({job}) returned {existed}"
        self.jobs.pop(job, None)
        self.steps.pop(job, None)


class StreamMachine(PortalMachine):
    """Stream rules 2, 3, 5, 6, 9, 10 (and 11 with STREAM_EXTEND) against a model of unread,
    pending and released ids."""

    role = Role.STREAM

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.published: list[str] = []
        self.unread: list[str] = []
        self.pending: dict[str, int] = {}
        self.released: dict[str, int] = {}
        self.acked: set[str] = set()
        self.handed_out: list[Delivery] = []

    def _request(self, consumer: str, count: int) -> ReadRequest:
        return ReadRequest("s", "g", consumer, count=count, visibility_timeout=timedelta(minutes=5))

    @rule(k=st.integers(1, 3))
    def publish(self, k: int) -> None:
        ids = self.run(self.provider.publish, [Message("s", {"i": len(self.published) + i}) for i in range(k)])
        assert len(ids) == k, f"Stream rule 1: {ids}"
        self.published.extend(ids)
        self.unread.extend(ids)

    @rule(consumer=CONSUMERS, count=st.integers(1, 3))
    def read(self, consumer: str, count: int) -> None:
        ready = bool(self.unread or self.released)
        got = self.run(self.provider.read, self._request(consumer, count))
        assert len(got) <= count, f"Stream rule 6: {len(got)} > count {count}"
        assert got or not ready, "Stream rules 4/9: work was ready (unread or released) but read returned none"
        for d in got:
            if d.id in self.released:
                want = self.released.pop(d.id) + 1
                assert d.delivery_count == want, f"Stream rule 9: count {d.delivery_count} != {want}"
            else:
                assert self.unread and d.id == self.unread[0], (
                    f"Stream rules 3/5: got {d.id}, expected next unread {self.unread[:1]} "
                    f"or a released one {sorted(self.released)}"
                )
                self.unread.pop(0)
                assert d.delivery_count == 1, f"Stream rule 4: first delivery count {d.delivery_count}"
            self.pending[d.id] = d.delivery_count
            self.handed_out.append(d)

    @precondition(lambda self: self.pending or self.acked)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        mid = data.draw(st.sampled_from(sorted(self.pending) + sorted(self.acked)), label="ack id")
        n = self.run(self.provider.ack, "s", "g", [mid])
        assert n == (1 if mid in self.pending else 0), f"Stream rule 3: ack({mid}) returned {n}"
        self.pending.pop(mid, None)
        self.acked.add(mid)

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        mid = data.draw(st.sampled_from(sorted(self.pending)), label="release id")
        n = self.run(self.provider.release, "s", "g", [mid])
        assert n == 1, f"Stream rule 9: release({mid}) returned {n}"
        self.released[mid] = self.pending.pop(mid)

    @precondition(
        lambda self: Capability.STREAM_EXTEND in self.provider.capabilities
        and any(d.id not in self.released for d in self.handed_out)
    )
    @rule(data=st.data())
    def extend(self, data: st.DataObject) -> None:
        # Any delivery ever handed out except one released now (renewing it is not defined):
        # current ones are renewed, acked and superseded ones are fenced off by their count.
        d = data.draw(st.sampled_from([d for d in self.handed_out if d.id not in self.released]), label="delivery")
        n = self.run(functools.partial(self.provider.extend, visibility_timeout=timedelta(minutes=5)), [d])
        want = 1 if self.pending.get(d.id) == d.delivery_count else 0
        assert n == want, f"Stream rule 11: extend({d.id} #{d.delivery_count}) returned {n}, not {want}"

    @invariant()
    def counts(self) -> None:
        if not self.published:
            return
        backlog = self.run(self.provider.backlog, "s", "g") if (self.pending or self.acked or self.released) else None
        if backlog is not None:
            want = len(self.unread) + len(self.pending) + len(self.released)
            assert backlog == want, f"Stream rule 10: backlog {backlog} != {want}"
        length = self.run(self.provider.length, "s")
        assert length == len(self.published), f"Stream rule 10: length {length} != {len(self.published)}"
