"""Process-global state behind ``memory://`` URLs, and a thread-safe wake-up primitive.

Providers created for the same ``memory://<name>`` URL share one :class:`MemoryDatabase`, so a
store and a stream built separately (as the registry does) see each other, just as two clients of
one Redis server do. A single ``threading.RLock`` makes every operation atomic even when providers
are driven from several event loops (the kit's hypothesis portal runs one in another thread).
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


class Notifier:
    """Wakes every coroutine waiting on it, whatever event loop it runs on."""

    def __init__(self) -> None:
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._lock = threading.Lock()

    def notify(self) -> None:
        """Wake all current waiters."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if loop.is_closed():
                continue
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # loop closed between the check and the call
                continue

    async def wait(self, timeout: float) -> bool:
        """Wait until notified or ``timeout`` seconds pass; True if notified."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(entry)


@dataclass
class MemoryDatabase:
    """All data of one ``memory://<name>``: per namespace, per role, plain dicts."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    namespaces: dict[str, dict[str, Any]] = field(default_factory=lambda: defaultdict(dict))
    notifiers: dict[tuple[str, str], Notifier] = field(default_factory=dict)

    def notifier(self, namespace: str, key: str) -> Notifier:
        """The notifier for one stream/topic of a namespace (created on first use)."""
        with self.lock:
            found = self.notifiers.get((namespace, key))
            if found is None:
                found = self.notifiers[(namespace, key)] = Notifier()
            return found


_databases: dict[str, MemoryDatabase] = {}
_databases_lock = threading.Lock()


def database_for(url: str) -> tuple[str, MemoryDatabase]:
    """The shared database for a ``memory://`` URL (``memory://`` and ``memory://name``)."""
    name = url.split("://", 1)[1].strip("/") or "default"
    with _databases_lock:
        db = _databases.get(name)
        if db is None:
            db = _databases[name] = MemoryDatabase()
    return name, db
