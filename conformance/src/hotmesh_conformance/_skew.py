"""A skewed wall clock for a kit worker process, as on a host whose clock is off (test T-1).

``HOTMESH_KIT_CLOCK_SKEW=<seconds>`` in a kit worker's environment moves its wall clock
(``time.time``, ``time.time_ns``, ``datetime.now``/``utcnow``/``today``) by that many seconds.
Monotonic clocks are left alone: every process on the host shares them, which is how a test
measures, across processes, that nothing happened early.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
import warnings
from typing import Any

SKEW_ENV = "HOTMESH_KIT_CLOCK_SKEW"


def skew_clock(seconds: float) -> None:
    """Move this process's wall clock by ``seconds`` (every module's view of it)."""
    real_time, real_time_ns = time.time, time.time_ns
    real_datetime: type[_dt.datetime] = _dt.datetime
    shift = _dt.timedelta(seconds=seconds)

    def skewed_time() -> float:
        return real_time() + seconds

    def skewed_time_ns() -> int:
        return real_time_ns() + int(seconds * 1e9)

    class SkewedDatetime(_dt.datetime):
        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> Any:
            return real_datetime.now(tz) + shift

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.now(_dt.UTC).replace(tzinfo=None) + shift

        @classmethod
        def today(cls) -> Any:
            return real_datetime.now() + shift

    time.time, time.time_ns = skewed_time, skewed_time_ns
    # Modules imported from now on get the skewed class too; compiled ones notice that it is a
    # (layout-compatible) subclass and say so at import.
    warnings.filterwarnings("ignore", message="datetime.datetime size changed", category=RuntimeWarning)
    _dt.datetime = SkewedDatetime  # type: ignore[misc]
    for module in list(sys.modules.values()):  # names bound by ``from x import y`` before now
        for name, value in list(getattr(module, "__dict__", {}).items()):
            replacement = {id(real_time): skewed_time, id(real_time_ns): skewed_time_ns,
                           id(real_datetime): SkewedDatetime}.get(id(value))  # fmt: skip
            if replacement is not None and module is not _dt:
                try:
                    setattr(module, name, replacement)
                except (AttributeError, TypeError):
                    pass


def skew_clock_from_env() -> float:
    """Apply ``HOTMESH_KIT_CLOCK_SKEW`` if set (call before anything reads the clock)."""
    skew = float(os.environ.get(SKEW_ENV) or 0)
    if skew:
        skew_clock(skew)
    return skew
