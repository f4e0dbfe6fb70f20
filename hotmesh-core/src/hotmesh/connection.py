"""Connection: the four opened providers a HotMesh process works through.

Instances first, names second (style-anchors habit 7): pass provider instances directly, or let
the configuration's URLs pick them through the registry.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from hotmesh._payload import check_size
from hotmesh.config import HotMeshConfig, load_config
from hotmesh.errors import CapabilityNotSupportedError, ConfigError, HotMeshError, ProviderNotFoundError
from hotmesh.providers import (
    Provider,
    ProviderRegistry,
    Role,
    Search,
    Store,
    Stream,
    Sub,
    default_registry,
)

__all__ = ["Connection", "connect"]


class Connection:
    """Opened store, stream, sub and (optional) search providers sharing one namespace."""

    def __init__(
        self,
        config: HotMeshConfig | None = None,
        *,
        store: Store | None = None,
        stream: Stream | None = None,
        sub: Sub | None = None,
        search: Search | None = None,
        registry: ProviderRegistry | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        self._given: dict[Role, Any] = {
            role: p
            for role, p in ((Role.STORE, store), (Role.STREAM, stream), (Role.SUB, sub), (Role.SEARCH, search))
            if p is not None
        }
        self._registry = registry
        self._providers: dict[Role, Any] = {}
        self._owned: list[Provider] = []
        self._search_error: HotMeshError | None = None

    async def open(self) -> Self:
        """Build and open every role's provider; on failure close what was opened and re-raise."""
        if self._providers:
            return self
        registry = self._registry or default_registry()
        built: dict[Role, Any] = {}
        try:
            for role in Role:
                provider = self._given.get(role)
                if provider is None:
                    try:
                        provider = registry.create(
                            role,
                            self.config.url_for(role),
                            namespace=self.config.namespace,
                            options=self.config.options.get(role.value, {}),
                        )
                    except ProviderNotFoundError as exc:
                        if self._search_is_optional(role):
                            self._search_error = exc  # search is optional unless asked for
                            continue
                        raise
                    try:
                        await provider.open()
                    except CapabilityNotSupportedError as exc:
                        # e.g. redis:// on a server without the query engine: the backend serves
                        # search in general, this server does not.
                        await provider.aclose()
                        if self._search_is_optional(role):
                            self._search_error = exc
                            continue
                        raise
                    self._owned.append(provider)
                built[role] = provider
        except BaseException:
            await self._close_owned()
            raise
        self._providers = built
        return self

    def _search_is_optional(self, role: Role) -> bool:
        """Search may be missing unless its URL was given explicitly or it was declared required."""
        return role is Role.SEARCH and not (self.config.explicit(role) or self.config.search_required)

    def _get(self, role: Role) -> Any:
        if not self._providers:
            raise ConfigError("the connection is not open: use 'async with' or 'await connection.open()'")
        return self._providers[role]

    @property
    def store(self) -> Store:
        """The store provider."""
        provider: Store = self._get(Role.STORE)
        return provider

    @property
    def stream(self) -> Stream:
        """The stream provider."""
        provider: Stream = self._get(Role.STREAM)
        return provider

    @property
    def sub(self) -> Sub:
        """The sub provider."""
        provider: Sub = self._get(Role.SUB)
        return provider

    @property
    def search(self) -> Search:
        """The search provider; CapabilityNotSupportedError when none serves the configuration."""
        if not self._providers:
            self._get(Role.SEARCH)
        provider: Search | None = self._providers.get(Role.SEARCH)
        if provider is None:
            if isinstance(self._search_error, CapabilityNotSupportedError):
                raise self._search_error  # the backend's own explanation (what server is needed)
            raise CapabilityNotSupportedError(
                self.config.url_for(Role.SEARCH).split("://")[0], "search", str(self._search_error or "")
            )
        return provider

    def check_payload(self, value: Any, what: str) -> None:
        """Raise PayloadTooLargeError naming ``what`` and the limit when ``value`` is too big.

        The limit is ``max_payload_bytes`` or, when lower, the ``payload_limit`` a provider
        declares for what its backend can carry (promise C7: fail at the call site, not in a
        worker). Checked before anything is written.
        """
        limit, source = self.config.max_payload_bytes, "max_payload_bytes / HOTMESH_MAX_PAYLOAD_BYTES"
        for provider in self._providers.values():
            own = getattr(provider, "payload_limit", None)
            if isinstance(own, int) and not isinstance(own, bool) and own < limit:
                reason = getattr(provider, "payload_limit_reason", "") or f"the {provider.name} {provider.role}"
                limit, source = own, str(reason)
        check_size(value, what, limit, source)

    @property
    def namespace(self) -> str:
        """The namespace every role is scoped by."""
        return self.config.namespace

    async def _close_owned(self) -> None:
        owned, self._owned = self._owned, []
        for provider in reversed(owned):
            await provider.aclose()

    async def aclose(self) -> None:
        """Close the providers this connection created (not the instances passed in)."""
        self._providers = {}
        await self._close_owned()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def connect(
    url: str | None = None,
    *,
    store: str | Store | None = None,
    stream: str | Stream | None = None,
    sub: str | Sub | None = None,
    search: str | Search | None = None,
    namespace: str | None = None,
) -> Connection:
    """Open a connection from URLs and/or provider instances (see :func:`hotmesh.config.load_config`)."""
    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    config = load_config(
        url=url,
        store=text(store),
        stream=text(stream),
        sub=text(sub),
        search=text(search),
        namespace=namespace,
    )
    connection = Connection(
        config,
        store=store if not isinstance(store, str) else None,
        stream=stream if not isinstance(stream, str) else None,
        sub=sub if not isinstance(sub, str) else None,
        search=search if not isinstance(search, str) else None,
    )
    return await connection.open()
