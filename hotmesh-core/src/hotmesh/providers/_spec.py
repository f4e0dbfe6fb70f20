"""ProviderSpec: a lazy description of one provider for one role."""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hotmesh.errors import ConfigError


class Role(enum.StrEnum):
    """The four provider roles."""

    STORE = "store"
    STREAM = "stream"
    SUB = "sub"
    SEARCH = "search"


ProviderFactory = Callable[..., Any]
"""``factory(url, *, namespace, options) -> provider``; must not do I/O (Provider rule 1)."""


@dataclass(frozen=True)
class ProviderSpec:
    """Describes a provider without importing it.

    Attributes:
        role: the role it serves.
        name: provider name, e.g. ``"redis"``; also the entry-point name by convention.
        schemes: URL schemes it accepts, e.g. ``("redis", "rediss", "unix")``.
        factory: ``"module:attribute"`` of a callable ``(url, *, namespace, options)``.
        distribution: the distribution that ships it (for install hints and listings).
        capabilities: capabilities it may declare (instances may declare fewer, Provider rule 2).
        description: one line for ``python -m hotmesh providers``.
    """

    role: Role
    name: str
    schemes: tuple[str, ...]
    factory: str
    distribution: str
    capabilities: tuple[str, ...] = ()
    description: str = ""

    def load(self) -> ProviderFactory:
        """Import and return the factory (this is where a driver is first imported)."""
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
            factory: ProviderFactory = getattr(module, attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"the {self.role} provider {self.name!r} from {self.distribution} cannot be loaded"
                f" ({self.factory}): {exc}"
            ) from exc
        return factory

    def create(self, url: str, *, namespace: str, options: Mapping[str, Any]) -> Any:
        """Build a provider instance (no I/O)."""
        return self.load()(url, namespace=namespace, options=dict(options))
