"""JSON encoding shared by core and providers, with errors that name the offending path."""

from __future__ import annotations

import json
import math
from typing import Any

from hotmesh.errors import SerializationError
from hotmesh.providers._types import JSONValue


def check_json(value: Any, path: str = "$") -> None:
    """Raise SerializationError naming the first path inside ``value`` that JSON cannot carry.

    Rejects NaN/infinity (not JSON), non-string dict keys and any non-JSON type, so bad input
    fails at the call site before anything is written (promise C7).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SerializationError(f"{path} is {value!r}, which JSON cannot represent", path=path)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{path} has a non-string key {key!r} ({type(key).__name__}); JSON keys are strings",
                    path=path,
                )
            check_json(item, f"{path}[{key!r}]")
        return
    raise SerializationError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which is not JSON-serializable",
        path=path,
    )


def dumps(value: Any, path: str = "$") -> str:
    """Serialize to compact JSON, raising SerializationError with the path on failure."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        check_json(value, path)
        raise


def loads(text: str | bytes) -> JSONValue:
    """Parse JSON text."""
    result: JSONValue = json.loads(text)
    return result
