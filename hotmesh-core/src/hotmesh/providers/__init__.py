"""The provider SPI: the only part of hotmesh a backend package imports (with hotmesh.errors).

It holds the four role contracts (:class:`Store`, :class:`Stream`, :class:`Sub`, :class:`Search`),
the value types that cross the boundary, :class:`Capability`, and discovery
(:class:`ProviderSpec`, :data:`hookimpl`, :class:`ProviderRegistry`). Each contract's docstring
lists numbered rules; the conformance kit cites them.

A backend package registers its providers with one hook::

    from hotmesh.providers import ProviderSpec, Role, hookimpl

    @hookimpl
    def hotmesh_register_providers(registry):
        registry.add(ProviderSpec(role=Role.STORE, name="toy", schemes=("toy",),
                                  factory="hotmesh_toy:ToyStore", distribution="hotmesh-toy"))

and declares the module under the ``hotmesh`` entry-point group.
"""

from __future__ import annotations

from hotmesh.providers._base import Provider
from hotmesh.providers._capabilities import Capability
from hotmesh.providers._hookspecs import hookimpl, hookspec
from hotmesh.providers._json import check_json, dumps, loads
from hotmesh.providers._lifecycle import NAMESPACE_PATTERN, ProviderBase, check_namespace
from hotmesh.providers._registry import (
    KNOWN_DISTRIBUTIONS,
    ProviderRegistry,
    default_registry,
    invalid_option,
    url_scheme,
)
from hotmesh.providers._search_checks import check_search_value, check_search_where, is_number
from hotmesh.providers._spec import ProviderFactory, ProviderSpec, Role
from hotmesh.providers._types import (
    And,
    ClaimedTimer,
    Condition,
    CreateResult,
    DeadLetter,
    Delivery,
    FieldType,
    Hit,
    IndexSpec,
    JSONObject,
    JSONValue,
    Message,
    NewJob,
    Op,
    Or,
    ProviderInfo,
    Query,
    QueryResult,
    ReadRequest,
    SearchField,
    Signal,
    Survives,
    Timer,
    Transition,
    TransitionResult,
    TransitionStatus,
    Waiter,
    Where,
)
from hotmesh.providers.search import Search
from hotmesh.providers.store import Store
from hotmesh.providers.stream import ExtendingStream, Stream
from hotmesh.providers.sub import Sub, SubMessage, Subscription

__all__ = [
    "KNOWN_DISTRIBUTIONS",
    "NAMESPACE_PATTERN",
    "And",
    "Capability",
    "ClaimedTimer",
    "Condition",
    "CreateResult",
    "DeadLetter",
    "ExtendingStream",
    "Delivery",
    "FieldType",
    "Hit",
    "IndexSpec",
    "JSONObject",
    "JSONValue",
    "Message",
    "NewJob",
    "Op",
    "Or",
    "Provider",
    "ProviderBase",
    "ProviderFactory",
    "ProviderInfo",
    "ProviderRegistry",
    "ProviderSpec",
    "Query",
    "QueryResult",
    "ReadRequest",
    "Role",
    "Search",
    "SearchField",
    "Signal",
    "Store",
    "Stream",
    "Sub",
    "SubMessage",
    "Subscription",
    "Survives",
    "Timer",
    "Transition",
    "TransitionResult",
    "TransitionStatus",
    "Waiter",
    "Where",
    "check_json",
    "check_namespace",
    "check_search_value",
    "check_search_where",
    "default_registry",
    "dumps",
    "hookimpl",
    "hookspec",
    "invalid_option",
    "is_number",
    "loads",
    "url_scheme",
]
