"""Process-wide connections and engines shared by MeshCall and MeshFlow (one per configuration)."""

from __future__ import annotations

import asyncio
from typing import Any

from hotmesh.config import HotMeshConfig, load_config
from hotmesh.connection import Connection
from hotmesh.engine.engine import Engine
from hotmesh.providers import Role

ConnectionLike = Connection | HotMeshConfig | str | None
"""A Connection, a URL, a HotMeshConfig, or None for the configured default."""


class _Registry:
    """Process-wide connections and engines, one per distinct configuration."""

    def __init__(self) -> None:
        self.connections: dict[object, Connection] = {}
        self.engines: dict[int, Engine] = {}
        self.callbacks: dict[tuple[int, str], Any] = {}
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    @property
    def lock(self) -> asyncio.Lock:
        """One lock per event loop: an asyncio.Lock used in one loop cannot be awaited in another
        (a process may run several ``asyncio.run`` in turn)."""
        loop = asyncio.get_running_loop()
        found = self._locks.get(loop)
        if found is None:
            self._locks = {k: v for k, v in self._locks.items() if not k.is_closed()}
            found = self._locks[loop] = asyncio.Lock()
        return found

    async def connection(self, given: ConnectionLike) -> Connection:
        if isinstance(given, Connection):
            return await given.open()
        config = load_config(url=given) if isinstance(given, str) or given is None else given
        key = (tuple(config.url_for(r) for r in Role), config.namespace)
        async with self.lock:
            found = self.connections.get(key)
            if found is None:
                found = await Connection(config).open()
                self.connections[key] = found
            return found

    def engine(self, connection: Connection) -> Engine:
        engine = self.engines.get(id(connection))
        if engine is None:
            engine = self.engines[id(connection)] = Engine(connection)
        return engine

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop every engine (in-flight work finishes or is released), then close connections."""
        engines, self.engines = list(self.engines.values()), {}
        await asyncio.gather(*(e.stop(grace) for e in engines))
        connections, self.connections = list(self.connections.values()), {}
        for connection in connections:
            await connection.aclose()
        self.callbacks.clear()


runtime = _Registry()
