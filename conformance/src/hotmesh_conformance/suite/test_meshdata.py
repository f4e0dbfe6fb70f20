"""System-level conformance for MeshData (workflows as searchable records), against backend URLs.

Runs where the search role has a provider; ``find_where`` is checked against the kit's
brute-force evaluator (``searchmodel``) over the same records.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotmesh import MeshData, MeshFlow, errors, load_config
from hotmesh.config import HotMeshConfig
from hotmesh.providers import Query, Role
from hotmesh_conformance import searchmodel
from hotmesh_conformance._meshdata_model import HOSTILE, SCHEMA, condition_to_where

pytestmark = pytest.mark.anyio


@pytest.fixture
async def data_config(make_provider: Any, hotmesh_urls: dict[Role, str], hotmesh_namespace: str) -> AsyncIterator[HotMeshConfig]:
    for role in (Role.STORE, Role.STREAM, Role.SUB, Role.SEARCH):
        await make_provider(role)  # skips when the backend has no search provider
    yield load_config(
        url=hotmesh_urls[Role.STORE],
        store=hotmesh_urls[Role.STORE],
        stream=hotmesh_urls[Role.STREAM],
        sub=hotmesh_urls[Role.SUB],
        search=hotmesh_urls[Role.SEARCH],
        namespace=hotmesh_namespace,
        environ={},
    )
    await MeshFlow.shutdown(grace=1.0)


async def welcome(name: str) -> str:
    """The seed README's target: sets a searchable field from inside the workflow."""
    search = await MeshData.workflow.search()
    await search.set("active", "yes")
    count = await search.incr("visits", 2)
    assert await search.get("active") == "yes"
    return f"Welcome, {name}. ({count:g})"


async def plain(value: int) -> int:
    return value


@pytest.fixture
async def mesh_data(data_config: HotMeshConfig) -> MeshData:
    data = MeshData(data_config, SCHEMA)
    await data.create_search_index("user")
    await data.create_search_index("user")  # idempotent
    await data.connect("user", welcome)
    await data.create_search_index("item")
    await data.connect("item", plain)
    return data


async def test_exec_get_and_find_the_seed_example(mesh_data: MeshData) -> None:
    """MeshData: exec creates a record; fields set inside the workflow are visible when exec returns."""
    result = await mesh_data.exec(
        "user", ["James"], id="jim123", ttl="infinity", search={"data": {"id": "jim123", "name": "James", "created": 1}}
    )
    assert result == "Welcome, James. (2)"
    record = await mesh_data.get("user", "jim123", fields=["id", "name", "active", "visits"])
    assert record == {"id": "jim123", "name": "James", "active": "yes", "visits": 2}
    found = await mesh_data.find_where(
        "user",
        query=[{"field": "active", "is": "=", "value": "yes"}],
        limit={"start": 0, "size": 100},
        return_=["id", "name", "active"],
    )
    assert found.count == 1
    assert found.data == [{"$id": "jim123", "id": "jim123", "name": "James", "active": "yes"}]


async def test_set_incr_and_delete_from_outside(mesh_data: MeshData) -> None:
    """MeshData: record fields set, incremented and deleted from outside a workflow, store then index."""
    await mesh_data.exec("item", [1], id="i1", search={"data": {"id": "i1", "created": 10}})
    await mesh_data.set("item", "i1", {"active": "no", "first": "Ada Lovelace"})
    assert await mesh_data.incr("item", "i1", "created", 5) == 15
    found = await mesh_data.find_where("item", query=[{"field": "created", "is": "[]", "value": [15, 15]}])
    assert [d["$id"] for d in found.data] == ["i1"]
    assert (await mesh_data.find_where("item", query=[{"field": "first", "is": "=", "value": "lovelace"}])).count == 1
    await mesh_data.delete_fields("item", "i1", ["active"])
    assert "active" not in await mesh_data.get("item", "i1")
    assert (await mesh_data.find_where("item", query=[{"field": "active", "is": "=", "value": "no"}])).count == 0
    with pytest.raises(errors.WorkflowNotFoundError):
        await mesh_data.set("item", "missing", {"active": "x"})


async def test_hostile_values_are_data(mesh_data: MeshData) -> None:
    """MeshData (Search rule 5): quotes, braces, @, *, |, --, ;, % and unicode never change a query."""
    for i, value in enumerate(HOSTILE):
        await mesh_data.exec("item", [i], id=f"h{i}", search={"data": {"id": value, "active": "x"}})
    for i, value in enumerate(HOSTILE):
        found = await mesh_data.find_where("item", query=[{"field": "id", "is": "=", "value": value}], limit={"size": 50})
        assert [d["$id"] for d in found.data] == [f"h{i}"], value
    assert (await mesh_data.find_where("item", query=[{"field": "active", "is": "=", "value": "*"}])).count == 0


async def test_records_expire_with_their_ttl_and_leave_the_index(mesh_data: MeshData) -> None:
    """MeshData ttl: a record leaves the store and the index ttl after its workflow finished."""
    await mesh_data.exec("item", [1], id="short", ttl=1, search={"data": {"id": "short"}})
    await mesh_data.exec("item", [2], id="long", ttl="infinity", search={"data": {"id": "long"}})
    assert (await mesh_data.find_where("item", query=[{"field": "id", "is": "=", "value": "short"}])).count == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (await mesh_data.find_where("item", query=[{"field": "id", "is": "=", "value": "short"}])).count == 0:
            break
        await asyncio.sleep(0.2)
    assert (await mesh_data.find_where("item", query=[{"field": "id", "is": "=", "value": "short"}])).count == 0
    with pytest.raises(errors.WorkflowNotFoundError):
        await mesh_data.get("item", "short")
    assert (await mesh_data.get("item", "long"))["id"] == "long"


async def test_one_namespace_never_sees_another(mesh_data: MeshData, data_config: HotMeshConfig) -> None:
    """MeshData namespaces: records and indexes of one namespace are invisible from another."""
    other = f"{data_config.namespace}_b"
    await mesh_data.create_search_index("item", namespace=other)
    try:
        await mesh_data.connect("item", plain, namespace=other)
        await mesh_data.exec("item", [1], id="same", namespace=other, search={"data": {"id": "there"}})
        await mesh_data.exec("item", [1], id="same", search={"data": {"id": "here"}})
        assert (await mesh_data.get("item", "same"))["id"] == "here"
        assert (await mesh_data.get("item", "same", namespace=other))["id"] == "there"
        found = await mesh_data.find_where("item", query=[{"field": "id", "is": "=", "value": "there"}])
        assert found.count == 0
    finally:
        conn = await mesh_data._connection(other)
        for provider in (conn.store, conn.stream, conn.sub, conn.search):
            await provider.purge()


async def test_bad_queries_are_typed_errors(mesh_data: MeshData) -> None:
    """MeshData bad input: unknown operator, unknown field, bad schema -> ValidationError naming it."""
    with pytest.raises(errors.ValidationError, match="~"):
        await mesh_data.find_where("item", query=[{"field": "id", "is": "~", "value": "x"}])
    with pytest.raises(errors.ValidationError, match="nope"):
        await mesh_data.find_where("item", query=[{"field": "nope", "is": "=", "value": "x"}])
    with pytest.raises(errors.ValidationError, match="type"):
        MeshData(schema={"id": {"type": "KEYWORD"}})
    with pytest.raises(errors.SerializationError):
        await mesh_data.exec("item", [object()])
    with pytest.raises(errors.SerializationError, match="must be a list"):
        await mesh_data.exec("item", {"id": "x"})  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError, match="mapping"):
        await mesh_data.set("item", "never-written", ["active", "yes"])  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError, match="list of field names"):
        await mesh_data.delete_fields("item", "never-written", "active")  # not a, c, t, i, v, e


_tag = st.sampled_from(["yes", "no", "maybe", *HOSTILE[:4]])
_record = st.fixed_dictionaries(
    {"active": _tag, "created": st.integers(-5, 5)},
    optional={"first": st.sampled_from(["Ada Lovelace", "Alan Turing", "ada", "Grace"]), "id": _tag},
)
_clause = st.one_of(
    st.fixed_dictionaries({"field": st.just("active"), "is": st.sampled_from(["=", "!="]), "value": _tag}),
    st.fixed_dictionaries({"field": st.just("active"), "is": st.just("in"), "value": st.lists(_tag, min_size=1, max_size=3)}),
    st.fixed_dictionaries(
        {"field": st.just("created"), "is": st.sampled_from(["=", "<", "<=", ">", ">="]), "value": st.integers(-6, 6)}
    ),
    st.fixed_dictionaries(
        {"field": st.just("created"), "is": st.just("[]"), "value": st.tuples(st.integers(-6, 0), st.integers(0, 6)).map(list)}
    ),
    st.fixed_dictionaries({"field": st.just("first"), "is": st.just("="), "value": st.sampled_from(["ada", "turing", "grace hopper"])}),
)


@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=8)
@given(records=st.lists(_record, min_size=1, max_size=12), queries=st.lists(st.lists(_clause, max_size=3), min_size=1, max_size=5))
async def test_find_where_equals_brute_force(mesh_data: MeshData, records: list[dict[str, Any]], queries: list[list[dict[str, Any]]]) -> None:
    """MeshData property: find_where's count and records equal a brute-force evaluation."""
    entity = f"e{uuid.uuid4().hex[:8]}"
    await mesh_data.create_search_index(entity)
    await mesh_data.connect(entity, plain)
    ids = [f"{entity}-{i:02d}" for i in range(len(records))]  # record ids are unique per namespace
    await asyncio.gather(
        *(mesh_data.exec(entity, [0], id=rid, search={"data": data}) for rid, data in zip(ids, records, strict=True))
    )
    spec = SCHEMA.spec(entity)
    docs = dict(zip(ids, records, strict=True))
    for clauses in queries:
        found = await mesh_data.find_where(entity, query=clauses, limit={"start": 0, "size": 100})
        expected = searchmodel.evaluate(spec, docs, Query(entity, condition_to_where(clauses, spec), limit=100))
        assert found.count == expected.total, clauses
        assert [d["$id"] for d in found.data] == [h.doc_id for h in expected.hits], clauses
