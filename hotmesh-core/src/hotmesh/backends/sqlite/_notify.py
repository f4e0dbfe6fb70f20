"""In-process wake-ups for blocked stream reads and subscriptions.

Writers in this process signal a :class:`Notifier` after commit, so readers here wake at once;
readers also re-check the file every ``poll_interval_ms`` for writes by other processes. The
registry is keyed by (file, namespace, key) so providers built separately share notifiers.
"""

from __future__ import annotations

import asyncio
import threading


class Notifier:
    """Wakes every registered waiter, whatever event loop (or thread) it runs on."""

    def __init__(self) -> None:
        self._waiters: set[Waiting] = set()
        self._lock = threading.Lock()

    def register(self) -> Waiting:
        """Start listening before looking at the file, so no notification falls in between."""
        waiting = Waiting(self, asyncio.get_running_loop())
        with self._lock:
            self._waiters.add(waiting)
        return waiting

    def _discard(self, waiting: Waiting) -> None:
        with self._lock:
            self._waiters.discard(waiting)

    def notify(self) -> None:
        """Wake all current waiters (safe from any thread)."""
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
            found = _notifiers[(path, namespace, key)] = Notifier()
        return found
