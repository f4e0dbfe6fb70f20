"""Provider rules 1-6 (hotmesh/providers/_base.py), for every role the URL serves."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest

from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import (
    Capability,
    Message,
    ProviderInfo,
    ReadRequest,
    Role,
    Survives,
    default_registry,
)
from hotmesh_conformance.helpers import new_namespace
from hotmesh_conformance.suite._data import sees_something, write_something

pytestmark = pytest.mark.anyio

ROLES = [Role.STORE, Role.STREAM, Role.SUB, Role.SEARCH]
MakeProvider = Callable[..., Awaitable[Any]]


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
async def test_construct_without_io_then_open_twice(role: Role, make_provider: MakeProvider) -> None:
    """Provider rule 1: construction does no I/O; open() twice is harmless."""
    provider = await make_provider(role, open=False)
    assert provider.namespace, "Provider rule 1: the namespace is set at construction"
    await provider.open()
    await provider.open()
    info = await provider.info()
    assert isinstance(info, ProviderInfo)
    assert info.name == provider.name, f"Provider rule 1: info().name {info.name!r} != {provider.name!r}"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
async def test_unreachable_backend_is_provider_error_without_password(
    role: Role, hotmesh_urls: dict[Role, str]
) -> None:
    """Provider rule 1: an unreachable backend raises ProviderError naming the URL minus password."""
    url = hotmesh_urls[role]
    parts = urlsplit(url)
    if not parts.hostname:
        pytest.skip(f"{parts.scheme}:// is embedded: there is no server to be unreachable")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    secret = f"pw{secrets.token_hex(4)}"
    dead = urlunsplit((parts.scheme, f"user:{secret}@127.0.0.1:{port}", parts.path, parts.query, ""))
    try:
        spec = default_registry().for_url(role, dead)
    except ConfigError as exc:
        pytest.skip(str(exc))
    provider = spec.create(dead, namespace=new_namespace(), options={})  # no I/O: must not raise
    with anyio.fail_after(30):
        with pytest.raises((ProviderError, ConfigError)) as caught:
            await provider.open()
    text = str(caught.value)
    assert secret not in text, f"Provider rule 1: the password leaked into {text!r}"
    assert str(port) in text, f"Provider rule 1: the message should name the port {port}: {text!r}"
    await provider.aclose()


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
async def test_async_with_opens_and_closes(role: Role, make_provider: MakeProvider) -> None:
    """Provider rules 1 and 5: ``async with`` opens and closes; a closed provider raises."""
    provider = await make_provider(role, open=False)
    async with provider as entered:
        assert entered is provider
        assert isinstance(await provider.is_empty(), bool)
    with pytest.raises(ProviderError):
        await _use(role, provider)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
async def test_aclose_is_idempotent_and_closed_use_raises(
    role: Role, make_provider: MakeProvider
) -> None:
    """Provider rule 5: aclose() twice is harmless; using a closed provider raises ProviderError."""
    provider = await make_provider(role)
    await provider.aclose()
    await provider.aclose()
    with pytest.raises(ProviderError):
        await _use(role, provider)


async def _use(role: Role, provider: Any) -> None:
    if role is Role.STORE:
        await provider.get_job("nope")
    elif role is Role.STREAM:
        await provider.publish([Message("s", {})])
    elif role is Role.SUB:
        await provider.publish("topic", {})
    else:
        await provider.get("idx", "doc")


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.value)
async def test_capabilities_after_open(
    role: Role, make_provider: MakeProvider, hotmesh_urls: dict[Role, str]
) -> None:
    """Provider rule 2: capabilities are Capability members, a subset of what the spec declares."""
    provider = await make_provider(role)
    caps = provider.capabilities
    assert isinstance(caps, frozenset)
    assert all(isinstance(c, Capability) for c in caps), f"Provider rule 2: {caps!r}"
    spec = default_registry().for_url(role, hotmesh_urls[role])
    undeclared = {c.value for c in caps} - set(spec.capabilities)
    assert not undeclared, (
        f"Provider rule 2: instance declares {sorted(undeclared)} that ProviderSpec "
        f"{spec.name!r} does not list in capabilities={spec.capabilities}"
    )


@pytest.mark.parametrize("role", [Role.STORE, Role.STREAM, Role.SEARCH], ids=lambda r: r.value)
async def test_namespaces_are_isolated(role: Role, make_provider: MakeProvider) -> None:
    """Provider rule 3: two namespaces of one backend never see each other's data."""
    mine = await make_provider(role)
    other = await make_provider(role, namespace=new_namespace())
    await write_something(role, mine)
    assert await other.is_empty(), "Provider rule 3: the other namespace is not empty"
    assert not await sees_something(role, other), "Provider rule 3: data leaked across namespaces"
    await other.purge()
    assert await sees_something(role, mine), "Provider rule 3/4: purge() of another namespace deleted data"


@pytest.mark.parametrize("role", [Role.STORE, Role.STREAM, Role.SEARCH], ids=lambda r: r.value)
async def test_durability_is_stated_and_meets_what_is_required(
    role: Role, make_provider: MakeProvider, hotmesh_required_durability: Survives | None
) -> None:
    """B-9 durability lint (promise C9): every backend that holds state says, from its own
    settings, what an acknowledged write survives, in words and as a level. With
    ``--hotmesh-require-durability`` the run fails where that is less than required (e.g. Redis
    without AOF, PostgreSQL with synchronous_commit=off, JetStream memory storage), so a
    deployment's backends can be linted before they are trusted."""
    provider = await make_provider(role)
    info = await provider.info()
    assert isinstance(info, ProviderInfo) and info.durability, "C9: info().durability must say what a write survives"
    assert info.survives is None or isinstance(info.survives, Survives), f"C9: survives={info.survives!r}"
    if hotmesh_required_durability is not None:
        found = "unknown" if info.survives is None else info.survives.label
        assert info.survives is not None and info.survives >= hotmesh_required_durability, (
            f"{info.name} {role.value} survives {found}, less than the required"
            f" {hotmesh_required_durability.label}: {info.durability}"
        )


@pytest.mark.parametrize("role", [Role.STORE, Role.STREAM, Role.SEARCH], ids=lambda r: r.value)
async def test_purge_empties_the_namespace(role: Role, make_provider: MakeProvider) -> None:
    """Provider rule 4: is_empty() is False with data, and True after purge()."""
    provider = await make_provider(role)
    assert await provider.is_empty(), "Provider rule 4: a fresh namespace should be empty"
    await write_something(role, provider)
    assert not await provider.is_empty(), "Provider rule 4: is_empty() is True while data exists"
    await provider.purge()
    assert await provider.is_empty(), "Provider rule 4: is_empty() is False after purge()"
    assert not await sees_something(role, provider), "Provider rule 4: data survived purge()"


async def test_cancellation_is_not_swallowed_by_a_blocking_read(make_provider: MakeProvider) -> None:
    """Provider rule 6: cancelling a blocking read propagates CancelledError at once."""
    stream = await make_provider(Role.STREAM)
    started = anyio.current_time()
    with anyio.move_on_after(0.3) as scope:
        await stream.read(ReadRequest("idle", "g", "c", block=timedelta(seconds=10)))
    elapsed = anyio.current_time() - started
    assert scope.cancelled_caught, "Provider rule 6: read() swallowed the cancellation"
    assert elapsed < 3, f"Provider rule 6: cancelled read() took {elapsed:.2f}s to return"


async def test_cancellation_is_not_swallowed_by_subscription_get(make_provider: MakeProvider) -> None:
    """Provider rule 6: cancelling Subscription.get() propagates CancelledError at once."""
    sub = await make_provider(Role.SUB)
    subscription = await sub.subscribe("quiet")
    try:
        with anyio.move_on_after(0.3) as scope:
            await subscription.get()
        assert scope.cancelled_caught, "Provider rule 6: get() swallowed the cancellation"
    finally:
        await subscription.aclose()
