"""Human durations ("15 minutes", "1 day", 90, timedelta) and 5-field cron expressions."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from croniter import croniter  # maintained cron parser: no hand-written cron arithmetic

from hotmesh.errors import ValidationError

Duration = timedelta | int | float | str

_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*,?")


def parse_duration(value: Duration, *, what: str = "duration", allow_zero: bool = False) -> timedelta:
    """Turn a timedelta, a number of seconds or a phrase like "1 hour 30 minutes" into a timedelta.

    Raises:
        ValidationError: negative, zero (unless allowed), or unreadable, naming ``what`` and the value.
    """
    if isinstance(value, bool):
        raise ValidationError(f"{what} must be a duration, got {value!r}")
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, (int, float)):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            result = timedelta(seconds=float(text))
        else:
            total = 0.0
            position = 0
            for match in _PART.finditer(text):
                if match.start() != position or match.group(2) not in _UNITS:
                    raise ValidationError(f"{what} {value!r} is not a duration such as '15 minutes' or '1 day'")
                total += float(match.group(1)) * _UNITS[match.group(2)]
                position = match.end()
            if position != len(text) or position == 0:
                raise ValidationError(f"{what} {value!r} is not a duration such as '15 minutes' or '1 day'")
            result = timedelta(seconds=total)
    else:
        raise ValidationError(f"{what} must be a timedelta, seconds or a string, got {type(value).__name__}")
    if result < timedelta(0) or (result == timedelta(0) and not allow_zero):
        raise ValidationError(f"{what} must be positive, got {value!r}")
    return result


def is_cron_expression(value: object) -> bool:
    """True for a 5-field cron expression such as ``"*/5 * * * *"``."""
    return isinstance(value, str) and len(value.split()) == 5 and croniter.is_valid(value)


class Interval:
    """When the next cycle of a cron is due: a fixed period or a cron expression."""

    def __init__(self, value: Duration) -> None:
        if isinstance(value, str) and len(value.split()) == 5 and not re.search(r"[a-z]{3,}", value.lower()):
            if not croniter.is_valid(value):
                raise ValidationError(f"interval {value!r} is not a valid 5-field cron expression")
            self.expression: str | None = value
            self.period: timedelta | None = None
        else:
            self.expression = None
            self.period = parse_duration(value, what="interval")
        self.text = value if isinstance(value, str) else str(self.period.total_seconds() if self.period else value)

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after ``moment``."""
        if self.period is not None:
            return moment + self.period
        assert self.expression is not None
        following: datetime = croniter(self.expression, moment).get_next(datetime)
        return following
