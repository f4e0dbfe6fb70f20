"""URL and option parsing for the SQLite providers (no I/O: Provider rule 1)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from hotmesh.errors import ConfigError
from hotmesh.providers import invalid_option, url_scheme


class SqliteOptions(BaseModel):
    """Options shared by the four SQLite providers.

    Attributes:
        busy_timeout_ms: how long a writer waits for another process's write lock before the
            call fails with a retryable ProviderError.
        synchronous: ``FULL`` fsyncs the WAL on every commit (survives power loss); ``NORMAL``
            fsyncs at checkpoints only (survives a process crash, may lose the last commits on
            power loss).
        poll_interval_ms: how often blocked stream reads and subscriptions look at the file for
            writes by other processes (same-process writes wake them at once).
        sub_retention_s: how long sub notifications stay in the file for slow subscribers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    poll_interval_ms: int = Field(default=50, ge=1, le=60_000)
    sub_retention_s: float = Field(default=60.0, gt=0)


def parse_options(options: Mapping[str, Any] | None, *, url: str = "") -> SqliteOptions:
    """Validate options; a bad one raises ConfigError (pydantic's text, no values echoed).

    Options may also come in the URL's query (``sqlite:///app.db?synchronous=NORMAL``), as with
    the server backends; the ``options`` mapping wins over them. An unknown name in either is
    an error rather than silently ignored (before, a URL query was dropped without a word).
    """
    query = dict(parse_qsl(url.split("?", 1)[1], keep_blank_values=True)) if "?" in url else {}
    try:
        return SqliteOptions.model_validate({**query, **dict(options or {})})
    except PydanticValidationError as exc:
        raise invalid_option("sqlite", exc) from None


def parse_path(url: str) -> str:
    """The absolute file path of a ``sqlite:///path`` URL.

    ``sqlite:///rel/x.db`` is relative to the working directory and ``sqlite:////abs/x.db`` is
    absolute (SQLAlchemy's convention). ``:memory:`` is refused: a private in-memory database
    cannot be shared by processes, which is the point of this provider.
    """
    scheme = url_scheme(url)
    if scheme != "sqlite":
        raise ConfigError(f"the sqlite provider takes sqlite:///path URLs, not {scheme}://")
    rest = url.split("://", 1)[1]
    if not rest.startswith("/"):
        raise ConfigError(
            f"malformed sqlite URL {url!r}: use sqlite:///relative/path.db or "
            "sqlite:////absolute/path.db (three slashes, then the path)"
        )
    path = rest[1:].split("?", 1)[0]
    if not path:
        raise ConfigError(f"the sqlite URL {url!r} names no file")
    if path in (":memory:", "") or path.startswith("file::memory:") or "mode=memory" in url:
        raise ConfigError(
            "sqlite:///:memory: is not supported: it cannot be shared between processes. "
            "Use memory:// for an in-process backend, or sqlite:///path/to/file.db"
        )
    return os.path.abspath(path)
