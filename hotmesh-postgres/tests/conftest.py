"""Fixtures: the shared server URL, a fresh namespace per test, cleanup of its schema."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg
import pytest

URL = os.environ.get("HOTMESH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 1):
            return True
    except OSError:
        return False


requires_server = pytest.mark.skipif(
    not _reachable(URL), reason=f"no PostgreSQL at {URL} (set HOTMESH_POSTGRES_URL)"
)


@pytest.fixture
def anyio_backend() -> str:
    """psycopg's async API runs on asyncio."""
    return "asyncio"


@pytest.fixture
def url() -> str:
    """The shared server."""
    return URL


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh namespace; its schema is dropped afterwards whatever the test did."""
    ns = f"t_{uuid.uuid4().hex[:10]}"
    yield ns
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                psycopg.sql.Identifier(f"hotmesh_{ns}")
            )
        )
