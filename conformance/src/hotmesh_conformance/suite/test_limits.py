"""Payload limits per backend (catalogue I-3, promise C7): whatever a backend's own limits are
(NATS ``max_payload``, 1 MiB by default, also caps JetStream KV values; PostgreSQL NOTIFY
payloads under 8,000 bytes; Redis 512 MB bulk strings), a payload under ``max_payload_bytes``
either round-trips byte-exact through every path (start arguments, an activity's argument and
result, a signal, the workflow's result and its announcement) or fails at the call site with
``PayloadTooLargeError`` naming the limit, never with a backend error or a half-written workflow.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hotmesh import MeshFlow, errors, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.providers import Role, default_registry
from hotmesh_conformance import _flows

pytestmark = pytest.mark.anyio

QUEUE = "kitlimits"
LIMIT = 1_048_576
"""The default ``max_payload_bytes``."""
@pytest.fixture
async def limits_config(make_provider: Any, hotmesh_urls: dict[Role, str], hotmesh_namespace: str) -> AsyncIterator[HotMeshConfig]:
    for role in (Role.STORE, Role.STREAM, Role.SUB):
        await make_provider(role)
    yield load_config(
        url=hotmesh_urls[Role.STORE],
        store=hotmesh_urls[Role.STORE],
        stream=hotmesh_urls[Role.STREAM],
        sub=hotmesh_urls[Role.SUB],
        namespace=hotmesh_namespace,
        environ={},
    )
    await MeshFlow.shutdown(grace=1.0)


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(7_000, id="7000-under-NOTIFY"),
        pytest.param(9_000, id="9000-over-NOTIFY"),
        pytest.param(300_000, id="300k"),
        pytest.param(LIMIT // 2, id="half-the-limit"),
        pytest.param(LIMIT - 4_096, id="just-under-the-limit"),
    ],
)
async def test_payloads_under_the_limit_round_trip_or_fail_naming_the_limit(
    limits_config: HotMeshConfig, size: int, request: pytest.FixtureRequest
) -> None:
    """I-3 (C7): a ``size``-byte string as start argument, activity argument and result, signal
    data and workflow result: byte-exact round trip, or PayloadTooLargeError at the call site
    naming the limit (and nothing written)."""
    store = default_registry().for_url(Role.STORE, limits_config.url_for(Role.STORE)).name
    await MeshFlow.Worker.create(connection=limits_config, task_queue=QUEUE, workflow=_flows.ALL)
    client = MeshFlow.Client(connection=limits_config)
    value = "x" * size
    sid = f"big-{uuid.uuid4().hex[:8]}"
    wid = f"big-{uuid.uuid4().hex[:8]}"
    try:
        handle = await client.workflow.start(_flows.echo, args=[value, sid], task_queue=QUEUE, workflow_id=wid)
    except errors.PayloadTooLargeError as exc:
        assert f"{LIMIT:,}" in str(exc) or "limit" in str(exc), exc
        if store == "nats":  # its store lowers the limit: one KV value holds the whole workflow
            assert "max_payload" in str(exc), exc
        with pytest.raises(errors.WorkflowNotFoundError):
            await client.workflow.get_handle(workflow_id=wid).status()
        return
    try:
        await client.signal(sid, value)
    except errors.PayloadTooLargeError as exc:
        assert "limit" in str(exc), exc
        await handle.interrupt()
        return
    result = await handle.result(timeout=60)
    assert result == value, "the payload did not round-trip byte-exact"
    events = await handle.history()
    assert [e["status"] for e in events] == ["completed", "completed"]
