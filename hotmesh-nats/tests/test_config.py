"""URLs and options (issue 8 item 5): parsing without I/O, secrets never shown, failover list."""

from __future__ import annotations

import socket

import pytest

from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import Role, default_registry
from hotmesh_nats._config import parse
from hotmesh_nats.stream import NatsStream


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_user_password_and_server_list() -> None:
    s = parse("nats://alice:s3cret@h1:4223,h2,nats://h3:5000", {}, "nats")
    assert s.servers == ("nats://h1:4223", "nats://h2:4222", "nats://h3:5000")
    assert "s3cret" not in s.display and "alice" not in s.display
    kw = s.connect_kwargs()
    assert kw["user"] == "alice" and kw["password"] == "s3cret"


def test_token_in_url_and_options() -> None:
    assert parse("nats://tok@h", {}, "nats").connect_kwargs()["token"] == "tok"
    kw = parse("nats://h", {"token": "t2", "creds_file": "/x.creds"}, "nats").connect_kwargs()
    assert kw["token"] == "t2" and kw["user_credentials"] == "/x.creds"
    kw = parse("nats://h", {"nkeys_seed_file": "/seed.nk"}, "nats").connect_kwargs()
    assert kw["nkeys_seed"] == "/seed.nk"


def test_url_query_options() -> None:
    """Query parameters are options (they used to be dropped silently); the mapping wins."""
    s = parse("nats://h1,h2:4223?creds_file=/u.creds&open_timeout=3&client_name=w1", {"client_name": "w2"}, "nats")
    assert s.servers == ("nats://h1:4222", "nats://h2:4223") and "creds" not in s.display
    assert s.options.creds_file == "/u.creds" and s.options.open_timeout == 3.0 and s.options.client_name == "w2"
    kw = parse("nats://h?nkeys_seed_file=/seed.nk", {}, "nats").connect_kwargs()
    assert kw["nkeys_seed"] == "/seed.nk"
    with pytest.raises(ConfigError, match="nope"):
        parse("nats://h?nope=1", {}, "nats")
    with pytest.raises(ConfigError) as caught:
        parse("nats://h?password=SECRET&replicas=x", {}, "nats")
    assert "SECRET" not in str(caught.value)


def test_tls_scheme() -> None:
    s = parse("tls://h:4443", {}, "nats")
    assert s.tls and "tls" in s.connect_kwargs()


def test_bad_options_and_urls() -> None:
    with pytest.raises(ConfigError):
        parse("nats://h", {"nope": 1}, "nats")
    with pytest.raises(ConfigError):
        parse("redis://h", {}, "nats")
    with pytest.raises(ConfigError):
        NatsStream("nats://h", namespace="bad.ns", options={})


def test_registry_serves_three_roles_not_search() -> None:
    reg = default_registry()
    for role in (Role.STORE, Role.STREAM, Role.SUB):
        assert reg.for_url(role, "tls://h").name == "nats"
    with pytest.raises(ConfigError):
        reg.for_url(Role.SEARCH, "nats://h")


@pytest.mark.anyio
async def test_unreachable_names_port_not_password() -> None:
    port = _dead_port()
    stream = NatsStream(
        f"nats://u:hunter2@127.0.0.1:{port}", namespace="t_x", options={"open_timeout": 2}
    )
    with pytest.raises(ProviderError) as caught:
        await stream.open()
    assert str(port) in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.anyio
async def test_failover_to_next_server() -> None:
    port = _dead_port()
    url = f"nats://127.0.0.1:{port},127.0.0.1:4222"
    async with NatsStream(url, namespace="t_failover", options={}) as stream:
        assert await stream.is_empty()
