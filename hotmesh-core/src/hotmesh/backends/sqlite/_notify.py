"""Wake-ups for blocked stream reads and subscriptions, in this process and across processes.

Writers signal a :class:`Notifier` after commit, so readers in this process wake at once. For
readers in other processes sharing the file, every process that waits binds one Unix datagram
socket in a per-file directory (``/tmp/hotmesh-wake-<uid>/<hash of the file path>/``) and a
daemon thread turns each datagram into a local wake-up; a writer sends one small datagram to each
socket there after its commit. No polling on the hot path: readers still re-check the file every
``poll_interval_ms`` only as a safety net (a peer of another user, a lost datagram). The registry
is keyed by (file, namespace, key) so providers built separately share notifiers.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import hashlib
import os
import socket
import tempfile
import threading
import time


class Notifier:
    """Wakes every registered waiter, whatever event loop (or thread) it runs on."""

    def __init__(self, path: str = "", namespace: str = "", key: str = "") -> None:
        self._waiters: set[Waiting] = set()
        self._lock = threading.Lock()
        self._address = (path, namespace, key)

    def register(self) -> Waiting:
        """Start listening before looking at the file, so no notification falls in between."""
        waiting = Waiting(self, asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(waiting)
        path = self._address[0]
        if path:
            _peers_of(path).listen()
        return waiting

    def _discard(self, waiting: Waiting) -> None:
        with self._lock:
            self._waiters.discard(waiting)

    def notify(self) -> None:
        """Wake all current waiters here and in other processes (safe from any thread)."""
        self.notify_local()
        path, namespace, key = self._address
        if path:
            _peers_of(path).broadcast(namespace, key)

    def notify_local(self) -> None:
        """Wake the waiters of this process only."""
        with self._lock:
            waiters = list(self._waiters)
        for waiting in waiters:
            waiting.wake()


class Waiting:
    """One registration; use as a context manager and ``await wait(timeout)``."""

    def __init__(self, notifier: Notifier, loop: asyncio.AbstractEventLoop) -> None:
        self._notifier = notifier
        self._loop = loop
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Set the event on its own loop."""
        if self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._event.set)
        except RuntimeError:  # the loop closed between the check and the call
            return

    async def wait(self, timeout: float) -> bool:
        """Wait until woken or ``timeout`` seconds pass; True if woken. Re-arms the event."""
        try:
            await asyncio.wait_for(self._event.wait(), max(timeout, 0.0))
            return True
        except TimeoutError:
            return False
        finally:
            self._event.clear()

    def __enter__(self) -> Waiting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._notifier._discard(self)


_notifiers: dict[tuple[str, str, str], Notifier] = {}
_notifiers_lock = threading.Lock()


def notifier_for(path: str, namespace: str, key: str) -> Notifier:
    """The process-wide notifier of one stream or sub namespace in one file."""
    with _notifiers_lock:
        found = _notifiers.get((path, namespace, key))
        if found is None:
            shared = path if path and path != ":memory:" and not path.startswith("file::memory:") else ""
            found = _notifiers[(path, namespace, key)] = Notifier(shared, namespace, key)
        return found


class _Peers:
    """This process's wake-up socket for one database file, and the sockets of its peers."""

    REFRESH = 1.0
    """Seconds a listing of the peers' sockets is reused before the directory is read again."""

    def __init__(self, path: str) -> None:
        self._path = path
        digest = hashlib.sha1(os.path.realpath(path).encode(), usedforsecurity=False).hexdigest()[:16]
        self._dir = os.path.join(tempfile.gettempdir(), f"hotmesh-wake-{os.getuid()}", digest)
        self._sock: socket.socket | None = None
        self._own = ""
        self._lock = threading.Lock()
        self._listing: list[str] = []
        self._listed_at = 0.0
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def listen(self) -> None:
        """Bind this process's socket and start its reader thread (once per process and file)."""
        if self._sock is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._sock is not None and self._pid == os.getpid():
                return
            try:
                os.makedirs(self._dir, mode=0o700, exist_ok=True)
                own = os.path.join(self._dir, f"{os.getpid()}-{os.urandom(4).hex()}")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.bind(own)
            except OSError:
                return  # no wake-up socket: readers here fall back to polling
            self._sock, self._own, self._pid = sock, own, os.getpid()
            self._listed_at = 0.0
            atexit.register(_unlink_quietly, own)
            threading.Thread(target=self._read, args=(sock,), name="hotmesh-sqlite-wake", daemon=True).start()

    _pid = -1

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                return
            namespace, _, key = data.decode("utf-8", "replace").partition("\0")
            notifier_for(self._path, namespace, key).notify_local()

    def broadcast(self, namespace: str, key: str) -> None:
        """Tell every other process waiting on this file that (namespace, key) changed."""
        now = time.monotonic()
        if now - self._listed_at > self.REFRESH:
            try:
                self._listing = [os.path.join(self._dir, n) for n in os.listdir(self._dir)]
            except OSError:
                self._listing = []
            self._listed_at = now
        payload = f"{namespace}\0{key}".encode()
        for peer in self._listing:
            if peer == self._own:
                continue
            try:
                self._sender.sendto(payload, peer)
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):  # its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(peer)
                    self._listed_at = 0.0
                # EAGAIN (its queue is full): it has wake-ups pending anyway


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
    with contextlib.suppress(OSError):  # the last process of this file removes its directory
        os.rmdir(os.path.dirname(path))


_peers: dict[str, _Peers] = {}


def _peers_of(path: str) -> _Peers:
    with _notifiers_lock:
        found = _peers.get(path)
        if found is None:
            found = _peers[path] = _Peers(path)
        return found
