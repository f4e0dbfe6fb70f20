"""Stateful model tests: random operation sequences on a provider compared with a model."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from hotmesh.errors import ProviderNotFoundError
from hotmesh.providers import Role, default_registry
from hotmesh_conformance.machines import StoreMachine, StreamMachine


def _served(role: Role, url: str) -> None:
    try:
        default_registry().for_url(role, url)
    except ProviderNotFoundError as exc:
        pytest.skip(str(exc))


def test_store_machine(hotmesh_urls: dict[Role, str]) -> None:
    """Store rules 1, 3, 4, 5, 7: create/transition/get/delete sequences agree with a dict model."""
    url = hotmesh_urls[Role.STORE]
    _served(Role.STORE, url)
    run_state_machine_as_test(
        lambda: StoreMachine(url),  # type: ignore[arg-type]  # hypothesis accepts a factory
        settings=settings(stateful_step_count=25),
    )


def test_stream_machine(hotmesh_urls: dict[Role, str]) -> None:
    """Stream rules 3, 5, 6, 9, 10: publish/read/ack/release sequences agree with a model."""
    url = hotmesh_urls[Role.STREAM]
    _served(Role.STREAM, url)
    run_state_machine_as_test(
        lambda: StreamMachine(url),  # type: ignore[arg-type]  # hypothesis accepts a factory
        settings=settings(stateful_step_count=25),
    )
