"""Lifecycle shared by the memory providers: naming, options, open/close, namespace data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotmesh.backends.memory._state import MemoryDatabase, database_for
from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import ProviderBase, ProviderInfo, Survives, url_scheme


class MemoryProvider(ProviderBase):
    """Base of the memory providers (one process; the reference model of the contracts)."""

    provider_name = "memory"

    def __init__(
        self, url: str = "memory://", *, namespace: str = "hotmesh", options: Mapping[str, Any] | None = None
    ) -> None:
        if url_scheme(url) != "memory":
            raise ConfigError(f"the memory provider takes memory:// URLs, not {url_scheme(url)}://")
        if options:
            raise ConfigError(f"the memory provider takes no options, got {sorted(options)}")
        if "?" in url:
            raise ConfigError("the memory provider takes no options: remove the query from the memory:// URL")
        self._bind_namespace(namespace)
        self._db_name, self._db = database_for(url)
        self._closed = False

    @property
    def database(self) -> MemoryDatabase:
        """The shared database (the store uses it to recognise a stream on the same URL)."""
        return self._db

    def _data(self) -> dict[str, Any]:
        """This role's dict in this namespace (call with the lock held)."""
        if self._closed:
            raise ProviderError(f"memory://{self._db_name} {self.role} provider is closed")
        space = self._db.namespaces[self._namespace]
        found: dict[str, Any] | None = space.get(self.role)
        if found is None:
            found = space[self.role] = self._empty()
        return found

    def _empty(self) -> dict[str, Any]:
        return {}

    async def open(self) -> None:
        """Nothing to connect to."""
        if self._closed:
            raise ProviderError(f"memory://{self._db_name} {self.role} provider is closed")

    async def aclose(self) -> None:
        """Mark closed."""
        self._closed = True

    async def info(self) -> ProviderInfo:
        """Describe the (lack of) durability."""
        return ProviderInfo(name="memory", durability="none: process memory only", survives=Survives.NOTHING)

    async def purge(self) -> None:
        """Drop this role's data in the namespace."""
        with self._db.lock:
            space = self._db.namespaces.get(self._namespace)
            if space is not None:
                space.pop(self.role, None)
                if not space:
                    self._db.namespaces.pop(self._namespace, None)

    async def is_empty(self) -> bool:
        """True when this role holds nothing in the namespace."""
        with self._db.lock:
            space = self._db.namespaces.get(self._namespace, {})
            data = space.get(self.role)
            return data is None or all(not v for v in data.values())
