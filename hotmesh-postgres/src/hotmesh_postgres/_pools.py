"""One connection pool per process for every role on the same server.

Each role used to open its own pool (up to ``pool_max_size`` connections each), so one process
serving MeshFlow, MeshCall and MeshData held 20-40 connections and a few processes filled a
server's ``max_connections`` (100 by default). The roles of a process now share one pool per
(event loop, URL, pool options), counted by users and closed with the last one; every statement
is short (blocking reads wait on LISTEN, not on a pooled connection), so sharing costs nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from hotmesh_postgres._options import PostgresOptions

Pool = AsyncConnectionPool[AsyncConnection[Any]]
_Key = tuple[int, str, int, int, float]

_pools: dict[_Key, tuple[Pool, int]] = {}


def _key(url: str, options: PostgresOptions) -> _Key:
    loop = id(asyncio.get_running_loop())
    return (loop, url, options.pool_min_size, options.pool_max_size, options.connect_timeout)


async def acquire(url: str, options: PostgresOptions) -> Pool:
    """The shared pool for ``url`` and these options in this event loop (opened on first use)."""
    key = _key(url, options)
    found = _pools.get(key)
    if found is not None and not found[0].closed:
        _pools[key] = (found[0], found[1] + 1)
        return found[0]
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=options.pool_min_size,
        max_size=options.pool_max_size,
        kwargs={"autocommit": True, "connect_timeout": max(1, int(options.connect_timeout))},
        timeout=options.connect_timeout,
        open=False,
        name="hotmesh",
    )
    _pools[key] = (pool, 1)
    await pool.open(wait=False)
    return pool


async def release(url: str, options: PostgresOptions, pool: Pool) -> None:
    """One user fewer; the last one closes the pool."""
    try:
        key = _key(url, options)
    except RuntimeError:  # no running loop: nothing shared to account for
        await pool.close()
        return
    found = _pools.get(key)
    if found is None or found[0] is not pool:
        await pool.close()
        return
    if found[1] > 1:
        _pools[key] = (pool, found[1] - 1)
        return
    del _pools[key]
    await pool.close()
