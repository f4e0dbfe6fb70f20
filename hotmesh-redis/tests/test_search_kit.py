"""The kit's search suite, and the whole kit, against a private server with the query engine;
and the clear error on the shared server without it."""

from __future__ import annotations

import pytest

from hotmesh.errors import CapabilityNotSupportedError
from hotmesh_redis.search import RedisSearch

from .conftest import PrivateRedis, run_kit

pytestmark = pytest.mark.anyio


async def test_search_needs_the_query_engine() -> None:
    search = RedisSearch("redis://127.0.0.1:6379/0", namespace="t_nosearch")
    try:
        with pytest.raises(CapabilityNotSupportedError, match="Redis 8|Redis Stack"):
            await search.open()
    finally:
        await search.aclose()


def test_kit_on_redis_with_query_engine(search_redis: PrivateRedis) -> None:
    result = run_kit(search_redis.url, "hotmesh_conformance.suite")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
