"""Payload size limits, checked at the call site before anything is written (promise C7)."""

from __future__ import annotations

from typing import Any

from hotmesh.errors import PayloadTooLargeError
from hotmesh.providers import dumps


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
