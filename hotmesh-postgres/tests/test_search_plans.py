"""Search query plans: the query shapes MeshData issues are served by indexes (plan shape only).

20,000 documents are loaded straight into ``search_docs`` (one INSERT ... SELECT) and analyzed;
then each shape's exact statement (``PostgresSearch._statement``) is EXPLAINed (FORMAT JSON, no
ANALYZE: nothing here depends on timing) with its parameters bound, as the provider sends it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from conftest import requires_server
from psycopg import sql

from hotmesh.providers import And, Condition, FieldType, IndexSpec, Op, Or, Query, SearchField
from hotmesh_postgres import PostgresSearch, _search
from hotmesh_postgres._schema import SchemaNames
from hotmesh_postgres._search import field_indexes, field_statistics, index_prefix

pytestmark = [pytest.mark.anyio, requires_server]

N = 20_000
SPEC = IndexSpec(
    "bench",
    (
        SearchField("id", FieldType.TAG),
        SearchField("first", FieldType.TEXT, nostem=True),
        SearchField("active", FieldType.TAG),
        SearchField("grp", FieldType.TAG),
        SearchField("created", FieldType.NUMERIC, sortable=True),
    ),
)
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken", "Dennis", "Margaret", "John"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _subplan(plan: dict[str, Any], name: str) -> dict[str, Any]:
    for node in _nodes(plan):
        if node.get("Subplan Name", "").startswith(name):
            return node
    raise AssertionError(f"no {name} in the plan")


def _scans(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(node type, index) of every node reading search_docs (bitmap index scans included)."""
    return [
        (n["Node Type"], n.get("Index Name"))
        for n in _nodes(plan)
        if n.get("Relation Name") == "search_docs" or n["Node Type"] == "Bitmap Index Scan"
    ]


@pytest.fixture
async def loaded(url: str, namespace: str) -> AsyncIterator[PostgresSearch]:
    search = PostgresSearch(url, namespace=namespace, options={"pool_max_size": 2})
    await search.open()
    await search.create_index(SPEC)
    schema = SchemaNames.for_namespace(namespace).ident
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.search_docs (index_name, doc_id, fields, words)"
                " SELECT 'bench', 'r' || i, jsonb_build_object('id', 'r' || i,"
                " 'first', (%(names)s::text[])[i %% 10 + 1],"
                " 'active', CASE WHEN i %% 2 = 0 THEN 'yes' ELSE 'no' END,"
                " 'grp', 'g' || (i %% 100), 'created', i),"
                " jsonb_build_object('first', jsonb_build_array(lower((%(names)s::text[])[i %% 10 + 1])))"
                " FROM generate_series(0, %(n)s - 1) i"
            ).format(schema),
            {"names": NAMES, "n": N},
        )
        conn.execute(sql.SQL("VACUUM ANALYZE {}.search_docs").format(schema))
    try:
        yield search
    finally:
        await search.aclose()


async def _plan(url: str, search: PostgresSearch, query: Query) -> dict[str, Any]:
    statement, params = search._statement(SPEC, query)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement), params).fetchone()
    assert row is not None
    return row[0][0]["Plan"]


def _where(*conditions: Condition) -> And:
    return And(tuple(conditions))


async def test_selective_tag_uses_the_field_index_for_count_and_page(url: str, loaded: PostgresSearch) -> None:
    plan = await _plan(url, loaded, Query("bench", _where(Condition("id", Op.EQ, "r777"))))
    scans = _scans(plan)
    assert all(kind != "Seq Scan" for kind, _ in scans), scans
    ids = [name for _, name in scans if name and name.endswith("_ta_id")]
    assert len(ids) == 2, f"count and page both read the id index: {scans}"
    found = await loaded.query(Query("bench", _where(Condition("id", Op.EQ, "r777"))))
    assert found.total == 1 and found.hits[0].doc_id == "r777"


async def test_broad_tag_page_walks_an_index_in_id_order_without_sorting(url: str, loaded: PostgresSearch) -> None:
    plan = await _plan(url, loaded, Query("bench", _where(Condition("active", Op.EQ, "yes")), limit=10))
    page = _subplan(plan, "InitPlan 2")
    kinds = [n["Node Type"] for n in _nodes(page)]
    assert "Sort" not in kinds, f"the page must not sort every match: {kinds}"
    assert "Limit" in kinds
    assert any(name and name.endswith("_ta_active") for _, name in _scans(page)), _scans(page)


async def test_numeric_range_sorted_descending_is_one_index_range_scan(url: str, loaded: PostgresSearch) -> None:
    query = Query(
        "bench",
        _where(Condition("created", Op.BETWEEN, (10_000, 11_000))),
        sort_by="created",
        descending=True,
        limit=10,
    )
    plan = await _plan(url, loaded, query)
    assert all(kind != "Seq Scan" for kind, _ in _scans(plan)), _scans(plan)
    page = _subplan(plan, "InitPlan 2")
    assert "Sort" not in [n["Node Type"] for n in _nodes(page)]
    assert any(name and name.endswith("_nd_created") for _, name in _scans(page)), _scans(page)
    found = await loaded.query(query)
    assert found.total == 1001
    assert [h.doc_id for h in found.hits] == [f"r{i}" for i in range(11_000, 10_990, -1)]


async def test_numeric_sort_of_all_documents_pages_through_the_index(url: str, loaded: PostgresSearch) -> None:
    plan = await _plan(url, loaded, Query("bench", None, sort_by="created", offset=100, limit=10))
    page = _subplan(plan, "InitPlan 2")
    assert "Sort" not in [n["Node Type"] for n in _nodes(page)]
    assert any(name and name.endswith("_na_created") for _, name in _scans(page)), _scans(page)


async def test_tag_and_numeric_and_text_and_in_are_index_driven(url: str, loaded: PostgresSearch) -> None:
    for where in (
        _where(Condition("grp", Op.EQ, "g7"), Condition("created", Op.GT, N // 2)),
        _where(Condition("first", Op.MATCH, "ada")),
        _where(Condition("grp", Op.IN, ("g1", "g2"))),
        Or((Condition("id", Op.EQ, "r1"), Condition("created", Op.LT, 5))),
    ):
        plan = await _plan(url, loaded, Query("bench", where, limit=10))
        scans = _scans(plan)
        assert scans and all(kind != "Seq Scan" for kind, _ in scans), (where, scans)


async def test_default_order_without_conditions_uses_the_keyset_index(url: str, loaded: PostgresSearch) -> None:
    plan = await _plan(url, loaded, Query("bench", None, offset=20, limit=10))
    page = _subplan(plan, "InitPlan 2")
    assert "Sort" not in [n["Node Type"] for n in _nodes(page)]
    assert ("Index Scan", "search_docs_keyset") in _scans(page) or (
        "Index Only Scan",
        "search_docs_keyset",
    ) in _scans(page), _scans(page)


async def test_field_indexes_follow_the_spec_and_go_with_drop_index(
    url: str, loaded: PostgresSearch, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = SchemaNames.for_namespace(namespace).schema
    prefix = index_prefix("bench")

    def present() -> tuple[set[str], set[str]]:
        with psycopg.connect(url, autocommit=True) as conn:
            indexes = {
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND starts_with(indexname, %s)",
                    (schema, prefix),
                )
            }
            stats = {
                r[0]
                for r in conn.execute(
                    "SELECT s.stxname FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace"
                    " WHERE n.nspname = %s AND starts_with(s.stxname, %s)",
                    (schema, prefix),
                )
            }
        return indexes, stats

    indexes, stats = present()
    assert indexes == set(field_indexes(SPEC)), "names are deterministic"
    assert len(indexes) == 5  # id, active, grp, created asc + desc (TEXT uses the words GIN)
    assert stats == set(field_statistics(SPEC))
    # Replacing the spec drops what it no longer needs (here on the CONCURRENTLY path).
    monkeypatch.setattr(_search, "_CONCURRENT_ROWS", 1000)
    smaller = IndexSpec("bench", (SearchField("id", FieldType.TAG), SearchField("first", FieldType.TEXT)))
    await loaded.create_index(smaller)
    assert present() == (set(field_indexes(smaller)), set(field_statistics(smaller)))
    await loaded.drop_index("bench")
    assert present() == (set(), set())


async def test_wrong_typed_values_never_match_and_ne_keeps_missing_fields(url: str, namespace: str) -> None:
    spec = IndexSpec("t", (SearchField("a", FieldType.TAG), SearchField("n", FieldType.NUMERIC)))
    async with PostgresSearch(url, namespace=namespace, options={"pool_max_size": 2}) as search:
        await search.create_index(IndexSpec("t", ()))
        await search.upsert("t", "d1", {"a": 5, "n": "5"})  # written before the fields were declared
        await search.upsert("t", "d2", {"a": "5", "n": 5})
        await search.upsert("t", "d3", {})
        await search.create_index(spec)

        async def ids(where: Any) -> list[str]:
            return [h.doc_id for h in (await search.query(Query("t", where))).hits]

        assert await ids(Condition("a", Op.EQ, "5")) == ["d2"]
        assert await ids(Condition("n", Op.EQ, 5)) == ["d2"]
        assert await ids(Condition("n", Op.IN, (5, 6.0))) == ["d2"]
        assert await ids(Condition("n", Op.GE, 0)) == ["d2"]
        assert await ids(Condition("a", Op.NE, "5")) == ["d1", "d3"]
        assert await ids(Condition("n", Op.NE, 5)) == ["d1", "d3"]
        await search.drop_index("t")


async def test_concurrent_create_index_from_two_providers(url: str, namespace: str) -> None:
    """The DDL is serialized by an advisory lock: no duplicate-name error, one set of indexes."""
    options = {"pool_max_size": 2}
    async with PostgresSearch(url, namespace=namespace, options=options) as a, PostgresSearch(
        url, namespace=namespace, options=options
    ) as b:
        for _ in range(3):
            await asyncio.gather(a.create_index(SPEC), b.create_index(SPEC), a.create_index(SPEC))
            await asyncio.gather(a.drop_index("bench"), b.drop_index("bench"))
        await asyncio.gather(a.create_index(SPEC), b.create_index(SPEC))
        schema = SchemaNames.for_namespace(namespace).schema
        with psycopg.connect(url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND starts_with(c.relname, %s) AND i.indisvalid",
                (schema, index_prefix("bench")),
            ).fetchall()
        assert {r[0] for r in rows} == set(field_indexes(SPEC))
        await a.drop_index("bench")
