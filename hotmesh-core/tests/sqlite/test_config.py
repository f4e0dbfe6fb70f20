"""URL forms, options and open() failures of the SQLite providers (Provider rule 1)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hotmesh.backends.sqlite import SqliteSearch, SqliteStore, SqliteStream, SqliteSub
from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import Capability, Role, default_registry

ALL = (SqliteStore, SqliteStream, SqliteSub, SqliteSearch)


@pytest.mark.parametrize("cls", ALL)
def test_memory_database_is_refused_with_a_pointer_to_memory(cls: type[SqliteStore]) -> None:
    with pytest.raises(ConfigError, match="memory://"):
        cls("sqlite:///:memory:", namespace="t_cfg")


def test_relative_and_absolute_paths(tmp_path: Path) -> None:
    assert SqliteStore(f"sqlite:///{tmp_path}/a.db", namespace="t").path == str(tmp_path / "a.db")
    assert SqliteStore("sqlite:///rel/a.db", namespace="t").path == os.path.abspath("rel/a.db")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:relative.db", "redis://localhost"])
def test_malformed_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        SqliteStore(url, namespace="t")


def test_bad_options_and_namespace() -> None:
    with pytest.raises(ConfigError, match="sqlite"):
        SqliteStore("sqlite:///x.db", namespace="t", options={"busy_timeout": 1})
    with pytest.raises(ConfigError):
        SqliteStore("sqlite:///x.db", namespace="t", options={"synchronous": "OFF"})
    with pytest.raises(ConfigError):
        SqliteStore("sqlite:///x.db", namespace="bad-name")


@pytest.mark.parametrize("cls", ALL)
def test_options_in_the_url_query_are_used_and_the_mapping_wins(cls: type[SqliteStore]) -> None:
    """Before, a query was silently dropped: ``?synchronous=NORMAL`` left FULL in force."""
    provider = cls("sqlite:///x.db?synchronous=NORMAL&busy_timeout_ms=250", namespace="t")
    assert (provider._options.synchronous, provider._options.busy_timeout_ms) == ("NORMAL", 250)
    assert provider.path == os.path.abspath("x.db")
    provider = cls("sqlite:///x.db?synchronous=NORMAL", namespace="t", options={"synchronous": "FULL"})
    assert provider._options.synchronous == "FULL"


def test_a_bad_option_in_the_url_query_is_named_without_its_value() -> None:
    with pytest.raises(ConfigError, match="synchronus: Extra inputs") as caught:
        SqliteStore("sqlite:///x.db?synchronus=NORMAL", namespace="t")
    assert "NORMAL" not in str(caught.value)
    with pytest.raises(ConfigError, match="passwd") as caught:
        SqliteStore("sqlite:///x.db?passwd=hunter2", namespace="t")
    assert "hunter2" not in str(caught.value)


def test_the_memory_provider_refuses_a_query_instead_of_ignoring_it() -> None:
    from hotmesh.backends.memory import MemoryStore

    with pytest.raises(ConfigError, match="no options"):
        MemoryStore("memory://x?pool_size=3", namespace="t")


def test_constructor_does_no_io(tmp_path: Path) -> None:
    SqliteStore(f"sqlite:///{tmp_path}/never.db", namespace="t")
    assert not (tmp_path / "never.db").exists()


@pytest.mark.anyio
async def test_missing_directory_is_a_provider_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "x.db"
    store = SqliteStore(f"sqlite:///{missing}", namespace="t")
    with pytest.raises(ProviderError, match=str(tmp_path / "nope")):
        await store.open()
    assert not (tmp_path / "nope").exists()


@pytest.mark.anyio
async def test_closed_provider_raises(tmp_path: Path) -> None:
    store = SqliteStore(f"sqlite:///{tmp_path}/c.db", namespace="t")
    async with store:
        pass
    await store.aclose()
    with pytest.raises(ProviderError, match="closed"):
        await store.get_job("x")


@pytest.mark.anyio
@pytest.mark.parametrize(("level", "words"), [("FULL", "every commit"), ("NORMAL", "checkpoints")])
async def test_info_states_durability(tmp_path: Path, level: str, words: str) -> None:
    async with SqliteStream(
        f"sqlite:///{tmp_path}/i.db", namespace="t", options={"synchronous": level}
    ) as stream:
        info = await stream.info()
    assert info.name == "sqlite" and info.server_version
    assert words in info.durability and f"wal/{level}" in info.durability


def test_registered_for_every_role_with_capabilities() -> None:
    for role in Role:
        spec = default_registry().for_url(role, "sqlite:///x.db")
        assert spec.name == "sqlite" and spec.distribution == "hotmesh-core"
        assert "provider.multi_process" in spec.capabilities
    store = SqliteStore("sqlite:///x.db", namespace="t")
    assert {Capability.STORE_TTL, Capability.ATOMIC_STORE_AND_STREAM, Capability.DURABLE} <= (
        store.capabilities
    )
