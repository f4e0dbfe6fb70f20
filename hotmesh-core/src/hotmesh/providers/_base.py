"""What every provider, whatever its role, offers: identity, capabilities, lifecycle, cleanup."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from hotmesh.providers._capabilities import Capability
from hotmesh.providers._types import ProviderInfo


@runtime_checkable
class Provider(Protocol):
    """An async resource bound to one namespace of one backend.

    Rules (cited by the kit as "Provider rule N"):

    1. A provider is constructed without I/O. ``await open()`` connects and checks the backend;
       an unreachable or misconfigured backend raises :class:`~hotmesh.errors.ProviderError`
       (or :class:`~hotmesh.errors.ConfigError`) whose message names the URL without password.
       ``open()`` twice is harmless. ``async with provider:`` opens and closes.
    2. ``capabilities`` is read from the instance after ``open()``; it may depend on the server.
    3. Everything a provider stores is scoped by its ``namespace``: two providers of the same
       backend with different namespaces never see each other's data.
    4. ``purge()`` deletes everything in the namespace; afterwards ``is_empty()`` is true.
    5. ``aclose()`` releases connections; it is idempotent. Using a closed provider raises
       ProviderError.
    6. Driver errors are translated to :mod:`hotmesh.errors` classes with the driver error as
       ``__cause__``; cancellation (``CancelledError``) is never swallowed.
    """

    @property
    def name(self) -> str:
        """The provider's registered name (``"sqlite"``, ``"redis"``)."""
        ...

    @property
    def namespace(self) -> str:
        """The namespace all data is scoped by."""
        ...

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Declared optional behaviours (rule 2)."""
        ...

    async def open(self) -> None:
        """Connect and verify the backend (rule 1)."""
        ...

    async def aclose(self) -> None:
        """Release all resources (rule 5)."""
        ...

    async def __aenter__(self) -> Self:
        """Open and return self."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close."""
        ...

    async def info(self) -> ProviderInfo:
        """Describe the backend: server version and real durability (promise C9)."""
        ...

    async def purge(self) -> None:
        """Delete everything this provider stored in its namespace (rule 4)."""
        ...

    async def is_empty(self) -> bool:
        """True when the namespace holds no data of this role (rule 4)."""
        ...
