"""HotMesh providers on NATS: JetStream streams, JetStream KV store, core NATS sub."""

from __future__ import annotations

from hotmesh_nats.store import NatsStore
from hotmesh_nats.stream import NatsStream
from hotmesh_nats.sub import NatsSub

__all__ = ["NatsStore", "NatsStream", "NatsSub"]
