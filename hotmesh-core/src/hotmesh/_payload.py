"""Payload checks at the call site, before anything is written (promise C7): the shape of the
positional arguments and size limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hotmesh.errors import PayloadTooLargeError, SerializationError
from hotmesh.providers import JSONValue, check_json, dumps


def json_args(args: object, what: str = "args") -> list[JSONValue]:
    """``args`` as a list of JSON values, or SerializationError naming ``what``.

    A string, bytes or a mapping is refused rather than split into characters or keys
    (``args="abc"`` would otherwise call ``f("a", "b", "c")``, ``args={"x": 1}`` ``f("x")``), and
    a non-iterable is named instead of surfacing as a bare TypeError.
    """
    if isinstance(args, (str, bytes, bytearray, Mapping)) or not isinstance(args, Iterable):
        raise SerializationError(
            f"{what} must be a list (or tuple) of JSON values, one per positional argument;"
            f" got {type(args).__name__}",
            path=what,
        )
    items: list[JSONValue] = list(args)
    check_json(items, what)
    return items


def check_size(
    value: Any, what: str, limit: int, source: str = "max_payload_bytes / HOTMESH_MAX_PAYLOAD_BYTES"
) -> None:
    """Raise PayloadTooLargeError naming ``what``, its size, the limit and where the limit comes
    from when ``value``'s JSON is bigger."""
    size = len(dumps(value, what).encode("utf-8"))
    if size > limit:
        raise PayloadTooLargeError(
            f"{what} is {size:,} bytes of JSON, over the limit of {limit:,} bytes ({source}):"
            " pass a reference (an id, a URL) instead of the data"
        )
