"""NatsSub against the Sub rules."""

from __future__ import annotations

import pytest

from hotmesh.providers import SubMessage
from hotmesh_nats.sub import NatsSub

pytestmark = pytest.mark.anyio


async def test_exact_and_pattern(sub: NatsSub) -> None:
    """Rules 1, 2, 3, 5: ``*`` spans dots."""
    exact = await sub.subscribe("job.1.done")
    pat = await sub.subscribe("job.*", pattern=True)
    other = await sub.subscribe("x*y", pattern=True)
    await sub.publish("job.1.done", {"a": [1, {"b": None}]})
    await sub.publish("jobs", {"n": 2})
    assert await exact.get(2) == SubMessage("job.1.done", {"a": [1, {"b": None}]})
    assert await pat.get(2) == SubMessage("job.1.done", {"a": [1, {"b": None}]})
    assert await pat.get(0.2) is None
    assert await other.get(0.2) is None
    await exact.aclose()
    await sub.publish("job.1.done", {})
    assert await exact.get(0.2) is None
    assert [m async for m in exact] == []


async def test_namespaces_isolated(sub: NatsSub) -> None:
    """Provider rule 3."""
    async with NatsSub("nats://127.0.0.1:4222", namespace="t_other_ns", options={}) as other:
        s = await other.subscribe("*", pattern=True)
        await sub.publish("t", {"x": 1})
        assert await s.get(0.3) is None
