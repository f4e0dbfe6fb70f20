"""Configuration: precedence, validation, and errors that never show passwords."""

from __future__ import annotations

from pathlib import Path

import pytest

from hotmesh.config import DEFAULT_URL, load_config
from hotmesh.errors import ConfigError
from hotmesh.providers import Role


def test_default_is_an_sqlite_file() -> None:
    config = load_config(environ={})
    assert config.url == DEFAULT_URL
    assert all(config.url_for(role).startswith("sqlite:///") for role in Role)


def test_arguments_beat_environment_beat_file(tmp_path: Path) -> None:
    file = tmp_path / "hotmesh.toml"
    file.write_text('[hotmesh]\nurl = "memory://file"\nnamespace = "from_file"\nstream = "memory://s"\n')
    env = {"HOTMESH_CONFIG": str(file), "HOTMESH_URL": "memory://env"}
    config = load_config(environ=env, namespace="from_args")
    assert config.url == "memory://env"
    assert config.namespace == "from_args"
    assert config.url_for(Role.STREAM) == "memory://s"
    assert config.url_for(Role.STORE) == "memory://env"


def test_per_role_environment() -> None:
    config = load_config(environ={"HOTMESH_URL": "memory://", "HOTMESH_SEARCH_URL": "sqlite:///x.db"})
    assert config.url_for(Role.SEARCH) == "sqlite:///x.db"
    assert config.explicit(Role.SEARCH) and not config.explicit(Role.STORE)


@pytest.mark.parametrize("url", ["", "localhost:6379", "redis:/x", "://nohost"])
def test_malformed_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        load_config(url=url, environ={})


def test_wrong_option_types_are_named() -> None:
    with pytest.raises(ConfigError, match="namespace"):
        load_config(namespace="has space", environ={})
    with pytest.raises(ConfigError, match="unknown roles"):
        load_config(options={"storage": {}}, environ={})


def test_unknown_file_key_is_rejected(tmp_path: Path) -> None:
    file = tmp_path / "h.toml"
    file.write_text('[hotmesh]\nurll = "memory://"\n')
    with pytest.raises(ConfigError, match="urll"):
        load_config(config_file=file, environ={})


def test_passwords_never_appear_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(url="redis:/user:hunter2@host", environ={})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError) as info2:
        load_config(store="redis//:hunter2@host", environ={})
    assert "hunter2" not in str(info2.value)


def test_timer_lease_from_arguments_and_environment() -> None:
    assert load_config(environ={}).timer_lease == 30.0
    assert load_config(environ={"HOTMESH_TIMER_LEASE": "2.5"}).timer_lease == 2.5
    assert load_config(timer_lease=4, environ={"HOTMESH_TIMER_LEASE": "2.5"}).timer_lease == 4.0
    with pytest.raises(ConfigError, match="timer_lease"):
        load_config(timer_lease=0, environ={})
