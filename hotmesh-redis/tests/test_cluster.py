"""A private 3-master Redis Cluster (issue 6, deliverable 3) and the whole kit on it.

URL form: ``redis+cluster://host:port`` (any node as the seed). Search is not offered on a
cluster (the open-source query engine does not span nodes), so the kit uses memory:// for it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotmesh.providers import Message
from hotmesh_redis import RedisStore, RedisStream

from .conftest import PrivateRedis, full_kit, in_ci, run_kit, unavailable


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three masters on free ports in a temporary directory; yields the seed URL."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        unavailable("redis-server/redis-cli are not installed (Debian: apt-get install redis-server)")
    base = tmp_path_factory.mktemp("cluster")
    nodes: list[PrivateRedis] = []
    try:
        for i in range(3):
            d = base / f"n{i}"
            d.mkdir()
            node = PrivateRedis(binary, Path(d), "--cluster-enabled", "yes",
                                "--cluster-config-file", "nodes.conf", "--appendonly", "no")
            node.start()
            nodes.append(node)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = subprocess.run([cli, "-p", str(nodes[0].port), "cluster", "info"],
                                 capture_output=True, text=True).stdout
            if "cluster_state:ok" in out:
                break
            time.sleep(0.2)
        yield f"redis+cluster://127.0.0.1:{nodes[0].port}"
    finally:
        for node in nodes:
            node.stop()


MIN_WHOLE_KIT_PASSED = 200
"""The whole kit has ~220 tests (6 skip by design on Redis: undeclared-capability checks and the
like); far fewer passing means whole suites were skipped."""


PROVIDER_LEVEL = [f"hotmesh_conformance.suite.{m}" for m in ("test_provider", "test_store", "test_stream",
                                                                  "test_sub", "test_stateful")]  # fmt: skip
"""The provider-level suites (~20 s on the cluster)."""


@pytest.mark.timeout(900)  # the whole kit: ~4.5-6 min on 2 cores since issue 10's last fault tests (the child pytest has 900 s too)
def test_kit_on_cluster(cluster: str) -> None:
    """The whole kit on the cluster: provider-level, MeshCall, MeshFlow, MeshData, faults, limits.

    Search comes from memory:// (RedisSearch is not offered on a cluster: the open-source query
    engine does not span nodes), so test_search and MeshData's finds run on the memory provider;
    every other role is the cluster. ~4.5-6 min on the 2-core CI machine; it runs under
    CI=true and with HOTMESH_REDIS_FULL_KIT=1. Other local runs take the provider-level suites.
    """
    whole = full_kit() or in_ci()
    suites = ["hotmesh_conformance.suite"] if whole else PROVIDER_LEVEL
    result = run_kit(cluster, *suites, "--hotmesh-search-url=memory://", "-rs")
    output = result.stdout[-4000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    if whole:
        passed = re.search(r"(\d+) passed", result.stdout)
        assert passed is not None and int(passed.group(1)) >= MIN_WHOLE_KIT_PASSED, output


@pytest.mark.anyio
async def test_cluster_callers_beyond_pool_size_wait(cluster: str) -> None:
    """RedisCluster's node pools raise MaxConnectionsError when full; the provider makes callers
    wait instead (commands and pipelines alike)."""
    url = f"{cluster}?pool_size=3"
    async with RedisStore(url, namespace="t_cpool") as store, RedisStream(url, namespace="t_cpool") as stream:
        jobs = await asyncio.gather(*(store.get_job(f"j{i}") for i in range(300)))
        assert jobs == [None] * 300
        await asyncio.gather(*(stream.publish([Message(f"s{i}", {"i": i}) for i in range(5)]) for _ in range(100)))
        await stream.purge()
