"""HotMesh providers on Redis: store (Lua), stream (consumer groups), sub (pub/sub), search."""

from __future__ import annotations

from hotmesh_redis.store import RedisStore
from hotmesh_redis.stream import RedisStream
from hotmesh_redis.sub import RedisSub

__all__ = ["RedisStore", "RedisStream", "RedisSub"]
