"""Mapping HotMesh names (streams, groups, topics, ids) onto NATS subject tokens and KV keys.

Subject tokens may not contain ``.``, ``*``, ``>`` or whitespace, and KV keys allow only
``[-/_=.A-Za-z0-9]``; HotMesh names are arbitrary strings, so both are encoded reversibly.
"""

from __future__ import annotations

import base64
import hashlib
import re

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_\-]+$")


def token(name: str) -> str:
    """Encode ``name`` as one subject token (readable when already safe, reversible always)."""
    if _SAFE_TOKEN.match(name):
        return name
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"~{encoded}"


def untoken(tok: str) -> str:
    """Invert :func:`token`."""
    if not tok.startswith("~"):
        return tok
    body = tok[1:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def key(prefix: str, name: str) -> str:
    """A KV key ``<prefix>.<base64url(name)>`` (KV keys allow ``-_=`` and letters/digits)."""
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=") or "_"
    return f"{prefix}.{encoded}"


def unkey(kv_key: str) -> str:
    """Invert :func:`key`."""
    body = kv_key.split(".", 1)[1]
    if body == "_":
        return ""
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()


def durable(stream: str, group: str) -> str:
    """A bounded, filesystem-safe durable consumer name for (stream, group)."""
    digest = hashlib.sha256(f"{stream}\0{group}".encode()).hexdigest()[:24]
    return f"g_{digest}"
