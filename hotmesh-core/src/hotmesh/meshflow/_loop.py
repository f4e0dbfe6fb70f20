"""A private, deterministic event loop for workflow code.

Workflow code is ordinary ``async def`` code, but it must make the same durable calls in the same
order every time it is replayed. It therefore runs on this loop, not the worker's: the loop only
runs ready callbacks in FIFO order, has no clock, no timers and no I/O. When nothing is ready the
workflow is suspended on durable calls whose results are not in its history yet.

Shaped by temporalio's ``_WorkflowInstanceImpl`` (sdk-python ``temporalio/worker/_workflow_instance.py``),
which is itself an ``asyncio.AbstractEventLoop`` that drains a ready queue and turns
``call_later`` into a durable timer. Here ``call_later`` is refused instead: durable sleep is an
explicit ``workflow.sleep_for``.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TypeVar

from hotmesh.errors import WorkflowSandboxError

_T = TypeVar("_T")

IN_WORKFLOW: contextvars.ContextVar[bool] = contextvars.ContextVar("hotmesh_in_workflow", default=False)
"""True while workflow code runs on a ReplayLoop (read by the audit hook below)."""

_REFUSED_EVENTS = {
    "open": "file I/O",
    "socket.connect": "network I/O",
    "socket.getaddrinfo": "network I/O",
    "socket.bind": "network I/O",
    "subprocess.Popen": "starting a process",
    "os.system": "starting a process",
    "os.exec": "starting a process",
    "os.posix_spawn": "starting a process",
    "urllib.Request": "network I/O",
}
_ALTERNATIVE = "put it in an activity (workflow.proxy_activities) so it runs once and its result is recorded"


def _importing() -> bool:
    """Whether the current 'open' comes from the import system (lazy imports are allowed)."""
    frame: Any = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Called for every audited operation in the process: keep the common path one lookup.
    if event in _REFUSED_EVENTS and IN_WORKFLOW.get():
        if event == "open" and _importing():
            return
        raise WorkflowSandboxError(
            f"{_REFUSED_EVENTS[event]} ({event}) inside workflow code is not durable and would not "
            f"replay the same way: {_ALTERNATIVE}"
        )


_hook_installed = False


def install_sandbox() -> None:
    """Install the process-wide audit hook that refuses I/O from workflow code (once)."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True


def _refuse(what: str, alternative: str) -> NoReturn:
    raise WorkflowSandboxError(f"{what} inside workflow code is not durable: {alternative}")


class ReplayLoop(asyncio.AbstractEventLoop):
    """Runs ready callbacks FIFO until none is left; everything else is refused."""

    def __init__(self) -> None:
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._running = False
        self._tasks: list[asyncio.Task[Any]] = []
        self.errors: list[BaseException] = []

    # -- what asyncio's Task and Future need --------------------------------------------------
    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        _refuse("call_soon_threadsafe (threads)", _ALTERNATIVE)

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(  # type: ignore[override]
        self,
        coro: Coroutine[Any, Any, _T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[_T]:
        task: asyncio.Task[_T] = asyncio.Task(coro, loop=self, name=name, context=context)
        if hasattr(task, "_log_destroy_pending"):  # a suspended workflow is dropped on purpose
            task._log_destroy_pending = False
        self._tasks.append(task)
        return task

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return False

    def time(self) -> float:
        return 0.0

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.errors.append(exc)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass

    # -- what workflow code must not do --------------------------------------------------------
    def call_later(self, delay: float, callback: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.TimerHandle:  # type: ignore[override]
        _refuse(
            "asyncio.sleep / a timeout / call_later",
            "use await workflow.sleep_for(seconds) for a durable sleep (it survives restarts)",
        )

    def call_at(self, when: float, callback: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.TimerHandle:  # type: ignore[override]
        return self.call_later(when, callback, *args)

    def run_in_executor(self, executor: Any, func: Callable[..., _T], *args: Any) -> asyncio.Future[_T]:  # type: ignore[override]
        _refuse("run_in_executor (threads)", _ALTERNATIVE)

    async def getaddrinfo(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("network I/O (getaddrinfo)", _ALTERNATIVE)

    async def create_connection(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("network I/O (create_connection)", _ALTERNATIVE)

    async def sock_connect(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("network I/O (sock_connect)", _ALTERNATIVE)

    async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("starting a process", _ALTERNATIVE)

    async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
        _refuse("starting a process", _ALTERNATIVE)

    # -- driving ---------------------------------------------------------------------------
    def run_ready(self) -> None:
        """Run callbacks until none is ready, with this loop as the running loop.

        The worker's own loop is the running loop around this call; it is restored after,
        so workflow code never sees (or schedules onto) the real loop.
        """
        outer = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        token = IN_WORKFLOW.set(True)
        self._running = True
        try:
            while self._ready:
                self._ready.popleft()._run()
        finally:
            self._running = False
            IN_WORKFLOW.reset(token)
            asyncio.events._set_running_loop(outer)

    def discard(self) -> None:
        """Drop every suspended task without running workflow code on the worker's loop later.

        Each pending coroutine is closed here (GeneratorExit at its await), under this loop, so
        ``finally`` blocks run now rather than whenever the garbage collector gets to them.
        """
        self._ready.clear()
        outer = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        token = IN_WORKFLOW.set(True)
        try:
            for task in reversed(self._tasks):
                if task.done():
                    continue
                coro = task.get_coro()
                try:
                    if coro is not None and hasattr(coro, "close"):
                        coro.close()
                except BaseException:  # workflow code that refuses to close: nothing to do
                    pass
        finally:
            IN_WORKFLOW.reset(token)
            asyncio.events._set_running_loop(outer)
        self._tasks.clear()
        self._ready.clear()
