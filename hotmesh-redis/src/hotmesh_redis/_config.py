"""Connection settings: the URL and the options mapping, validated into one pydantic model.

Accepted URLs (query parameters are options too, e.g. ``?pool_size=20``):

- ``redis://[[user]:password@]host[:port][/db]``
- ``rediss://...`` (TLS; ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` options)
- ``unix:///path/to/redis.sock[?db=N]``
- ``redis+cluster://host:port`` and ``rediss+cluster://...``: Redis Cluster (seed node).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from hotmesh.errors import ConfigError, redact_url
from hotmesh.providers import invalid_option

SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


class RedisOptions(BaseModel):
    """Options every Redis provider takes (from the options mapping or URL query parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str | None = None
    password: SecretStr | None = None
    db: int = Field(default=0, ge=0)
    pool_size: int = Field(default=50, ge=1)
    socket_timeout: float | None = Field(default=30.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: Literal["required", "optional", "none"] = "required"
    ssl_check_hostname: bool = True
    key_prefix: str = Field(default="hm", pattern=r"^[A-Za-z0-9_]{1,16}$")


class RedisSettings:
    """A parsed URL plus options: where to connect and how."""

    def __init__(self, url: str, options: Mapping[str, Any], *, provider: str) -> None:
        self.url = url
        self.redacted = redact_url(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:
            raise ConfigError(f"malformed Redis URL {self.redacted!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ConfigError(
                f"the {provider} provider takes {', '.join(s + '://' for s in SCHEMES)} URLs,"
                f" not {scheme}://"
            )
        self.cluster = scheme.endswith("+cluster")
        self.tls = scheme.startswith("rediss")
        self.unix_path: str | None = None
        merged: dict[str, Any] = {}
        if parts.username:
            merged["username"] = unquote(parts.username)
        if parts.password is not None:
            merged["password"] = unquote(parts.password)
        if scheme == "unix":
            self.unix_path = unquote(parts.path)
            if not self.unix_path:
                raise ConfigError(f"unix:// URL without a socket path: {self.redacted!r}")
        elif parts.path and parts.path.strip("/"):
            try:
                merged["db"] = int(parts.path.strip("/"))
            except ValueError:
                raise ConfigError(
                    f"the path of a Redis URL is the db number, got {self.redacted!r}"
                ) from None
        merged.update(dict(parse_qsl(parts.query, keep_blank_values=True)))
        merged.update(options)
        try:
            self.options = RedisOptions.model_validate(merged)
        except ValidationError as exc:
            raise invalid_option(provider, exc) from None
        if self.cluster and self.options.db != 0:
            raise ConfigError(f"Redis Cluster has only db 0: {self.redacted!r}")
        try:
            self.host = parts.hostname or "localhost"
            self.port = parts.port or 6379
        except ValueError as exc:
            raise ConfigError(f"malformed Redis URL {self.redacted!r}: {exc}") from None

    @property
    def where(self) -> str:
        """Host and port (or socket path) for messages; never a password."""
        return self.unix_path if self.unix_path else f"{self.host}:{self.port}"

    @property
    def identity(self) -> tuple[object, ...]:
        """Which server and db this is (two providers with equal identity share data)."""
        return (self.cluster, self.unix_path, self.host, self.port, self.options.db)

    def client_kwargs(self, *, blocking: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``redis.asyncio.Redis`` (or ``RedisCluster``)."""
        o = self.options
        kwargs: dict[str, Any] = {
            "username": o.username,
            "password": o.password.get_secret_value() if o.password else None,
            "socket_connect_timeout": o.connect_timeout,
            # A blocking XREADGROUP may wait longer than any read timeout.
            "socket_timeout": None if blocking else o.socket_timeout,
            "decode_responses": True,
            # RESP2 replies: FT.SEARCH and XINFO parse the same on every redis-py version.
            "protocol": 2,
            "max_connections": o.pool_size,
        }
        if self.tls:
            kwargs.update(
                ssl=True,
                ssl_ca_certs=o.ssl_ca_certs,
                ssl_certfile=o.ssl_certfile,
                ssl_keyfile=o.ssl_keyfile,
                ssl_cert_reqs=o.ssl_cert_reqs,
                ssl_check_hostname=o.ssl_check_hostname,
            )
        if self.cluster:
            kwargs.update(host=self.host, port=self.port)
        elif self.unix_path:
            kwargs.update(unix_socket_path=self.unix_path, db=o.db)
        else:
            kwargs.update(host=self.host, port=self.port, db=o.db)
        return kwargs
