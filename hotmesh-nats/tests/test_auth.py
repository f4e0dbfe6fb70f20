"""Connection strings against private servers (issue 8 item 2): token, user/password, TLS, a
failover list, NKey prerequisites, and secrets never shown in errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats_servers import SERVER, PrivateServer, free_port

from hotmesh import connect
from hotmesh.errors import ConfigError, ProviderError
from hotmesh_nats.stream import NatsStream
from hotmesh_nats.sub import NatsSub

pytestmark = pytest.mark.anyio
TOKEN = "t0k-SECRET-42"
PASSWORD = "p@ss:w/rd SECRET"
FAST = {"open_timeout": 3.0, "connect_timeout": 1.0}


def _server(tmp_path: Path, config: str) -> Iterator[PrivateServer]:
    if not Path(SERVER).exists():
        pytest.skip("nats-server is not installed")
    srv = PrivateServer(tmp_path / "js", config=config)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[PrivateServer]:
    yield from _server(tmp_path, f'authorization {{ token: "{TOKEN}" }}')


@pytest.fixture
def password_server(tmp_path: Path) -> Iterator[PrivateServer]:
    yield from _server(tmp_path, f'authorization {{ user: "alice", password: "{PASSWORD}" }}')


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[PrivateServer]:
    key, cert = tmp_path / "server.key", tmp_path / "server.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    yield from _server(tmp_path, f'tls {{ cert_file: "{cert}", key_file: "{key}" }}')


async def test_token_in_url(token_server: PrivateServer) -> None:
    await token_server.wait_ready()
    url = f"nats://{TOKEN}@127.0.0.1:{token_server.port}"
    async with NatsStream(url, namespace="t_auth", options=FAST) as stream:
        assert await stream.is_empty()
    async with NatsStream(token_server.url, namespace="t_auth", options={**FAST, "token": TOKEN}) as stream:
        assert await stream.is_empty()


async def test_wrong_token_is_a_provider_error_without_it(token_server: PrivateServer) -> None:
    await token_server.wait_ready()
    stream = NatsStream(f"nats://wrong-{TOKEN}@127.0.0.1:{token_server.port}", namespace="t_auth", options=FAST)
    with pytest.raises(ProviderError) as caught:
        await stream.open()
    text = str(caught.value)
    assert TOKEN not in text and str(token_server.port) in text and "authorization" in text.lower()


async def test_user_password_percent_encoded(password_server: PrivateServer) -> None:
    await password_server.wait_ready()
    from urllib.parse import quote

    url = f"nats://alice:{quote(PASSWORD, safe='')}@127.0.0.1:{password_server.port}"
    async with NatsSub(url, namespace="t_auth", options=FAST) as sub:
        subscription = await sub.subscribe("x")
        await sub.publish("x", {"ok": True})
        assert (await subscription.get(2)) is not None
    bad = NatsStream(f"nats://alice:wrong-{quote(PASSWORD, safe='')}@127.0.0.1:{password_server.port}",
                     namespace="t_auth", options=FAST)  # fmt: skip
    with pytest.raises(ProviderError) as caught:
        await bad.open()
    assert "SECRET" not in str(caught.value) and "alice" not in str(caught.value)


async def test_tls_with_ca_file(tls_server: PrivateServer, tmp_path: Path) -> None:
    await tls_server.wait_ready()
    url = f"tls://127.0.0.1:{tls_server.port}"
    async with NatsStream(url, namespace="t_tls", options={**FAST, "tls_ca_file": str(tmp_path / "server.pem")}) as s:
        assert await s.is_empty()
    untrusted = NatsStream(url, namespace="t_tls", options=FAST)  # the system CAs do not know it
    with pytest.raises(ProviderError):
        await untrusted.open()


async def test_failover_list_skips_a_dead_server(token_server: PrivateServer) -> None:
    """Several servers in one URL: the first is down, the client uses the next; the token
    given once applies to all of them."""
    await token_server.wait_ready()
    url = f"nats://{TOKEN}@127.0.0.1:{free_port()},127.0.0.1:{token_server.port}"
    async with NatsStream(url, namespace="t_auth", options=FAST) as stream:
        assert await stream.is_empty()
        assert TOKEN not in stream.display_url


async def test_nkeys_options_without_the_package_are_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nkeys", None)  # as if not installed
    for option in ("creds_file", "nkeys_seed_file"):
        stream = NatsStream("nats://127.0.0.1:4222", namespace="t_nk", options={option: "/nonexistent"})
        with pytest.raises(ConfigError, match=r"hotmesh-nats\[nkeys\]"):
            await stream.open()


async def test_search_on_nats_fails_at_connect_with_a_config_error() -> None:
    """search=nats:// cannot work (NATS has no search provider): connect says so, names the
    way out, and shows no password."""
    with pytest.raises(ConfigError) as caught:
        await connect("nats://127.0.0.1:4222", search=f"nats://u:{PASSWORD}@127.0.0.1:4222", namespace="t_cfg")
    text = str(caught.value)
    assert "search" in text and "nats" in text and "SECRET" not in text
