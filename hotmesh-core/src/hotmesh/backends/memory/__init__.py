"""The ``memory://`` providers: one process, no durability; the executable reading of the rules.

Features: all four roles; STORE_TTL, ATOMIC_STORE_AND_STREAM (store and stream of the same
``memory://name``), STREAM_DELAY, SUB_PATTERNS, SEARCH_SORT. Not MULTI_PROCESS, not DURABLE.

Connection string: ``memory://`` or ``memory://<name>``: providers with the same name share data.
Options: none.
"""

from __future__ import annotations

from hotmesh.backends.memory.search import MemorySearch
from hotmesh.backends.memory.store import MemoryStore
from hotmesh.backends.memory.stream import MemoryStream
from hotmesh.backends.memory.sub import MemorySub

__all__ = ["MemorySearch", "MemoryStore", "MemoryStream", "MemorySub"]
