"""The pluggy hook through which packages register providers.

Shaped after tox's and llm's ``register`` hooks: the hook receives a registry and only describes
providers. Drivers are imported when a provider is selected, never at discovery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from hotmesh.providers._registry import ProviderRegistry

PROJECT_NAME = "hotmesh"
"""The pluggy project name and the entry-point group packages register under."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def hotmesh_register_providers(registry: ProviderRegistry) -> None:
    """Add ProviderSpecs to *registry*; must not import drivers, read configuration or do I/O."""
