"""Lifecycle shared by the NATS providers: options, connect, close, error translation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import AuthorizationError as NatsAuthorizationError
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api

from hotmesh.errors import ConfigError, HotMeshError, ProviderError
from hotmesh.providers import ProviderBase, ProviderInfo, Survives
from hotmesh_nats._config import ConnectSettings, check_key_files, parse


class NatsProvider(ProviderBase):
    """Base of the NATS providers: one nats-py connection per provider instance; the namespace
    scopes every subject, stream and bucket."""

    provider_name = "nats"

    def __init__(self, url: str, *, namespace: str, options: Mapping[str, Any]) -> None:
        # Provider rule 1: parse and validate only, no I/O.
        self._settings: ConnectSettings = parse(url, options, f"nats {self.role}")
        self._bind_namespace(namespace)
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._closed = False
        # Set (and replaced) each time the client reconnects: pull requests waiting at the
        # server died with the old connection, and their readers must ask again.
        self._reconnected: asyncio.Event | None = None

    @property
    def display_url(self) -> str:
        """The server list without credentials (for errors)."""
        return self._settings.display

    async def open(self) -> None:
        """Connect (Provider rule 1); a second call is harmless."""
        if self._closed:
            raise ProviderError(f"nats {self.role} provider for {self.display_url} is closed")
        if self._nc is not None:
            return
        kwargs = self._settings.connect_kwargs()
        if "user_credentials" in kwargs or "nkeys_seed" in kwargs:
            try:
                import nkeys  # noqa: F401  (nats-py signs the server's nonce with it)
            except ImportError:
                raise ConfigError(
                    f"nats {self.role}: creds_file / nkeys_seed_file need the 'nkeys' package:"
                    " pip install 'hotmesh-nats[nkeys]'"
                ) from None
            check_key_files(self._settings.options, f"nats {self.role}")
        nc = Client()
        last: list[Exception] = []

        async def remember(exc: Exception) -> None:
            # Instead of nats-py's default (a log line per reconnect attempt): the provider
            # reports errors itself. nats-py reports why each attempt failed (refused, "Authorization Violation", TLS)
            # here and keeps retrying; the last reason goes into our error, except that an
            # authorization failure is kept over the connection resets that follow it (the
            # server closes the socket after refusing: which one is reported last is a race).
            if last and _is_auth_failure(last[0]) and not _is_auth_failure(exc):
                return
            last[:] = [exc]

        self._reconnected = asyncio.Event()

        async def reconnected() -> None:
            event, self._reconnected = self._reconnected, asyncio.Event()
            if event is not None:
                event.set()

        try:
            await asyncio.wait_for(
                nc.connect(error_cb=remember, reconnected_cb=reconnected, **kwargs),
                self._settings.options.open_timeout,
            )
        except asyncio.CancelledError:
            await _close_quietly(nc)
            raise
        except (TimeoutError, NatsError, OSError) as exc:
            await _close_quietly(nc)
            why = f"{type(exc).__name__}: {exc}".rstrip(": ")
            if last and last[0] is not exc:
                why += f" (last error: {type(last[0]).__name__}: {last[0]})"
            raise ProviderError(
                f"cannot connect to NATS at {self.display_url}: {self._settings.scrub(why)}"
            ) from exc
        self._nc = nc
        self._js = nc.jetstream(timeout=self._settings.options.request_timeout)
        await self._opened()

    async def _opened(self) -> None:
        """Hook for role-specific checks after connecting."""

    async def aclose(self) -> None:
        """Close the connection (Provider rule 5: idempotent)."""
        self._closed = True
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await self._closing()
            await _close_quietly(nc)

    async def _closing(self) -> None:
        """Hook run before the connection closes."""

    @property
    def nc(self) -> Client:
        """The live connection (ProviderError when closed or never opened: Provider rule 5)."""
        if self._nc is None:
            state = "closed" if self._closed else "not open (call open() first)"
            raise ProviderError(f"nats {self.role} provider for {self.display_url} is {state}")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the live connection."""
        _ = self.nc
        assert self._js is not None
        return self._js

    async def info(self) -> ProviderInfo:
        """Server version and the durability JetStream gives."""
        version = self.nc.connected_server_version
        durability = (
            f"JetStream {self._settings.options.storage} storage, replicas="
            f"{self._settings.options.replicas}; a write is acknowledged once stored "
            "(file storage fsyncs on the server's sync_interval, 2 min by default)"
        )
        # File storage is written before the ack, so a killed server loses nothing; the
        # client cannot see whether the server was started with sync_interval=always.
        survives = Survives.PROCESS_CRASH if self._settings.options.storage == "file" else Survives.NOTHING
        return ProviderInfo(name="nats", server_version=str(version), durability=durability, survives=survives)

    async def pull(
        self, stream: str, consumer: str, batch: int, *, expires: float | None
    ) -> tuple[list[Msg], str]:
        """One pull request on a consumer; returns the messages and the final status code.

        ``expires`` None asks JetStream not to wait (``no_wait``); otherwise the request waits
        server-side up to ``expires`` seconds, so the caller is woken by the server. A waiting
        request does not survive a server restart: when the client reconnects meanwhile, the
        pull returns what it has at once (status ``"reconnected"``) so the caller asks again,
        instead of waiting out ``expires`` for an answer that will never come.
        """
        nc = self.nc
        inbox = nc.new_inbox()
        status = ""
        woken = self._reconnected if expires is not None else None
        async with self.errors("read"):
            sub = await nc.subscribe(inbox)
            try:
                body: dict[str, Any] = {"batch": batch}
                if expires is None:
                    body["no_wait"] = True
                    wait = self._settings.options.request_timeout
                else:
                    body["expires"] = int(expires * 1e9)
                    wait = expires + self._settings.options.request_timeout
                await nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                    json.dumps(body).encode(),
                    reply=inbox,
                )
                loop = asyncio.get_running_loop()
                end = loop.time() + wait
                got: list[Msg] = []
                while len(got) < batch:
                    try:
                        timeout = max(end - loop.time(), 0.001)
                        if woken is None:
                            msg = await sub.next_msg(timeout=timeout)
                        else:
                            found = await _next_unless(sub, timeout, woken)
                            if found is None:
                                status = "reconnected"
                                break
                            msg = found
                    except TimeoutError:
                        break
                    code = msg.headers.get(api.Header.STATUS, "") if msg.headers else ""
                    if code:
                        if code in ("404", "408", "409"):
                            status = code
                            break
                        continue  # 100 heartbeats and the like
                    got.append(msg)
                return got, status
            finally:
                await sub.unsubscribe()

    async def add_throwaway_consumer(
        self, stream: str, config: api.ConsumerConfig
    ) -> api.ConsumerInfo:
        """Create an ephemeral consumer, asking again after a short wait.

        In a cluster that just lost a node, the server may place the consumer on the dead node
        and never answer. Another request is usually placed on a live node, so each attempt
        waits at most 2 s, within ``request_timeout`` in all. An attempt that was answered late
        leaves a consumer the server deletes after its ``inactive_threshold``.
        """
        budget = self._settings.options.request_timeout
        loop = asyncio.get_running_loop()
        end = loop.time() + budget
        while True:
            left = end - loop.time()
            try:
                return await self.js.add_consumer(stream, config, timeout=max(min(2.0, left), 0.1))
            except NatsTimeoutError:
                if end - loop.time() <= 0:
                    raise

    @asynccontextmanager
    async def errors(self, operation: str) -> AsyncIterator[None]:
        """Translate driver errors to ProviderError (Provider rule 6)."""
        try:
            yield
        except (HotMeshError, asyncio.CancelledError):
            raise
        except (TimeoutError, NatsError, OSError) as exc:
            raise ProviderError(
                f"nats {self.role} {operation} failed on {self.display_url}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


def _is_auth_failure(exc: BaseException) -> bool:
    """The server refused the credentials (nats-py's AuthorizationError or the server's -ERR)."""
    return isinstance(exc, NatsAuthorizationError) or "authorization" in str(exc).lower()


async def _close_quietly(nc: Client) -> None:
    try:
        await nc.close()
    except (TimeoutError, NatsError, OSError):
        pass


__all__ = ["NatsProvider", "nats"]


async def _next_unless(sub: Any, timeout: float, event: asyncio.Event) -> Msg | None:
    """The subscription's next message, or None as soon as ``event`` is set (a message that
    arrived first wins). Used for blocking pulls only: a busy reader never gets here."""
    if event.is_set():
        return None
    nxt: asyncio.Future[Msg] = asyncio.ensure_future(sub.next_msg(timeout=timeout))
    wake = asyncio.ensure_future(event.wait())
    racing: list[asyncio.Future[Any]] = [nxt, wake]
    try:
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in racing:
            if not task.done():
                task.cancel()
    if nxt.done() and not nxt.cancelled():
        return nxt.result()  # a message, or the TimeoutError of an expired wait
    return None
