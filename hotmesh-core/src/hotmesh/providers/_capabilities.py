"""Optional behaviours a provider declares in code.

The engine reads ``provider.capabilities`` to choose a strategy; the conformance kit reads it to
skip (with the reason shown) what is not declared, and checks that an undeclared operation raises
:class:`hotmesh.errors.CapabilityNotSupportedError`.
"""

from __future__ import annotations

import enum


class Capability(enum.StrEnum):
    """Capabilities a provider instance may declare (they may depend on the server)."""

    STORE_TTL = "store.ttl"
    """Jobs and cached values expire after their TTL."""
    STORE_CLOCK = "store.clock"
    """``Store.now()`` reads the server's clock (otherwise it is this host's clock)."""
    ATOMIC_STORE_AND_STREAM = "store.atomic_outbox"
    """The store can commit a transition and enqueue its messages on a given stream in one
    atomic operation when ``Store.can_publish_to(stream)`` is true (Store rule 6)."""
    MULTI_PROCESS = "provider.multi_process"
    """Several processes may share the data (memory is single-process)."""
    DURABLE = "provider.durable"
    """Committed data survives a process restart."""
    CLUSTER_SAFE_KEYS = "provider.cluster_safe_keys"
    """All keys of one job share a hash slot (Redis Cluster)."""
    STREAM_DELAY = "stream.delay"
    """``Stream.release(..., delay=)`` defers redelivery."""
    STREAM_EXTEND = "stream.extend"
    """``Stream.extend`` keeps deliveries still being worked on from being redelivered (Stream
    rule 11): the engine heartbeats long tasks, so a short visibility timeout (fast recovery
    after a crash) does not cut off a long activity."""
    SUB_PATTERNS = "sub.patterns"
    """``Sub.subscribe(pattern, pattern=True)`` matches topics with ``*`` wildcards."""
    SEARCH_NATIVE_QUERY = "search.native_query"
    """``Search.native_query`` passes a backend-native query string through."""
    SEARCH_SORT = "search.sort"
    """Queries may sort by sortable fields."""
