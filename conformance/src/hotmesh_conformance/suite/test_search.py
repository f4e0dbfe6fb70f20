"""Search rules 1-9 (hotmesh/providers/search.py), checked against the kit's brute-force model."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotmesh.errors import CapabilityNotSupportedError, ValidationError
from hotmesh.providers import (
    And,
    Capability,
    Condition,
    FieldType,
    IndexSpec,
    JSONValue,
    Op,
    Or,
    Query,
    QueryResult,
    SearchField,
    Where,
)
from hotmesh_conformance.helpers import forbids, requires, skip_unless
from hotmesh_conformance.searchmodel import evaluate

pytestmark = pytest.mark.anyio

SPEC = IndexSpec(
    "jobs",
    (
        SearchField("title", FieldType.TEXT, nostem=True),
        SearchField("status", FieldType.TAG),
        SearchField("n", FieldType.NUMERIC, sortable=True),
    ),
)
Docs = dict[str, dict[str, JSONValue]]
DOCS: Docs = {
    "a": {"title": "Alpha bravo charlie", "status": "open", "n": 1},
    "b": {"title": "bravo delta", "status": "done", "n": 2.5},
    "c": {"title": "charlie echo", "status": "open", "n": -3},
    "d": {"title": "delta", "status": "failed"},
    "e": {"status": "done", "n": 2.5},
}
HOSTILE = [
    'say "hi"',
    "it's",
    "{braces}",
    "a@b.c",
    "*",
    "x|y",
    "--",
    "a;b",
    "50%",
    "ünïcödé 漢字",
    "back\\slash",
    "sp ace",
    "(paren)",
    "-neg",
    "$1",
    "~tilde",
    "a:b",
]


async def load(search: Any, docs: dict[str, dict[str, JSONValue]] = DOCS, spec: IndexSpec = SPEC) -> None:
    await search.create_index(spec)
    for doc_id, fields in docs.items():
        await search.upsert(spec.name, doc_id, fields)


async def check(search: Any, query: Query, docs: dict[str, dict[str, JSONValue]] = DOCS,
                spec: IndexSpec = SPEC, rule: str = "Search rule 4") -> QueryResult:
    got = await search.query(query)
    want = evaluate(spec, docs, query)
    assert got.total == want.total, f"{rule}: total {got.total} != {want.total} for {query}"
    assert [h.doc_id for h in got.hits] == [h.doc_id for h in want.hits], f"{rule}: hits for {query}"
    assert [dict(h.fields) for h in got.hits] == [dict(h.fields) for h in want.hits], (
        f"{rule}: hit fields for {query}"
    )
    return got  # type: ignore[no-any-return]


def c(field: str, op: Op, value: Any) -> Condition:
    return Condition(field, op, value)


# ---------------------------------------------------------------- index and documents


async def test_create_index_is_idempotent(search: Any) -> None:
    """Search rule 1: creating the same spec again keeps the documents."""
    await load(search)
    await search.create_index(SPEC)
    await check(search, Query("jobs", limit=10), rule="Search rule 1")


async def test_new_spec_replaces_definition(search: Any) -> None:
    """Search rule 1: a different spec replaces the definition; old documents follow it."""
    await load(search)
    wider = IndexSpec("jobs", (*SPEC.fields, SearchField("owner", FieldType.TAG)))
    await search.upsert("jobs", "a", {"owner": "ann"})  # stored, not queryable under SPEC yet
    await search.create_index(wider)
    got = await search.query(Query("jobs", where=c("owner", Op.EQ, "ann")))
    assert [h.doc_id for h in got.hits] == ["a"], f"Search rule 1: {got}"


async def test_upsert_merges_and_stores_unindexed_fields(search: Any) -> None:
    """Search rules 2-3: upsert merges; unindexed fields are stored and returned."""
    await load(search)
    await search.upsert("jobs", "a", {"status": "done", "extra": {"k": [1, 2]}})
    assert await search.get("jobs", "a") == {
        "title": "Alpha bravo charlie", "status": "done", "n": 1, "extra": {"k": [1, 2]}
    }, "Search rule 2: upsert must merge"
    got = await search.query(Query("jobs", where=c("status", Op.EQ, "done")))
    assert [h.doc_id for h in got.hits] == ["a", "b", "e"], f"Search rule 3: {got}"
    assert await search.get("jobs", "nope") is None
    with pytest.raises(ValidationError, match="extra"):
        await search.query(Query("jobs", where=c("extra", Op.EQ, "x")))


@pytest.mark.parametrize(
    "fields",
    [{"status": 5}, {"n": "7"}, {"n": True}, {"title": 3}, {"status": ["a"]}, {"status": "ok", "n": "x"}],
    ids=repr,
)
async def test_wrong_type_is_rejected_before_writing(search: Any, fields: dict[str, Any]) -> None:
    """Search rule 2: a value of the wrong type raises ValidationError and writes nothing."""
    await load(search)
    with pytest.raises(ValidationError):
        await search.upsert("jobs", "a", fields)
    with pytest.raises(ValidationError):
        await search.upsert("jobs", "new", fields)
    assert await search.get("jobs", "a") == DOCS["a"], "Search rule 2: half-written"
    assert await search.get("jobs", "new") is None, "Search rule 2: the document was created"


# ---------------------------------------------------------------- operators


OPERATOR_CASES: list[tuple[str, Where]] = [
    ("tag-eq", c("status", Op.EQ, "open")),
    ("tag-ne", c("status", Op.NE, "open")),
    ("tag-in", c("status", Op.IN, ("done", "failed"))),
    ("tag-eq-none", c("status", Op.EQ, "nope")),
    ("num-eq", c("n", Op.EQ, 2.5)),
    ("num-eq-int-float", c("n", Op.EQ, 1.0)),
    ("num-ne-missing-matches", c("n", Op.NE, 1)),
    ("num-in", c("n", Op.IN, (1, -3))),
    ("num-lt", c("n", Op.LT, 2.5)),
    ("num-le", c("n", Op.LE, 2.5)),
    ("num-gt", c("n", Op.GT, 1)),
    ("num-ge", c("n", Op.GE, 1)),
    ("num-between", c("n", Op.BETWEEN, (-3, 1))),
    ("num-between-empty", c("n", Op.BETWEEN, (5, 9))),
    ("match-one", c("title", Op.MATCH, "bravo")),
    ("match-all-words", c("title", Op.MATCH, "charlie alpha")),
    ("match-case", c("title", Op.MATCH, "ALPHA")),
    ("match-not-prefix", c("title", Op.MATCH, "alph")),
    ("match-no-words", c("title", Op.MATCH, " -- ")),
    ("and", And((c("status", Op.EQ, "open"), c("n", Op.GT, 0)))),
    ("or", Or((c("status", Op.EQ, "failed"), c("n", Op.LT, 0)))),
    ("nested", Or((And((c("title", Op.MATCH, "delta"), c("n", Op.GE, 2))), c("status", Op.EQ, "failed")))),
]


@pytest.mark.parametrize("where", [w for _, w in OPERATOR_CASES], ids=[n for n, _ in OPERATOR_CASES])
async def test_operator(search: Any, where: Where) -> None:
    """Search rule 4: each operator as documented on Condition; missing fields match only NE."""
    await load(search)
    await check(search, Query("jobs", where=where, limit=10))


async def test_total_offset_limit_and_id_order(search: Any) -> None:
    """Search rule 4: without sort_by, hits are in document-id order; total ignores the page."""
    await load(search)
    for offset, limit in [(0, 2), (2, 2), (4, 5), (9, 3), (0, 100)]:
        await check(search, Query("jobs", offset=offset, limit=limit))


async def test_fields_selects_returned_fields(search: Any) -> None:
    """Search rule 4 (Query.fields): only the requested fields come back."""
    await load(search)
    await search.upsert("jobs", "a", {"extra": 1})
    await check(search, Query("jobs", fields=("n",), limit=10))
    await check(search, Query("jobs", where=c("status", Op.EQ, "open")),
                docs=_with_extra())


def _with_extra() -> Docs:
    docs: Docs = dict(DOCS)
    docs["a"] = {**DOCS["a"], "extra": 1}
    return docs


@requires(Capability.SEARCH_SORT)
@pytest.mark.parametrize("descending", [False, True])
async def test_sort_missing_last_ties_by_id(search: Any, descending: bool) -> None:
    """Search rule 4: sort_by orders hits; missing values last, ties by ascending id."""
    await load(search)
    await check(search, Query("jobs", sort_by="n", descending=descending, limit=10))
    await check(search, Query("jobs", sort_by="n", descending=descending, offset=1, limit=2))


@forbids(Capability.SEARCH_SORT)
async def test_sort_without_capability_raises(search: Any) -> None:
    """Capability SEARCH_SORT: an undeclared sort raises CapabilityNotSupportedError."""
    await load(search)
    with pytest.raises(CapabilityNotSupportedError):
        await search.query(Query("jobs", sort_by="n"))


# ---------------------------------------------------------------- hostile values


@pytest.mark.parametrize("value", HOSTILE)
async def test_hostile_tag_values_are_data(search: Any, value: str) -> None:
    """Search rule 5: punctuation and unicode in a TAG value never change a query's meaning."""
    docs: Docs = {**DOCS, "h": {"status": value, "title": value, "n": 7}}
    await load(search, docs)
    for where in (c("status", Op.EQ, value), c("status", Op.NE, value), c("status", Op.IN, (value, "open"))):
        await check(search, Query("jobs", where=where, limit=10), docs, rule="Search rule 5")


@pytest.mark.parametrize(
    "value", ["alpha | delta", "alpha -bravo", "alph*", '"alpha" @title:{x}', "bravo) | (echo", "%delta%", "delta; --"]
)
async def test_hostile_match_values_are_data(search: Any, value: str) -> None:
    """Search rule 5: MATCH syntax characters are not operators (no OR, NOT, prefix, field)."""
    await load(search)
    await check(search, Query("jobs", where=c("title", Op.MATCH, value), limit=10), rule="Search rule 5")


# ---------------------------------------------------------------- validation and deletion


@pytest.mark.parametrize(
    ("query", "named"),
    [
        (Query("jobs", where=c("ghost", Op.EQ, "x")), "ghost"),
        (Query("jobs", where=And((c("n", Op.GT, 1), c("ghost", Op.EQ, "x")))), "ghost"),
        (Query("jobs", where=c("status", Op.LT, 3)), "status"),
        (Query("jobs", where=c("status", Op.MATCH, "open")), "status"),
        (Query("jobs", where=c("n", Op.MATCH, "1")), "n"),
        (Query("jobs", where=c("title", Op.EQ, "x")), "title"),
        (Query("jobs", where=c("title", Op.BETWEEN, (1, 2))), "title"),
        (Query("jobs", sort_by="status"), "status"),
        (Query("jobs", sort_by="ghost"), "ghost"),
    ],
    ids=lambda v: getattr(v, "where", None) and str(v.where.op.value if isinstance(v.where, Condition) else "and")
    if isinstance(v, Query) else str(v),
)
async def test_invalid_query_names_the_field(search: Any, query: Query, named: str) -> None:
    """Search rule 6: unknown field, non-sortable sort or a misfit operator: ValidationError."""
    if query.sort_by is not None:
        skip_unless(search, Capability.SEARCH_SORT)
    await load(search)
    with pytest.raises(ValidationError) as caught:
        await search.query(query)
    assert named in str(caught.value), f"Search rule 6: {caught.value!s} does not name {named!r}"


async def test_delete_fields_delete_and_drop_index(search: Any) -> None:
    """Search rule 7: delete_fields, delete (True if it existed), drop_index with documents."""
    await load(search)
    await search.delete_fields("jobs", "a", ["status", "n"])
    assert await search.get("jobs", "a") == {"title": "Alpha bravo charlie"}
    docs: Docs = {**DOCS, "a": {"title": "Alpha bravo charlie"}}
    await check(search, Query("jobs", where=c("status", Op.NE, "done"), limit=10), docs, rule="Search rule 7")
    assert await search.delete("jobs", "b") is True
    assert await search.delete("jobs", "b") is False
    docs.pop("b")
    await check(search, Query("jobs", limit=10), docs, rule="Search rule 7")
    await search.drop_index("jobs")
    with pytest.raises(ValidationError, match="jobs"):
        await search.query(Query("jobs"))
    await search.create_index(SPEC)
    assert (await search.query(Query("jobs"))).total == 0, "Search rule 7: documents survived drop_index"


async def test_missing_index_names_it(search: Any) -> None:
    """Search rule 9: querying an index that does not exist raises ValidationError naming it."""
    with pytest.raises(ValidationError, match="no_such_index"):
        await search.query(Query("no_such_index"))


@forbids(Capability.SEARCH_NATIVE_QUERY)
async def test_native_query_without_capability_raises(search: Any) -> None:
    """Search rule 8: without SEARCH_NATIVE_QUERY native_query raises CapabilityNotSupportedError."""
    await load(search)
    with pytest.raises(CapabilityNotSupportedError):
        await search.native_query("jobs", "*")


# ---------------------------------------------------------------- properties

VOCAB = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
TAGS = ["open", "done", *HOSTILE[:8]]
_ids = st.sampled_from([f"d{i:02d}" for i in range(10)])
_title = st.lists(st.sampled_from(VOCAB + [w.upper() for w in VOCAB[:2]]), max_size=4).flatmap(
    lambda ws: st.sampled_from([" ", ", ", " -- ", "|"]).map(lambda sep: sep.join(ws))
)
_number = st.one_of(st.integers(-4, 4), st.sampled_from([-1.5, 0.5, 2.5]))
_doc = st.fixed_dictionaries(
    {"n": _number}, optional={"title": _title, "status": st.sampled_from(TAGS)}
)


def _conditions() -> st.SearchStrategy[Where]:
    tag = st.builds(Condition, st.just("status"), st.sampled_from([Op.EQ, Op.NE]), st.sampled_from(TAGS))
    tag_in = st.builds(Condition, st.just("status"), st.just(Op.IN),
                       st.lists(st.sampled_from(TAGS), min_size=1, max_size=3).map(tuple))
    num = st.builds(Condition, st.just("n"),
                    st.sampled_from([Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE]), _number)
    between = st.builds(Condition, st.just("n"), st.just(Op.BETWEEN),
                        st.tuples(_number, _number).map(lambda t: tuple(sorted(t))))
    match = st.builds(Condition, st.just("title"), st.just(Op.MATCH),
                      st.lists(st.sampled_from(VOCAB), min_size=1, max_size=2).map(" ".join))
    return st.one_of(tag, tag_in, num, between, match)


_where: st.SearchStrategy[Where] = st.recursive(
    _conditions(),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: And(tuple(cs))),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: Or(tuple(cs))),
    ),
    max_leaves=5,
)
_counter = itertools.count()


@given(
    docs=st.dictionaries(_ids, _doc, max_size=8).filter(bool),
    where=st.none() | _where,
    sort=st.sampled_from([None, "n"]),
    descending=st.booleans(),
    offset=st.integers(0, 4),
    limit=st.integers(1, 6),
)
async def test_queries_agree_with_brute_force(
    search: Any, docs: dict[str, dict[str, JSONValue]], where: Where | None, sort: str | None,
    descending: bool, offset: int, limit: int,
) -> None:
    """Search rules 4-5: random documents and where-trees agree with the kit's evaluator."""
    if sort is not None and Capability.SEARCH_SORT not in search.capabilities:
        sort = None
    spec = IndexSpec(f"prop{next(_counter)}", SPEC.fields)
    await load(search, docs, spec)
    try:
        query = Query(spec.name, where=where, sort_by=sort, descending=descending, offset=offset, limit=limit)
        await check(search, query, docs, spec)
    finally:
        await search.drop_index(spec.name)
