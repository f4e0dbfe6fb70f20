"""Capability gating and small helpers shared by the suites.

``requires`` and ``forbids`` are markers read by the role fixtures *after* the provider is opened,
because capabilities may depend on the server (Provider rule 2). A declared capability the test
needs is a skip with a reason naming provider and capability; ``forbids`` runs a test only when the
capability is NOT declared, to check that using it raises CapabilityNotSupportedError: that turns
every skip into a verified claim.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import pytest

from hotmesh.providers import Capability

REQUIRES_MARK = "hotmesh_requires"
FORBIDS_MARK = "hotmesh_forbids"


def requires(*capabilities: Capability) -> pytest.MarkDecorator:
    """Mark a test that runs only when its provider declares every capability given."""
    mark: pytest.MarkDecorator = getattr(pytest.mark, REQUIRES_MARK)(*capabilities)
    return mark


def forbids(*capabilities: Capability) -> pytest.MarkDecorator:
    """Mark a test that runs only when its provider declares none of the capabilities given."""
    mark: pytest.MarkDecorator = getattr(pytest.mark, FORBIDS_MARK)(*capabilities)
    return mark


def capability_role(capability: Capability) -> str:
    """The role a capability belongs to ("store", ..., or "provider" for every role)."""
    return str(capability.value).split(".", 1)[0]


def _applies(capability: Capability, role: str) -> bool:
    owner = capability_role(capability)
    return owner in (role, "provider")


def gate(node: pytest.Item, role: str, provider: object) -> None:
    """Skip ``node`` if its requires/forbids marks do not hold for ``provider`` of ``role``."""
    declared: frozenset[Capability] = frozenset(getattr(provider, "capabilities", frozenset()))
    name = f"{type(provider).__name__} ({getattr(provider, 'name', '?')})"
    for mark in node.iter_markers(REQUIRES_MARK):
        for cap in _caps(mark.args):
            if _applies(cap, role) and cap not in declared:
                pytest.skip(f"{name} does not declare {cap.value}")
    for mark in node.iter_markers(FORBIDS_MARK):
        for cap in _caps(mark.args):
            if _applies(cap, role) and cap in declared:
                pytest.skip(f"{name} declares {cap.value}; this test checks the undeclared case")


def skip_unless(provider: object, capability: Capability) -> None:
    """In a test body: skip unless ``provider`` declares ``capability``."""
    declared = frozenset(getattr(provider, "capabilities", frozenset()))
    if capability not in declared:
        pytest.skip(f"{type(provider).__name__} does not declare {capability.value}")


def _caps(args: Iterable[object]) -> list[Capability]:
    return [Capability(str(a)) for a in args]


def new_namespace() -> str:
    """A fresh namespace ``t_<hex>`` (letters, digits, underscore)."""
    return f"t_{secrets.token_hex(5)}"
