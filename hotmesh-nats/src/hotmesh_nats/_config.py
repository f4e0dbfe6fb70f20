"""Connection strings and options of the NATS providers, parsed without I/O (Provider rule 1).

A URL is ``nats://[user:password@|token@]host[:port][,host2[:port]...][?option=value&...]``
(``tls://`` for TLS); each comma-separated entry may repeat the scheme. Query parameters are
options (``?nkeys_seed_file=/path/user.nk``); the options mapping wins over them. The credentials are taken out of the server
list and handed to nats-py separately, so that no server URL we ever show carries a secret.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError

from hotmesh.errors import ConfigError, redact_url
from hotmesh.providers import invalid_option

SCHEMES = ("nats", "tls")
DEFAULT_PORT = 4222


class NatsOptions(BaseModel):
    """Options accepted by every NATS provider (unknown keys are a ConfigError)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    creds_file: str | None = None
    """A ``.creds`` file (JWT + NKey seed) for decentralized auth."""
    nkeys_seed_file: str | None = None
    """A file holding an NKey user seed."""
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_hostname: str | None = None
    client_name: str | None = None
    connect_timeout: float = Field(default=2.0, gt=0)
    open_timeout: float = Field(default=10.0, gt=0)
    """Give up ``open()`` after this many seconds (nats-py would otherwise keep retrying)."""
    max_reconnect_attempts: int = Field(default=-1, ge=-1)
    """After a connection is lost: -1 retries forever (a restarted server is picked up again)."""
    reconnect_time_wait: float = Field(default=0.5, ge=0)
    request_timeout: float = Field(default=10.0, gt=0)
    replicas: int = Field(default=1, ge=1, le=5)
    """JetStream replicas of the streams / KV buckets this provider creates."""
    storage: Literal["file", "memory"] = "file"
    max_ack_pending: int = Field(default=100_000, ge=-1)


@dataclass(frozen=True)
class ConnectSettings:
    """What ``nats.connect`` needs, plus a display form of the URL with no secret in it."""

    servers: tuple[str, ...]
    display: str
    options: NatsOptions
    tls: bool

    def scrub(self, text: str) -> str:
        """``text`` with the password and token of these settings masked."""
        o = self.options
        for secret in (o.password, o.token):
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "***")
        return text

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect`` (secrets revealed only here)."""
        o = self.options
        kwargs: dict[str, Any] = {
            "servers": list(self.servers),
            "connect_timeout": o.connect_timeout,
            "max_reconnect_attempts": o.max_reconnect_attempts,
            "reconnect_time_wait": o.reconnect_time_wait,
            "allow_reconnect": True,
        }
        if o.client_name:
            kwargs["name"] = o.client_name
        if o.user is not None:
            kwargs["user"] = o.user
        if o.password is not None:
            kwargs["password"] = o.password.get_secret_value()
        if o.token is not None:
            kwargs["token"] = o.token.get_secret_value()
        if o.creds_file:
            kwargs["user_credentials"] = o.creds_file
        if o.nkeys_seed_file:
            kwargs["nkeys_seed"] = o.nkeys_seed_file
        if self.tls:
            context = ssl.create_default_context(cafile=o.tls_ca_file)
            if o.tls_cert_file:
                context.load_cert_chain(o.tls_cert_file, o.tls_key_file)
            kwargs["tls"] = context
            if o.tls_hostname:
                kwargs["tls_hostname"] = o.tls_hostname
        return kwargs


def check_key_files(options: NatsOptions, provider: str) -> None:
    """Read ``nkeys_seed_file`` / ``creds_file`` once before connecting, so that a missing file or
    a malformed seed is a ConfigError naming the option and the path, never the file's content
    (nats-py would otherwise fail with a bare nkeys error, or only after the server's nonce).
    Needs the ``nkeys`` package (the caller checks that it is importable)."""
    import nkeys

    for option, path in (("nkeys_seed_file", options.nkeys_seed_file), ("creds_file", options.creds_file)):
        if not path:
            continue
        try:
            content = Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"{provider}: cannot read {option} {path!r}: {exc.strerror or type(exc).__name__}") from None
        if option == "creds_file":
            lines = content.splitlines()
            marks = [i for i, line in enumerate(lines) if b"BEGIN NATS USER JWT" in line or b"BEGIN USER NKEY SEED" in line]
            if len(marks) != 2 or any(i + 1 >= len(lines) for i in marks):
                raise ConfigError(
                    f"{provider}: {option} {path!r} is not a NATS credentials file"
                    " (it needs a USER JWT block and a USER NKEY SEED block)"
                )
            content = lines[marks[-1] + 1]
        try:
            nkeys.from_seed(bytearray(content.strip())).wipe()
        except Exception:  # nkeys raises its own errors and binascii/ValueError ones
            raise ConfigError(f"{provider}: {option} {path!r} does not hold a valid NKey seed") from None


def parse(url: str, options: Mapping[str, Any], provider: str) -> ConnectSettings:
    """Parse a ``nats://``/``tls://`` URL list and validate options (no I/O)."""
    try:
        opts = NatsOptions.model_validate(dict(options))
    except PydanticValidationError as exc:
        raise invalid_option(provider, exc) from None
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"malformed NATS URL {redact_url(str(url))!r}: expected nats://host:port")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"the {provider} provider takes nats:// or tls:// URLs, not {scheme}://")
    rest = url.split("://", 1)[1]
    user: str | None = None
    password: str | None = None
    servers: list[str] = []
    query: dict[str, str] = {}
    for raw in rest.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if "://" not in entry:
            entry = f"{scheme}://{entry}"
        try:
            parts = urlsplit(entry)
            port = parts.port or DEFAULT_PORT
        except ValueError as exc:
            raise ConfigError(f"malformed NATS URL {redact_url(url)!r}: {exc}") from None
        if parts.scheme.lower() not in SCHEMES or not parts.hostname:
            raise ConfigError(f"malformed NATS URL {redact_url(url)!r}: bad server {redact_url(raw)!r}")
        query.update(parse_qsl(parts.query, keep_blank_values=True))
        if parts.username is not None and user is None:
            user = unquote(parts.username)
            password = unquote(parts.password) if parts.password is not None else None
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        servers.append(f"{parts.scheme.lower()}://{host}:{port}")
    if not servers:
        raise ConfigError(f"malformed NATS URL {redact_url(url)!r}: no server")
    if query:
        # URL options (e.g. ?creds_file=...): the options mapping wins over them.
        try:
            opts = NatsOptions.model_validate({**query, **dict(options)})
        except PydanticValidationError as exc:
            raise invalid_option(provider, exc) from None
    updates: dict[str, Any] = {}
    if user is not None and password is not None and opts.user is None:
        updates = {"user": user, "password": SecretStr(password)}
    elif user is not None and password is None and opts.token is None:
        # nats://TOKEN@host is the NATS convention for token auth.
        updates = {"token": SecretStr(user)}
    if updates:
        opts = opts.model_copy(update=updates)
    tls = any(s.startswith("tls://") for s in servers) or bool(opts.tls_ca_file or opts.tls_cert_file)
    return ConnectSettings(
        servers=tuple(servers), display=",".join(servers), options=opts, tls=tls
    )
