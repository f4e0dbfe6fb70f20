"""Provider rule 1: no I/O in the constructor, ConfigError for bad options, clean errors."""

from __future__ import annotations

import pytest

from hotmesh.errors import ConfigError, ProviderError
from hotmesh.providers import Role, default_registry
from hotmesh_postgres import PostgresSearch, PostgresStore, PostgresStream, PostgresSub
from hotmesh_postgres._schema import SchemaNames

pytestmark = pytest.mark.anyio
CLASSES = [PostgresStore, PostgresStream, PostgresSub, PostgresSearch]


@pytest.mark.parametrize("cls", CLASSES)
def test_constructor_does_no_io(cls: type) -> None:
    provider = cls("postgresql://nobody:pw@203.0.113.1:1/none", namespace="n1", options={})
    assert provider.namespace == "n1"


@pytest.mark.parametrize(
    "options", [{"bogus": 1}, {"pool_max_size": 0}, {"pool_min_size": 5, "pool_max_size": 2}]
)
def test_bad_options_raise_config_error(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PostgresStore("postgresql://x@127.0.0.1/test", namespace="n", options=options)


@pytest.mark.parametrize("namespace", ["", "1abc", "a-b", "a;drop", 'x"y'])
def test_bad_namespace_raises_config_error(namespace: str) -> None:
    with pytest.raises(ConfigError):
        PostgresStore("postgresql://x@127.0.0.1/test", namespace=namespace)


def test_wrong_scheme() -> None:
    with pytest.raises(ConfigError):
        PostgresStore("redis://127.0.0.1", namespace="n")


async def test_unreachable_names_host_without_password() -> None:
    store = PostgresStore(
        "postgresql://user:hunter2@127.0.0.1:1/test",
        namespace="n",
        options={"connect_timeout": 1},
    )
    with pytest.raises(ProviderError) as caught:
        await store.open()
    assert "127.0.0.1:1" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_long_namespace_fits_identifier_limit() -> None:
    names = SchemaNames.for_namespace("a" * 63)
    assert len(names.schema) <= 63
    assert names.schema != SchemaNames.for_namespace("a" * 62 + "b").schema


@pytest.mark.parametrize("role", list(Role))
def test_registered_for_both_schemes(role: Role) -> None:
    for url in ("postgresql://u@h/db", "postgres://u@h/db"):
        assert default_registry().for_url(role, url).distribution == "hotmesh-postgres"
