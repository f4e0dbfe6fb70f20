"""Per-role 'write something, then look for it' helpers used by the Provider rule tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hotmesh.errors import ValidationError
from hotmesh.providers import (
    FieldType,
    IndexSpec,
    Message,
    NewJob,
    Query,
    ReadRequest,
    Role,
    SearchField,
)

INDEX = IndexSpec("things", (SearchField("kind", FieldType.TAG),))


async def write_something(role: Role, provider: Any) -> None:
    """Store one item of the role's kind (Sub stores nothing: Sub rule 1)."""
    if role is Role.STORE:
        await provider.create_job(NewJob("job-1", {"a": 1}))
        await provider.set_cached("k", {"v": 1}, ttl=None)
    elif role is Role.STREAM:
        await provider.publish([Message("s1", {"n": 1})])
    elif role is Role.SEARCH:
        await provider.create_index(INDEX)
        await provider.upsert("things", "d1", {"kind": "x"})


async def sees_something(role: Role, provider: Any) -> bool:
    """Whether what :func:`write_something` wrote is visible through ``provider``."""
    if role is Role.STORE:
        found = await provider.get_job("job-1")
        cached, _ = await provider.get_cached("k")
        return found is not None or bool(cached)
    if role is Role.STREAM:
        got = await provider.read(
            ReadRequest("s1", "g", "c", count=5, visibility_timeout=timedelta(seconds=30))
        )
        return bool(got)
    if role is Role.SEARCH:
        try:
            result = await provider.query(Query("things"))
        except ValidationError:  # Search rule 9: the index does not exist there
            return False
        return bool(result.total > 0)
    return False
