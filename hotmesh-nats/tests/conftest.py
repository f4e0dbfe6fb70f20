"""Fixtures: providers on the shared NATS server, each on a fresh namespace purged afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hotmesh_nats.stream import NatsStream
from hotmesh_nats.sub import NatsSub

URL = os.environ.get("HOTMESH_NATS_URL", "nats://127.0.0.1:4222")


@pytest.fixture
def anyio_backend() -> str:
    """nats-py is asyncio-only."""
    return "asyncio"


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test."""
    return f"t_{secrets.token_hex(4)}"


@pytest.fixture
async def stream(namespace: str) -> AsyncIterator[NatsStream]:
    """An open stream provider, purged afterwards."""
    async with NatsStream(URL, namespace=namespace, options={}) as provider:
        yield provider
        await provider.purge()
        assert await provider.is_empty()


@pytest.fixture
async def sub(namespace: str) -> AsyncIterator[NatsSub]:
    """An open sub provider."""
    async with NatsSub(URL, namespace=namespace, options={}) as provider:
        yield provider


@pytest.fixture
async def store(namespace: str) -> AsyncIterator[Any]:
    """An open store provider, purged afterwards."""
    from hotmesh_nats.store import NatsStore

    async with NatsStore(URL, namespace=namespace, options={}) as provider:
        yield provider
        await provider.purge()
        assert await provider.is_empty()
