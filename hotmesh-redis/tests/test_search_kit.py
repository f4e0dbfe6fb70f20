"""The kit's search suite against a private Redis 8.2 + redisearch (every run, CI included);
the whole kit there on request; the clear error on the shared server without the query engine."""

from __future__ import annotations

import re

import pytest

from hotmesh.errors import CapabilityNotSupportedError
from hotmesh_redis.search import RedisSearch

from .conftest import FULL_KIT_ENV, PrivateRedis, full_kit, run_kit

pytestmark = pytest.mark.anyio

MIN_SEARCH_PASSED = 60
"""The search suite (test_search plus the provider rules for the search role) has ~80 tests; far
fewer passing means the kit skipped them, e.g. because the query engine was not found."""


async def test_search_needs_the_query_engine() -> None:
    search = RedisSearch("redis://127.0.0.1:6379/0", namespace="t_nosearch")
    try:
        with pytest.raises(CapabilityNotSupportedError, match="Redis 8|Redis Stack"):
            await search.open()
    finally:
        await search.aclose()


def _passed(output: str) -> int:
    found = re.search(r"(\d+) passed", output)
    return int(found.group(1)) if found else 0


def test_kit_search_suite_on_redis_with_query_engine(search_redis: PrivateRedis) -> None:
    """The kit's search suite, and the provider rules for the search role, all run (none skipped
    for a missing query engine) and pass; a few seconds."""
    result = run_kit(
        search_redis.url,
        "hotmesh_conformance.suite.test_search",
        "hotmesh_conformance.suite.test_provider",
        "-k", "search", "-rs",
    )  # fmt: skip
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert "search unavailable" not in result.stdout, output
    assert _passed(result.stdout) >= MIN_SEARCH_PASSED, output


@pytest.mark.skipif(
    not full_kit(),
    reason=f"the whole kit on Redis 8.2 takes ~50 s on top of CI's run on the shared Redis; set {FULL_KIT_ENV}=1",
)
def test_whole_kit_on_redis_with_query_engine(search_redis: PrivateRedis) -> None:
    result = run_kit(search_redis.url, "hotmesh_conformance.suite", "-rs")
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert "search unavailable" not in result.stdout, output


def test_kit_meshdata_suite_on_redis_with_query_engine(search_redis: PrivateRedis) -> None:
    """MeshData (records, find_where against a brute-force oracle, hostile values, ttl,
    namespaces) on the Redis query engine: every test runs, none skipped."""
    result = run_kit(search_redis.url, "hotmesh_conformance.suite.test_meshdata", "-rs")
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    assert _passed(result.stdout) >= 7 and "skipped" not in result.stdout, output
