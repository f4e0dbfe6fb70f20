"""Configuration: which backend serves each role, from arguments, environment or a TOML file.

Precedence, highest first: explicit arguments, environment variables (``HOTMESH_URL``,
``HOTMESH_STORE_URL``, ``HOTMESH_STREAM_URL``, ``HOTMESH_SUB_URL``, ``HOTMESH_SEARCH_URL``,
``HOTMESH_NAMESPACE``), the ``[hotmesh]`` table of a TOML file (``HOTMESH_CONFIG`` or
``./hotmesh.toml``), then the default: one embedded SQLite file, ``sqlite:///hotmesh.db``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hotmesh.errors import ConfigError, redact_url
from hotmesh.providers import NAMESPACE_PATTERN, Role, url_scheme

__all__ = ["DEFAULT_URL", "HotMeshConfig", "load_config"]

DEFAULT_URL = "sqlite:///hotmesh.db"
"""Used when nothing is configured: ``pip install hotmesh-core`` alone runs durable workflows."""

_ROLES = tuple(Role)


class HotMeshConfig(BaseModel):
    """Where each role lives. One ``url`` for all roles is the common case.

    Attributes:
        url: the URL for every role not given its own.
        store, stream, sub, search: per-role URLs (override ``url``).
        namespace: scopes every key, table, subject and index; two namespaces never meet.
        options: per-role provider options, e.g. ``{"store": {"pool_size": 20}}``, validated by
            the provider itself.
        search_required: fail at connect when no provider serves search for its URL (otherwise
            search is simply unavailable and MeshData says so when used).
        timer_lease: seconds a scheduler holds a claimed timer before another engine may fire
            it; a crashed engine's timers fire this much late (at most), a live engine must
            publish within it.
        max_payload_bytes: the largest JSON argument, result or signal accepted (default 1 MiB,
            the default max_payload of a NATS server); bigger ones fail at the call site.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = DEFAULT_URL
    store: str | None = None
    stream: str | None = None
    sub: str | None = None
    search: str | None = None
    namespace: str = Field(default="hotmesh", pattern=NAMESPACE_PATTERN)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    search_required: bool = False
    timer_lease: float = Field(default=30.0, gt=0.0, le=3600.0)
    max_payload_bytes: int = Field(default=1_048_576, ge=1024)

    @field_validator("url", "store", "stream", "sub", "search")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            url_scheme(value)  # raises ConfigError naming the (redacted) URL
        return value

    @field_validator("options")
    @classmethod
    def _check_roles(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        unknown = sorted(set(value) - {r.value for r in _ROLES})
        if unknown:
            raise ValueError(f"options for unknown roles {unknown}; roles are store, stream, sub, search")
        return value

    def url_for(self, role: Role) -> str:
        """The URL serving ``role``."""
        own: str | None = getattr(self, role.value)
        return own if own is not None else self.url

    def explicit(self, role: Role) -> bool:
        """Whether the role was given its own URL (then a missing provider is an error)."""
        return getattr(self, role.value) is not None

    def describe(self) -> dict[str, str]:
        """Role -> URL with passwords redacted, for logs and errors."""
        return {role.value: redact_url(self.url_for(role)) for role in _ROLES}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if environ.get("HOTMESH_URL"):
        found["url"] = environ["HOTMESH_URL"]
    for role in _ROLES:
        value = environ.get(f"HOTMESH_{role.value.upper()}_URL")
        if value:
            found[role.value] = value
    if environ.get("HOTMESH_NAMESPACE"):
        found["namespace"] = environ["HOTMESH_NAMESPACE"]
    if environ.get("HOTMESH_TIMER_LEASE"):
        found["timer_lease"] = environ["HOTMESH_TIMER_LEASE"]
    if environ.get("HOTMESH_MAX_PAYLOAD_BYTES"):
        found["max_payload_bytes"] = environ["HOTMESH_MAX_PAYLOAD_BYTES"]
    return found


def _from_file(path: Path | None, environ: Mapping[str, str]) -> dict[str, Any]:
    if path is None:
        named = environ.get("HOTMESH_CONFIG")
        if named:
            path = Path(named)
            if not path.is_file():
                raise ConfigError(f"HOTMESH_CONFIG names {str(path)!r}, which is not a file")
        elif Path("hotmesh.toml").is_file():
            path = Path("hotmesh.toml")
        else:
            return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read the configuration file {str(path)!r}: {exc}") from exc
    table = data.get("hotmesh", {})
    if not isinstance(table, dict):
        raise ConfigError(f"[hotmesh] in {str(path)!r} must be a table")
    return table


def load_config(
    *,
    url: str | None = None,
    store: str | None = None,
    stream: str | None = None,
    sub: str | None = None,
    search: str | None = None,
    namespace: str | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    timer_lease: float | None = None,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> HotMeshConfig:
    """Merge arguments, environment, file and defaults into a validated HotMeshConfig.

    Raises:
        ConfigError: a malformed URL, an unknown key or a wrong type, named (never a password).
    """
    env = os.environ if environ is None else environ
    merged: dict[str, Any] = _from_file(Path(config_file) if config_file else None, env)
    merged.update(_from_env(env))
    given = {
        "url": url,
        "store": store,
        "stream": stream,
        "sub": sub,
        "search": search,
        "namespace": namespace,
        "options": {k: dict(v) for k, v in options.items()} if options is not None else None,
        "timer_lease": timer_lease,
    }
    merged.update({k: v for k, v in given.items() if v is not None})
    try:
        return HotMeshConfig(**merged)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
    except ConfigError:
        raise


def _explain(exc: ValidationError) -> str:
    """Pydantic's errors without input values (they could hold passwords)."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "config"
        message = str(error["msg"])
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):
            message = str(cause)
        lines.append(f"{where}: {message}")
    return "invalid HotMesh configuration: " + "; ".join(lines)
