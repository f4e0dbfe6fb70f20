"""Lifecycle shared by the Redis providers: settings, clients, error translation, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

from hotmesh.errors import (
    HotMeshError,
    ProviderError,
    TimeoutError,
)
from hotmesh.providers import Capability, ProviderBase, ProviderInfo, Survives
from hotmesh_redis._config import RedisSettings

Client = aioredis.Redis | RedisCluster

def make_client(settings: RedisSettings, *, blocking: bool = False) -> Client:
    """A client (not yet connected) for the settings; cluster URLs give a RedisCluster.

    At most ``pool_size`` commands are in flight per client; more wait for a free connection
    (up to ``socket_timeout``) instead of failing with redis-py's "Too many connections".
    """
    kwargs = settings.client_kwargs(blocking=blocking)
    wait = settings.options.socket_timeout
    if settings.cluster:
        size = int(kwargs.pop("max_connections"))
        # Headroom per node for the client's own topology commands, which bypass the bound.
        return _BoundedCluster(in_flight=size, max_connections=size + 8, **kwargs)
    # redis-py maps host/unix/TLS settings to a connection class and its arguments; keep that
    # mapping and only swap the pool for one that waits when all connections are busy.
    template = aioredis.Redis(**kwargs).connection_pool
    pool = aioredis.BlockingConnectionPool(
        connection_class=template.connection_class,
        max_connections=template.max_connections,
        timeout=wait,
        **template.connection_kwargs,
    )
    return aioredis.Redis.from_pool(pool)


class _BoundedCluster(RedisCluster):
    """RedisCluster whose callers wait for one of ``in_flight`` slots (its node pools raise
    MaxConnectionsError when exhausted instead of waiting)."""

    def __init__(self, *, in_flight: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._in_flight = asyncio.Semaphore(in_flight)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self._in_flight:
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        async def bounded(*args: Any, **kwargs: Any) -> Any:
            async with self._in_flight:
                return await execute(*args, **kwargs)

        pipe.execute = bounded  # type: ignore[method-assign]
        return pipe


class RedisProvider(ProviderBase):
    """Base of the Redis providers (Provider rules 1-6).

    Keys of role ``r`` in namespace ``ns`` start with ``<prefix>:<r>:{ns`` so purge and
    is_empty find them with two SCAN patterns; a job's keys carry the hash tag ``{ns:j:<id>}``.
    """

    provider_name = "redis"
    role_letter: ClassVar[str] = ""
    declared = frozenset(
        {Capability.MULTI_PROCESS, Capability.DURABLE, Capability.CLUSTER_SAFE_KEYS}
    )

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "hotmesh",
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._settings = RedisSettings(url, options or {}, provider=f"redis {self.role}")
        self._bind_namespace(namespace)
        self._prefix = f"{self._settings.options.key_prefix}:{self.role_letter}:"
        self._client: Client | None = None
        self._closed = False
        self._server_version = ""

    # -- identity -------------------------------------------------------------------------
    @property
    def settings(self) -> RedisSettings:
        """Parsed URL and options."""
        return self._settings

    # -- keys -----------------------------------------------------------------------------
    def tagged(self, kind: str, ident: str) -> str:
        """The base key for one object: its hash tag is ``{ns:kind:ident}`` (one slot)."""
        return f"{self._prefix}{{{self._namespace}:{kind}:{ident}}}"

    def ns_key(self, suffix: str) -> str:
        """A namespace-wide key whose hash tag is ``{ns}``."""
        return f"{self._prefix}{{{self._namespace}}}:{suffix}"

    def _patterns(self) -> tuple[str, str]:
        return (f"{self._prefix}{{{self._namespace}}}*", f"{self._prefix}{{{self._namespace}:*")

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def client(self) -> Client:
        """The connected client; ProviderError when closed or not opened (Provider rule 5)."""
        if self._closed:
            raise ProviderError(f"redis {self.role} provider for {self._settings.redacted} is closed")
        if self._client is None:
            raise ProviderError(
                f"redis {self.role} provider for {self._settings.redacted} is not open;"
                " call `await provider.open()` or use `async with`"
            )
        return self._client

    async def open(self) -> None:
        """Connect and check the server (Provider rule 1); twice is harmless."""
        if self._closed:
            raise ProviderError(f"redis {self.role} provider for {self._settings.redacted} is closed")
        if self._client is not None:
            return
        client = make_client(self._settings)
        try:
            with self.errors("connect"):
                if isinstance(client, RedisCluster):
                    await client.initialize()
                await client.ping()
                info: Any = await client.info("server")
                if info and all(isinstance(v, dict) for v in info.values()):
                    info = next(iter(info.values()))  # RedisCluster: one reply per node
                self._server_version = str(info.get("redis_version", ""))
            await self._on_open(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    async def _on_open(self, client: Client) -> None:
        """Role-specific checks after connecting (override)."""

    async def aclose(self) -> None:
        """Release connections; idempotent (Provider rule 5)."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def info(self) -> ProviderInfo:
        """Server version and durability as configured (appendonly/appendfsync)."""
        client = self.client
        with self.errors("info"):
            try:
                conf: Any = await client.config_get("append*")
            except rexc.ResponseError:  # CONFIG may be disabled by ACL
                conf = {}
        if conf and all(isinstance(v, dict) for v in conf.values()):
            conf = next(iter(conf.values()))  # RedisCluster: one reply per node
        survives: Survives | None
        if conf.get("appendonly") == "yes":
            durability = f"AOF, appendfsync {conf.get('appendfsync', '?')}"
            survives = Survives.POWER_LOSS if conf.get("appendfsync") == "always" else Survives.PROCESS_CRASH
        elif conf:
            durability = "RDB snapshots only: recent writes are lost on a crash"
            survives = Survives.NOTHING
        else:
            durability, survives = "unknown (CONFIG GET not permitted)", None
        return ProviderInfo(
            name="redis", server_version=self._server_version, durability=durability, survives=survives
        )

    # -- cleanup --------------------------------------------------------------------------
    async def _keys(self) -> list[str]:
        found: list[str] = []
        for pattern in self._patterns():
            async for key in self.client.scan_iter(match=pattern, count=500):
                found.append(key)
        return found

    async def purge(self) -> None:
        """Delete every key of this role in the namespace (Provider rule 4)."""
        with self.errors("purge"):
            keys = await self._keys()
            for key in keys:
                # One key per command: keys of different slots never share a command.
                await self.client.unlink(key)

    async def is_empty(self) -> bool:
        """True when no key of this role remains in the namespace (Provider rule 4)."""
        with self.errors("is_empty"):
            for pattern in self._patterns():
                async for _ in self.client.scan_iter(match=pattern, count=500):
                    return False
        return True

    # -- errors ---------------------------------------------------------------------------
    @contextmanager
    def errors(self, operation: str) -> Iterator[None]:
        """Translate driver errors to hotmesh.errors (Provider rule 6); never swallow cancel."""
        try:
            yield
        except HotMeshError:
            raise
        except rexc.TimeoutError as exc:
            raise TimeoutError(
                f"redis {self.role} {operation} timed out on {self._settings.where}"
            ) from exc
        except rexc.AuthenticationError as exc:
            raise ProviderError(
                f"redis {self.role} {operation}: authentication failed on"
                f" {self._settings.redacted}"
            ) from exc
        except (rexc.ConnectionError, rexc.RedisClusterException, OSError) as exc:
            raise ProviderError(
                f"redis {self.role} {operation}: cannot reach {self._settings.where}"
                f" ({self._settings.redacted}): {_scrub(str(exc), self._settings)}"
            ) from exc
        except rexc.RedisError as exc:
            raise ProviderError(
                f"redis {self.role} {operation} failed on {self._settings.redacted}:"
                f" {_scrub(str(exc), self._settings)}"
            ) from exc


def _scrub(text: str, settings: RedisSettings) -> str:
    password = settings.options.password
    if password is not None and password.get_secret_value():
        text = text.replace(password.get_secret_value(), "***")
    return text
