"""PostgresSearch: documents as JSONB rows, GIN-indexed; every user value is a bound parameter.

TAG and NUMERIC conditions compile to JSONB containment (``fields @> $1``, served by a GIN
``jsonb_path_ops`` index) or typed comparisons. TEXT words are extracted in Python exactly as
the contract defines a word (``\\w+``, case-folded, no stemming) and stored per field in a
``words`` JSONB column, GIN-indexed, so MATCH is ``words @> {"field": [w, ...]}``: PostgreSQL's
own text parser would split e-mail addresses, hyphens and paths differently from the contract.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from psycopg import sql

from hotmesh.errors import CapabilityNotSupportedError, ValidationError
from hotmesh.providers import (
    And,
    Capability,
    Condition,
    FieldType,
    Hit,
    IndexSpec,
    JSONValue,
    Op,
    Or,
    Query,
    QueryResult,
    SearchField,
    Where,
    dumps,
)
from hotmesh_postgres._base import PostgresProvider

_WORD = re.compile(r"\w+")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMERIC_OPS = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_SPEC_TTL = 5.0
"""Seconds a cached index spec is trusted before it is re-read (another process may replace it)."""


def words(text: str) -> list[str]:
    """The contract's words: case-folded ``\\w+`` runs, deduplicated, in first-seen order."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _spec_to_json(spec: IndexSpec) -> str:
    return dumps(
        [[f.name, f.type.value, f.sortable, f.nostem] for f in spec.fields], "spec"
    )


def _spec_from_json(name: str, raw: Any) -> IndexSpec:
    return IndexSpec(
        name,
        tuple(SearchField(f[0], FieldType(f[1]), bool(f[2]), bool(f[3])) for f in raw),
    )


def _check_values(spec: IndexSpec, fields: Mapping[str, JSONValue]) -> None:
    """Search rule 2: indexed values must have the field's type; checked before any write."""
    types = {f.name: f.type for f in spec.fields}
    for name, value in fields.items():
        if not isinstance(name, str):
            raise ValidationError(f"field names must be strings, got {name!r}")
        kind = types.get(name)
        if kind is None:
            continue
        if kind is FieldType.NUMERIC and not _is_number(value):
            raise ValidationError(f"field {name!r} is NUMERIC: {value!r} is not a number")
        if kind in (FieldType.TAG, FieldType.TEXT) and not isinstance(value, str):
            raise ValidationError(f"field {name!r} is {kind.value}: {value!r} is not a string")


class _Compiler:
    """Turns a where-tree into SQL with every value bound as a parameter (Search rule 5)."""

    def __init__(self, spec: IndexSpec) -> None:
        self.fields = {f.name: f for f in spec.fields}
        self.params: list[Any] = []

    def field(self, name: str) -> SearchField:
        found = self.fields.get(name)
        if found is None:
            raise ValidationError(f"field {name!r} is not in the index spec")
        return found

    def compile(self, where: Where) -> sql.Composable:
        if isinstance(where, And | Or):
            if not where.clauses:
                return sql.SQL("true" if isinstance(where, And) else "false")
            joiner = sql.SQL(" AND " if isinstance(where, And) else " OR ")
            return sql.SQL("({})").format(joiner.join(self.compile(c) for c in where.clauses))
        if isinstance(where, Condition):
            return self.condition(where)
        raise ValidationError(f"not a where clause: {where!r}")

    def _bind(self, value: Any) -> sql.Composable:
        self.params.append(value)
        return sql.Placeholder()

    def _contains(self, name: str, value: JSONValue) -> sql.Composable:
        return sql.SQL("(fields @> {}::jsonb)").format(self._bind(dumps({name: value})))

    def _number(self, name: str, value: object) -> sql.Composable:
        if not _is_number(value):
            raise ValidationError(f"field {name!r}: {value!r} is not a number")
        return sql.SQL("{}::numeric").format(self._bind(repr(value)))

    def condition(self, cond: Condition) -> sql.Composable:
        spec = self.field(cond.field)
        op, kind, name = cond.op, spec.type, cond.field
        if op is Op.MATCH:
            if kind is not FieldType.TEXT:
                raise ValidationError(f"MATCH needs a TEXT field; {name!r} is {kind.value}")
            wanted = words(str(cond.value))
            if not wanted:
                return sql.SQL("false")
            return sql.SQL("(words @> {}::jsonb)").format(self._bind(dumps({name: wanted})))
        if kind is FieldType.TEXT:
            raise ValidationError(f"field {name!r} is TEXT: only MATCH applies, not {op.value}")
        if op in (Op.EQ, Op.NE):
            found = self._equals(name, kind, cond.value)
            return found if op is Op.EQ else sql.SQL("(NOT {})").format(found)
        if op is Op.IN:
            values = cond.value
            if not isinstance(values, (tuple, list)):
                raise ValidationError(f"IN on {name!r} needs a tuple of values")
            if not values:
                return sql.SQL("false")
            return sql.SQL("({})").format(
                sql.SQL(" OR ").join(self._equals(name, kind, v) for v in values)
            )
        if kind is not FieldType.NUMERIC:
            raise ValidationError(f"{op.value} needs a NUMERIC field; {name!r} is {kind.value}")
        value_expr = sql.SQL(
            "(CASE WHEN jsonb_typeof(fields -> {n}) = 'number'"
            " THEN (fields ->> {n})::numeric END)"
        ).format(n=sql.Literal(name))
        if op is Op.BETWEEN:
            bounds = cond.value
            if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
                raise ValidationError(f"BETWEEN on {name!r} needs a (low, high) pair")
            return sql.SQL("coalesce({v} BETWEEN {lo} AND {hi}, false)").format(
                v=value_expr, lo=self._number(name, bounds[0]), hi=self._number(name, bounds[1])
            )
        return sql.SQL("coalesce({} {} {}, false)").format(
            value_expr, sql.SQL(_NUMERIC_OPS[op]), self._number(name, cond.value)
        )

    def _equals(self, name: str, kind: FieldType, value: Any) -> sql.Composable:
        if kind is FieldType.NUMERIC and not _is_number(value):
            return sql.SQL("false")  # a non-number never equals a NUMERIC value
        if kind is FieldType.TAG and not isinstance(value, str):
            return sql.SQL("false")
        return self._contains(name, value)


class PostgresSearch(PostgresProvider):
    """Structured queries over JSONB documents (Search rules 1-9)."""

    role: ClassVar[str] = "search"
    declared: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.SEARCH_SORT, Capability.MULTI_PROCESS, Capability.DURABLE}
    )

    async def _spec(self, index: str) -> IndexSpec:
        """The index's spec: cached per provider, re-read on a miss or after ``_SPEC_TTL`` s."""
        cache: dict[str, tuple[IndexSpec, float]] = self.__dict__.setdefault("_spec_cache", {})
        found = cache.get(index)
        now = time.monotonic()
        if found is not None and now - found[1] < _SPEC_TTL:
            return found[0]
        rows = await self._fetchall(
            sql.SQL("SELECT spec FROM {} WHERE name = %s").format(
                self.names.qualified("search_indexes")
            ),
            (index,),
        )
        if not rows:
            cache.pop(index, None)
            raise ValidationError(f"search index {index!r} does not exist")
        spec = _spec_from_json(index, rows[0][0])
        cache[index] = (spec, now)
        return spec

    def _forget(self, index: str) -> None:
        self.__dict__.setdefault("_spec_cache", {}).pop(index, None)

    async def create_index(self, spec: IndexSpec, /) -> None:
        """Declare or replace an index definition (Search rule 1)."""
        if not isinstance(spec.name, str) or not spec.name:
            raise ValidationError("index name must be a non-empty string")
        for f in spec.fields:
            if not _FIELD_NAME.match(f.name):
                raise ValidationError(f"field name {f.name!r}: use letters, digits, underscore")
        await self._execute(
            sql.SQL(
                "INSERT INTO {} (name, spec) VALUES (%s, %s::jsonb)"
                " ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec"
            ).format(self.names.qualified("search_indexes")),
            (spec.name, _spec_to_json(spec)),
        )
        self.__dict__.setdefault("_spec_cache", {})[spec.name] = (spec, time.monotonic())

    async def drop_index(self, index: str, /) -> None:
        """Remove the index and its documents (Search rule 7)."""
        q = self.names.qualified
        await self._execute(
            sql.SQL(
                "WITH d AS (DELETE FROM {docs} WHERE index_name = %s RETURNING 1)"
                " DELETE FROM {idx} WHERE name = %s"
            ).format(docs=q("search_docs"), idx=q("search_indexes")),
            (index, index),
        )
        self._forget(index)

    async def upsert(self, index: str, doc_id: str, fields: Mapping[str, JSONValue], /) -> None:
        """Merge fields into a document (Search rules 2, 3)."""
        if not isinstance(doc_id, str) or not doc_id:
            raise ValidationError("doc_id must be a non-empty string")
        spec = await self._spec(index)
        _check_values(spec, fields)
        encoded = dumps(dict(fields), "fields")
        text = {k: words(v) for k, v in fields.items() if isinstance(v, str)}
        await self._execute(
            sql.SQL(
                "INSERT INTO {} AS d (index_name, doc_id, fields, words)"
                " VALUES (%s, %s, %s::jsonb, %s::jsonb) ON CONFLICT (index_name, doc_id)"
                " DO UPDATE SET fields = d.fields || EXCLUDED.fields,"
                " words = (d.words - ARRAY(SELECT jsonb_object_keys(EXCLUDED.fields)))"
                " || EXCLUDED.words"
            ).format(self.names.qualified("search_docs")),
            (index, doc_id, encoded, dumps(text)),
        )

    async def get(self, index: str, doc_id: str, /) -> dict[str, JSONValue] | None:
        """All stored fields of a document, or None."""
        rows = await self._fetchall(
            sql.SQL("SELECT fields FROM {} WHERE index_name = %s AND doc_id = %s").format(
                self.names.qualified("search_docs")
            ),
            (index, doc_id),
        )
        return dict(rows[0][0]) if rows else None

    async def delete_fields(self, index: str, doc_id: str, fields: Sequence[str], /) -> None:
        """Remove fields of a document (Search rule 7)."""
        keys = list(fields)
        await self._execute(
            sql.SQL(
                "UPDATE {} SET fields = fields - %s::text[], words = words - %s::text[]"
                " WHERE index_name = %s AND doc_id = %s"
            ).format(self.names.qualified("search_docs")),
            (keys, keys, index, doc_id),
        )

    async def delete(self, index: str, doc_id: str, /) -> bool:
        """Remove a document; True if it existed (Search rule 7)."""
        count = await self._execute(
            sql.SQL("DELETE FROM {} WHERE index_name = %s AND doc_id = %s").format(
                self.names.qualified("search_docs")
            ),
            (index, doc_id),
        )
        return count > 0

    async def query(self, query: Query, /) -> QueryResult:
        """Run a structured query in one statement (Search rules 4-6, 9)."""
        spec = await self._spec(query.index)
        compiler = _Compiler(spec)
        where = compiler.compile(query.where) if query.where is not None else sql.SQL("true")
        order = self._order(compiler, query)
        if query.offset < 0 or query.limit < 0:
            raise ValidationError("offset and limit must be >= 0")
        statement = sql.SQL(
            "WITH m AS (SELECT doc_id, fields, row_number() OVER (ORDER BY {order}) AS rn"
            " FROM {docs} WHERE index_name = {index} AND {where})"
            " SELECT (SELECT count(*) FROM m), coalesce((SELECT jsonb_agg("
            "jsonb_build_array(doc_id, fields) ORDER BY rn) FROM m"
            " WHERE rn > {lo} AND rn <= {hi}), '[]'::jsonb)"
        ).format(
            order=order,
            docs=self.names.qualified("search_docs"),
            index=sql.Literal(query.index),
            where=where,
            lo=sql.Literal(query.offset),
            hi=sql.Literal(query.offset + query.limit),
        )
        row = await self._fetchone(statement, compiler.params)
        wanted = query.fields or tuple(f.name for f in spec.fields)
        hits = tuple(
            Hit(doc_id, {k: fields[k] for k in wanted if k in fields}) for doc_id, fields in row[1]
        )
        return QueryResult(total=int(row[0]), hits=hits)

    def _order(self, compiler: _Compiler, query: Query) -> sql.Composable:
        by_id = sql.SQL('doc_id COLLATE "C" ASC')
        if query.sort_by is None:
            return by_id
        field = compiler.field(query.sort_by)
        if not field.sortable:
            raise ValidationError(f"field {query.sort_by!r} is not sortable")
        name = sql.Literal(field.name)
        if field.type is FieldType.NUMERIC:
            key = sql.SQL(
                "(CASE WHEN jsonb_typeof(fields -> {n}) = 'number'"
                " THEN (fields ->> {n})::numeric END)"
            ).format(n=name)
        else:
            key = sql.SQL('(fields ->> {n}) COLLATE "C"').format(n=name)
        direction = sql.SQL("DESC" if query.descending else "ASC")
        return sql.SQL("{} {} NULLS LAST, {}").format(key, direction, by_id)

    async def native_query(
        self, index: str, query: str, /, *, offset: int = 0, limit: int = 10
    ) -> QueryResult:
        """Not offered: raw SQL pass-through cannot be made safe (Search rule 8)."""
        raise CapabilityNotSupportedError(
            "postgres",
            Capability.SEARCH_NATIVE_QUERY,
            "use structured queries (hotmesh.providers.Query)",
        )
