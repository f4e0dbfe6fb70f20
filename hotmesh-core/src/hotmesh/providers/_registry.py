"""ProviderRegistry: a typed facade over pluggy mapping (role, URL scheme or name) to providers.

Created on first use, never at import time, so tests can build one with ``autoload=False`` and
``add()`` fakes (the habit that avoids datasette's and llm's module-level plugin manager).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pluggy

from hotmesh.errors import ConfigError, ProviderNotFoundError, redact_url
from hotmesh.providers import _hookspecs
from hotmesh.providers._spec import ProviderSpec, Role

#: First-party schemes and names and the distribution that provides them, for install hints.
KNOWN_DISTRIBUTIONS: Mapping[str, str] = {
    "redis": "hotmesh-redis",
    "rediss": "hotmesh-redis",
    "unix": "hotmesh-redis",
    "postgresql": "hotmesh-postgres",
    "postgres": "hotmesh-postgres",
    "nats": "hotmesh-nats",
    "tls": "hotmesh-nats",
    "sqlite": "hotmesh-core",
    "memory": "hotmesh-core",
}


def url_scheme(url: str) -> str:
    """Return the lower-cased scheme of a provider URL, or raise ConfigError."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"a provider URL must be a non-empty string, got {url!r}")
    if "://" not in url:
        raise ConfigError(
            f"malformed provider URL {redact_url(url)!r}: expected scheme://..., "
            "e.g. sqlite:///path/to/file.db, memory://, redis://localhost:6379"
        )
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ConfigError(f"malformed provider URL {redact_url(url)!r}: {exc}") from None
    if not scheme:
        raise ConfigError(f"malformed provider URL {redact_url(url)!r}: no scheme")
    return scheme


class ProviderRegistry:
    """Provider specs by role, name and scheme, filled through the ``hotmesh`` entry points.

    Environment:
        HOTMESH_PLUGINS: comma-separated allow-list of entry-point names to load.
        HOTMESH_DISABLE_PLUGINS: comma-separated entry-point names not to load.
    """

    def __init__(self, *, autoload: bool = True) -> None:
        self._specs: dict[tuple[Role, str], ProviderSpec] = {}
        self._autoload = autoload
        self._discovered = False
        #: entry points that failed to load: name -> reason (shown by the CLI and in errors)
        self.broken: dict[str, str] = {}

    def add(self, spec: ProviderSpec) -> None:
        """Register a spec; a later spec with the same (role, name) replaces the earlier one."""
        self._specs[(spec.role, spec.name)] = spec

    def discover(self) -> None:
        """Load entry points of group ``hotmesh`` once and let each register its specs."""
        if self._discovered or not self._autoload:
            self._discovered = True
            return
        self._discovered = True
        manager = pluggy.PluginManager(_hookspecs.PROJECT_NAME)
        manager.add_hookspecs(_hookspecs)
        allowed = _env_list("HOTMESH_PLUGINS")
        blocked = set(_env_list("HOTMESH_DISABLE_PLUGINS") or ())
        for entry_point in importlib.metadata.entry_points(group=_hookspecs.PROJECT_NAME):
            name = entry_point.name
            if name in blocked or (allowed is not None and name not in allowed):
                continue
            if manager.get_plugin(name) is not None:
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin must not hide the others; it is reported
                dist = entry_point.dist.name if entry_point.dist is not None else "?"
                self.broken[name] = f"{dist}: {type(exc).__name__}: {exc}"
                continue
            manager.register(plugin, name=name)
        manager.check_pending()
        manager.hook.hotmesh_register_providers(registry=self)

    def specs(self, role: Role | None = None) -> list[ProviderSpec]:
        """All specs (of one role), sorted by role then name."""
        self.discover()
        found = [s for s in self._specs.values() if role is None or s.role == role]
        return sorted(found, key=lambda s: (s.role.value, s.name))

    def get(self, role: Role, name: str) -> ProviderSpec:
        """The spec registered for ``role`` under ``name``; ProviderNotFoundError otherwise."""
        self.discover()
        spec = self._specs.get((role, name))
        if spec is None:
            raise self._not_found(role, name, self._names(role))
        return spec

    def for_url(self, role: Role, url: str) -> ProviderSpec:
        """The spec serving ``url``'s scheme for ``role``; ProviderNotFoundError otherwise."""
        scheme = url_scheme(url)
        self.discover()
        for spec in self.specs(role):
            if scheme in spec.schemes:
                return spec
        schemes = sorted({s for spec in self.specs(role) for s in spec.schemes})
        raise self._not_found(role, scheme, schemes, what="scheme")

    def create(
        self,
        role: Role,
        url: str,
        *,
        namespace: str,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Build (without I/O) the provider serving ``url`` for ``role``."""
        spec = self.for_url(role, url)
        return spec.create(url, namespace=namespace, options=options or {})

    def _names(self, role: Role) -> list[str]:
        return sorted(s.name for s in self.specs(role))

    def _not_found(
        self, role: Role, name: str, available: Iterable[str], *, what: str = "name"
    ) -> ProviderNotFoundError:
        available = list(available)
        parts = [f"no {role} provider for {what} {name!r}."]
        close = difflib.get_close_matches(name, sorted(set(available) | set(KNOWN_DISTRIBUTIONS)), n=1)
        close = [c for c in close if c != name]
        if close:
            parts.append(f"Did you mean {close[0]!r}?")
        installed = sorted({s.name for s in self.specs()})
        parts.append(
            f"Available for {role}: {', '.join(available) or 'none'}"
            f" (installed providers: {', '.join(installed) or 'none'})."
        )
        if self.broken:
            parts.append(
                "Plugins that failed to load: "
                + "; ".join(f"{k} ({v})" for k, v in sorted(self.broken.items()))
                + "."
            )
        dist = KNOWN_DISTRIBUTIONS.get(name)
        if dist and dist != "hotmesh-core" and not _installed(dist):
            parts.append(f"{dist} is not installed: pip install {dist}")
        elif dist:
            parts.append(
                f"{dist} provides no {role} provider for {name!r}: configure {role}= with a"
                f" backend that has one (e.g. {role}=sqlite:///hotmesh.db)."
            )
        return ProviderNotFoundError(" ".join(parts))


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


_default: ProviderRegistry | None = None


def default_registry() -> ProviderRegistry:
    """The process-wide registry, created (and discovered) on first use."""
    global _default
    if _default is None:
        _default = ProviderRegistry()
    return _default


def _reset_default_registry() -> None:
    """Forget the process-wide registry (tests that install plugins at run time)."""
    global _default
    _default = None


def invalid_option(provider: str, error: Exception) -> ConfigError:
    """A ConfigError for options a provider rejected, naming each bad option and why.

    A pydantic error's own text quotes every rejected value (``input_value='...'``), and an
    option may be a secret (a misspelt ``passwrd=`` in a URL query): only the option's name and
    pydantic's message are kept, never the value.
    """
    errors = getattr(error, "errors", None)
    if callable(errors):
        try:
            found = errors(include_input=False, include_url=False)
        except TypeError:  # not pydantic's: use its text
            found = None
        if found:
            text = "; ".join(
                f"{'.'.join(str(part) for part in item.get('loc', ())) or 'options'}: {item.get('msg', '?')}"
                for item in found
            )
            return ConfigError(f"invalid options for the {provider} provider: {text}")
    return ConfigError(f"invalid options for the {provider} provider: {error}")
