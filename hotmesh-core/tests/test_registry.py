"""Discovery: entry points, the URL registry and its error messages."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hotmesh.backends.memory import MemoryStore
from hotmesh.errors import ConfigError, ProviderNotFoundError, redact_url
from hotmesh.providers import ProviderRegistry, ProviderSpec, Role, Store, default_registry


def test_builtin_providers_register_through_entry_points() -> None:
    names = {(s.role, s.name) for s in default_registry().specs()}
    for role in Role:
        assert (role, "memory") in names
        assert (role, "sqlite") in names


def test_unknown_scheme_names_installed_providers_and_package() -> None:
    with pytest.raises(ProviderNotFoundError) as info:
        default_registry().create(Role.STORE, "bogus://x", namespace="t")
    text = str(info.value)
    assert "bogus" in text and "memory" in text and "sqlite" in text


def test_typo_gets_did_you_mean() -> None:
    with pytest.raises(ProviderNotFoundError, match="Did you mean 'redis'"):
        default_registry().create(Role.STORE, "reddis://localhost", namespace="t")


def test_first_party_scheme_gets_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import hotmesh.providers._registry as registry_module

    monkeypatch.setattr(registry_module, "_installed", lambda distribution: False)
    registry = ProviderRegistry(autoload=False)
    with pytest.raises(ProviderNotFoundError, match="pip install hotmesh-redis"):
        registry.create(Role.STORE, "redis://:hunter2@localhost", namespace="t")


def test_errors_redact_passwords() -> None:
    assert redact_url("redis://user:hunter2@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("postgresql://h/db?password=hunter2&x=1") == "postgresql://h/db?password=***&x=1"
    assert redact_url("nats://a:b@h1,nats://c:d@h2").count("***") == 2
    registry = ProviderRegistry(autoload=False)
    with pytest.raises(ProviderNotFoundError) as info:
        registry.create(Role.STORE, "nope://u:hunter2@h", namespace="t")
    assert "hunter2" not in str(info.value)


def test_instances_without_registry() -> None:
    registry = ProviderRegistry(autoload=False)
    registry.add(
        ProviderSpec(
            role=Role.STORE,
            name="fake",
            schemes=("fake",),
            factory="hotmesh.backends.memory:MemoryStore",
            distribution="x",
        )
    )
    with pytest.raises(ConfigError):  # the memory store refuses a foreign scheme
        registry.create(Role.STORE, "fake://", namespace="t")
    store = MemoryStore("memory://", namespace="t")
    assert isinstance(store, Store)


def test_cli_lists_providers() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hotmesh", "providers"], check=True, capture_output=True, text=True
    ).stdout
    assert "memory" in out and "sqlite" in out and "store.ttl" in out
