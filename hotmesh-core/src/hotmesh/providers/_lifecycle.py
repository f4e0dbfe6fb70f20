"""What every provider implementation would otherwise write again: identity, namespace, ``async with``.

Optional for plugin authors: a provider only has to satisfy the :class:`~hotmesh.providers.Provider`
protocol. The five shipped backends (memory, sqlite, redis, postgres, nats) each had their own
copy of these lines and of the namespace check, with small drifts (one allowed a leading digit);
one copy keeps the rule the configuration enforces the same for every backend.
"""

from __future__ import annotations

import abc
import re
from types import TracebackType
from typing import ClassVar, Self

from hotmesh.errors import ConfigError
from hotmesh.providers._capabilities import Capability

NAMESPACE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
"""A namespace becomes a key prefix, a hash tag, a schema name, a subject token and a bucket
name: plain identifiers of at most 63 characters are valid in all of them (PostgreSQL's limit)."""

_NAMESPACE = re.compile(NAMESPACE_PATTERN)


def check_namespace(namespace: str) -> str:
    """Return ``namespace`` if it matches :data:`NAMESPACE_PATTERN`, else raise ConfigError."""
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise ConfigError(
            f"invalid namespace {namespace!r}: use 1-63 letters, digits or underscores, not starting with a digit"
        )
    return namespace


class ProviderBase(abc.ABC):
    """Base for provider implementations: ``name``, ``namespace``, ``capabilities`` and
    ``async with`` (Provider rules 1, 2, 5), from three class attributes and the namespace.

    Subclasses set ``provider_name`` (the registered name), ``role`` and ``declared`` (the
    capabilities, or override :attr:`capabilities` when they depend on the server), call
    :meth:`_bind_namespace` in ``__init__`` and implement ``open`` and ``aclose``.
    """

    provider_name: ClassVar[str] = ""
    role: ClassVar[str] = ""
    declared: ClassVar[frozenset[Capability]] = frozenset()
    _namespace: str

    def _bind_namespace(self, namespace: str) -> None:
        """Check and keep the namespace every piece of data is scoped by (Provider rule 3)."""
        self._namespace = check_namespace(namespace)

    @property
    def name(self) -> str:
        """The provider's registered name."""
        return self.provider_name

    @property
    def namespace(self) -> str:
        """The namespace all data is scoped by (Provider rule 3)."""
        return self._namespace

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Declared capabilities (Provider rule 2)."""
        return self.declared

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and verify the backend (Provider rule 1)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release all resources (Provider rule 5)."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
