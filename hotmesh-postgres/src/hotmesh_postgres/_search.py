"""PostgresSearch: documents as JSONB rows; every user value is a bound parameter.

TAG and NUMERIC conditions compile to comparisons of a typed key per field,
``CASE WHEN jsonb_typeof(fields -> 'f') = 'string' THEN fields ->> 'f' END`` (TAG) or the
``numeric`` of a JSON number (NUMERIC): a value of the wrong type is NULL, so it never matches.
``create_index`` builds, per field of the spec, a partial B-tree on ``(key, doc_id COLLATE "C")``
restricted to the index's documents (``WHERE index_name = '<index>'``), plus a descending one
for sortable fields; ``drop_index`` drops them. Equality, ``IN``, ranges, the sort and the
document-id order of a page are then index scans, and ANALYZE keeps statistics per key, so the
planner's row estimates are right. TEXT words are extracted in Python exactly as the contract
defines a word (``\\w+``, case-folded, no stemming) and stored per field in a ``words`` JSONB
column, GIN-indexed, so MATCH is ``words @> {"field": [w, ...]}``: PostgreSQL's own text parser
(``tsvector``) would split e-mail addresses, hyphens and paths differently from the contract.

A query is one statement: the exact total (``count(*)``) and the page (``ORDER BY … LIMIT …
OFFSET …``), planned for the values at hand (sent unprepared: a generic plan cannot see that
``id = 'r5'`` matches one document and ``active = 'yes'`` half of them, and once walked the
whole document-id index for a 1-hit lookup).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from psycopg import AsyncConnection, sql

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
    check_search_value,
    check_search_where,
    dumps,
    is_number,
)
from hotmesh_postgres._base import PostgresProvider

_WORD = re.compile(r"\w+")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NUMERIC_OPS = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}
_SPEC_TTL = 5.0
"""Seconds a cached index spec is trusted before it is re-read (another process may replace it)."""
_CONCURRENT_ROWS = 20_000
"""Above this many documents (planner estimate) field indexes are built and dropped CONCURRENTLY."""
_INDEX_PREFIX = "sdx_"
"""Field indexes are named ``sdx_<digest of the index name>_<kind>_<field>``."""


def words(text: str) -> list[str]:
    """The contract's words: case-folded ``\\w+`` runs, deduplicated, in first-seen order."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


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
    for name, value in fields.items():
        if not isinstance(name, str):
            raise ValidationError(f"field names must be strings, got {name!r}")
        check_search_value(spec, name, value)


def _key(field: SearchField) -> sql.Composable:
    """The typed key of a field: what conditions compare, sorts order by and indexes hold."""
    name = sql.Literal(field.name)
    if field.type is FieldType.NUMERIC:
        return sql.SQL(
            "(CASE WHEN jsonb_typeof(fields -> {n}) = 'number' THEN (fields ->> {n})::numeric END)"
        ).format(n=name)
    return sql.SQL(
        "((CASE WHEN jsonb_typeof(fields -> {n}) = 'string' THEN fields ->> {n} END)"
        ' COLLATE "C")'
    ).format(n=name)


def _digest(text: str, size: int = 12) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:size]


def index_prefix(index: str) -> str:
    """The name prefix of every field index of search index ``index`` (deterministic)."""
    return f"{_INDEX_PREFIX}{_digest(index)}_"


def field_indexes(spec: IndexSpec) -> dict[str, sql.Composable]:
    """Name -> ``(columns)`` of each B-tree the spec needs (partial on the index's documents).

    Every TAG and NUMERIC field gets ``(key, doc_id COLLATE "C")``: equality, IN and ranges,
    hits of one key in document-id order, and the ascending sort (NULLS LAST, ties by id).
    A sortable field also gets ``(key DESC NULLS LAST, doc_id COLLATE "C")`` for the
    descending sort (one B-tree cannot serve DESC NULLS LAST with ascending ties). TEXT is
    served by the ``words`` GIN index; a sortable TEXT field gets both sort B-trees.
    """
    prefix = index_prefix(spec.name)
    out: dict[str, sql.Composable] = {}
    for f in spec.fields:
        kind = "n" if f.type is FieldType.NUMERIC else "t"
        key = _key(f)
        if f.type is not FieldType.TEXT or f.sortable:
            out[_object_name(prefix, kind + "a", f.name)] = sql.SQL(
                '({}, doc_id COLLATE "C")'
            ).format(key)
        if f.sortable:
            out[_object_name(prefix, kind + "d", f.name)] = sql.SQL(
                '({} DESC NULLS LAST, doc_id COLLATE "C")'
            ).format(key)
    return out


def field_statistics(spec: IndexSpec) -> dict[str, sql.Composable]:
    """Name -> ``(key)`` of an expression statistics object per B-tree-indexed field.

    The planner ignores the statistics of partial indexes, so without these it would estimate
    every ``key = value`` at a flat 0.5% of the rows (PostgreSQL 14+ builds them on ANALYZE).
    """
    prefix = index_prefix(spec.name)
    return {
        _object_name(prefix, "s" + ("n" if f.type is FieldType.NUMERIC else "t"), f.name):
        sql.SQL("({})").format(_key(f))
        for f in spec.fields
        if f.type is not FieldType.TEXT or f.sortable
    }


def _object_name(prefix: str, kind: str, field: str) -> str:
    tag = field if len(prefix) + len(kind) + 1 + len(field) <= 63 else _digest(field, 16)
    return f"{prefix}{kind}_{tag}"


class _Compiler:
    """Turns a where-tree into SQL with every value bound as a parameter (Search rule 5).

    Conditions compare typed keys (``_key``), which are NULL for a missing field or a value of
    the wrong type: in a WHERE clause NULL rejects the row like false, and since only ``!=`` is
    negated (as ``IS DISTINCT FROM``, true for NULL) no NOT ever turns a NULL into a match.
    """

    def __init__(self, spec: IndexSpec) -> None:
        self.fields = {f.name: f for f in spec.fields}
        self.params: list[Any] = []

    def compile(self, where: Where) -> sql.Composable:
        """SQL for a where clause already checked by ``check_search_where`` (fields exist,
        operators fit their types, bounds are numbers): only the translation is left here."""
        if isinstance(where, And | Or):
            if not where.clauses:
                return sql.SQL("true" if isinstance(where, And) else "false")
            joiner = sql.SQL(" AND " if isinstance(where, And) else " OR ")
            return sql.SQL("({})").format(joiner.join(self.compile(c) for c in where.clauses))
        assert isinstance(where, Condition)
        return self.condition(where)

    def _bind(self, value: Any) -> sql.Composable:
        self.params.append(value)
        return sql.Placeholder()

    def _number(self, value: object) -> sql.Composable:
        return sql.SQL("{}::numeric").format(self._bind(repr(value)))

    def condition(self, cond: Condition) -> sql.Composable:
        spec = self.fields[cond.field]
        op, kind, name = cond.op, spec.type, cond.field
        if op is Op.MATCH:
            wanted = words(str(cond.value))
            if not wanted:
                return sql.SQL("false")
            return sql.SQL("(words @> {}::jsonb)").format(self._bind(dumps({name: wanted})))
        key = _key(spec)
        if op in (Op.EQ, Op.NE):
            if not self._fits(kind, cond.value):  # a value of another type never equals
                return sql.SQL("false" if op is Op.EQ else "true")
            value = self._value(kind, cond.value)
            if op is Op.EQ:
                return sql.SQL("({} = {})").format(key, value)
            return sql.SQL("({} IS DISTINCT FROM {})").format(key, value)
        if op is Op.IN:
            values = cond.value
            assert isinstance(values, (tuple, list))
            fitting = [v for v in values if self._fits(kind, v)]
            if not fitting:
                return sql.SQL("false")
            if kind is FieldType.NUMERIC:
                array = sql.SQL("{}::numeric[]").format(self._bind([repr(v) for v in fitting]))
            else:
                array = sql.SQL("{}::text[]").format(self._bind(list(fitting)))
            return sql.SQL("({} = ANY({}))").format(key, array)
        if op is Op.BETWEEN:
            low, high = cond.value  # type: ignore[misc,str-unpack]
            return sql.SQL("({} BETWEEN {} AND {})").format(key, self._number(low), self._number(high))
        return sql.SQL("({} {} {})").format(key, sql.SQL(_NUMERIC_OPS[op]), self._number(cond.value))

    @staticmethod
    def _fits(kind: FieldType, value: Any) -> bool:
        return is_number(value) if kind is FieldType.NUMERIC else isinstance(value, str)

    def _value(self, kind: FieldType, value: Any) -> sql.Composable:
        if kind is FieldType.NUMERIC:
            return sql.SQL("{}::numeric").format(self._bind(repr(value)))
        return sql.SQL("{}::text").format(self._bind(value))


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
        """Declare or replace an index definition (Search rule 1) and build its field indexes."""
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
        await self._reconcile(spec.name, field_indexes(spec), field_statistics(spec))

    async def drop_index(self, index: str, /) -> None:
        """Remove the index, its documents and its field indexes (Search rule 7)."""
        q = self.names.qualified
        await self._execute(
            sql.SQL(
                "WITH d AS (DELETE FROM {docs} WHERE index_name = %s RETURNING 1)"
                " DELETE FROM {idx} WHERE name = %s"
            ).format(docs=q("search_docs"), idx=q("search_indexes")),
            (index, index),
        )
        self._forget(index)
        await self._reconcile(index, {}, {})

    async def _reconcile(
        self,
        index: str,
        wanted: Mapping[str, sql.Composable],
        statistics: Mapping[str, sql.Composable],
    ) -> None:
        """Make the field indexes (and statistics) of ``index`` exactly these: build, drop.

        Runs on one pooled (autocommit) connection under a session advisory lock per namespace,
        so two processes never build or drop the same index at once; on any error or
        cancellation that connection is closed (the pool replaces it), so the lock can never
        stay behind on an idle pooled connection. Small tables get plain ``CREATE INDEX`` (a ShareLock for milliseconds); above ``_CONCURRENT_ROWS`` documents
        the builds and drops are CONCURRENTLY (writers are never blocked; it waits for older
        transactions instead). A concurrent build that failed leaves an INVALID index: it is
        found here (under the lock, nobody else is building it) and rebuilt. Indexes never
        change results, only plans, so a query in between is merely slower.
        """
        schema = self.names.schema
        prefix = index_prefix(index)
        lock = self.names.lock_prefix + "search-ddl"
        table = self.names.qualified("search_docs")
        predicate = sql.SQL("index_name = {}").format(sql.Literal(index))

        async def apply(conn: AsyncConnection[Any]) -> None:
            cur = await conn.execute(
                "SELECT c.relname, i.indisvalid FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid"
                " JOIN pg_class t ON t.oid = i.indrelid"
                " JOIN pg_namespace n ON n.oid = t.relnamespace"
                " WHERE n.nspname = %s AND t.relname = 'search_docs'"
                " AND starts_with(c.relname, %s)",
                (schema, prefix),
            )
            existing = {str(r[0]): bool(r[1]) for r in await cur.fetchall()}
            stats = statistics if conn.info.server_version >= 140000 else {}
            cur = await conn.execute(
                "SELECT s.stxname FROM pg_statistic_ext s"
                " JOIN pg_namespace n ON n.oid = s.stxnamespace"
                " WHERE n.nspname = %s AND starts_with(s.stxname, %s)",
                (schema, prefix),
            )
            existing_stats = {str(r[0]) for r in await cur.fetchall()}
            for name in existing_stats - set(stats):
                await conn.execute(
                    sql.SQL("DROP STATISTICS IF EXISTS {}.{}").format(
                        self.names.ident, sql.Identifier(name)
                    )
                )
            for name in set(stats) - existing_stats:
                await conn.execute(
                    sql.SQL("CREATE STATISTICS IF NOT EXISTS {}.{} ON {} FROM {}").format(
                        self.names.ident, sql.Identifier(name), stats[name], table
                    )
                )
            if all(existing.get(n) for n in wanted) and set(existing) <= set(wanted):
                return
            cur = await conn.execute(
                "SELECT greatest(c.reltuples, 0), c.relpages FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relname = 'search_docs'",
                (schema,),
            )
            size: tuple[Any, ...] = await cur.fetchone() or (0, 0)
            big = size[0] > _CONCURRENT_ROWS or size[1] > _CONCURRENT_ROWS // 20
            how = sql.SQL("CONCURRENTLY " if big else "")
            for name, valid in existing.items():
                if name not in wanted or not valid:
                    await conn.execute(
                        sql.SQL("DROP INDEX {}IF EXISTS {}.{}").format(
                            how, self.names.ident, sql.Identifier(name)
                        )
                    )
            for name, columns in wanted.items():
                if existing.get(name):
                    continue
                await conn.execute(
                    sql.SQL("CREATE INDEX {}IF NOT EXISTS {} ON {} {} WHERE {}").format(
                        how, sql.Identifier(name), table, columns, predicate
                    )
                )

        async def work(conn: AsyncConnection[Any]) -> None:
            try:
                await conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (lock,))
                await apply(conn)
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (lock,))
            except BaseException:
                await conn.close()  # takes the session lock with it; the pool replaces it
                raise

        await self._run(work)

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
        statement, params = self._statement(spec, query)

        async def work(conn: AsyncConnection[Any]) -> tuple[Any, ...]:
            cur = await conn.execute(statement, params, prepare=False)
            found: tuple[Any, ...] | None = await cur.fetchone()
            assert found is not None  # one aggregate row, always
            return found

        row = await self._run(work)
        wanted = query.fields or tuple(f.name for f in spec.fields)
        hits = tuple(
            Hit(doc_id, {k: fields[k] for k in wanted if k in fields}) for doc_id, fields in row[1]
        )
        return QueryResult(total=int(row[0]), hits=hits)

    def _statement(self, spec: IndexSpec, query: Query) -> tuple[sql.Composed, list[Any]]:
        """The query's one statement and its parameters: ``(total, [[doc_id, fields], ...])``.

        The total is a ``count(*)`` and the page a separate ``ORDER BY … LIMIT … OFFSET`` over
        the same predicate, so the planner can walk an index in the wanted order and stop after
        the page instead of sorting every match.
        """
        if query.offset < 0 or query.limit < 0:
            raise ValidationError("offset and limit must be >= 0")
        if query.where is not None:
            check_search_where(spec, query.where)
        compiler = _Compiler(spec)
        where = compiler.compile(query.where) if query.where is not None else sql.SQL("true")
        order = self._order(compiler, query)
        docs = self.names.qualified("search_docs")
        count = sql.SQL("SELECT count(*) FROM {docs} WHERE index_name = %s AND {where}").format(
            docs=docs, where=where
        )
        params: list[Any] = [query.index, *compiler.params]
        if query.limit == 0:
            return sql.SQL("SELECT ({}), '[]'::jsonb").format(count), params
        statement = sql.SQL(
            "SELECT ({count}), coalesce((SELECT jsonb_agg(jsonb_build_array(doc_id, fields)"
            " ORDER BY {order}) FROM (SELECT doc_id, fields FROM {docs}"
            " WHERE index_name = %s AND {where} ORDER BY {order} LIMIT %s OFFSET %s) page),"
            " '[]'::jsonb)"
        ).format(count=count, order=order, docs=docs, where=where)
        params += [query.index, *compiler.params, query.limit, query.offset]
        return statement, params

    def _order(self, compiler: _Compiler, query: Query) -> sql.Composable:
        by_id = sql.SQL('doc_id COLLATE "C"')
        if query.sort_by is None:
            return by_id
        field = compiler.fields.get(query.sort_by)
        if field is None:
            raise ValidationError(f"field {query.sort_by!r} is not in the index spec")
        if not field.sortable:
            raise ValidationError(f"field {query.sort_by!r} is not sortable")
        direction = sql.SQL("DESC" if query.descending else "ASC")
        return sql.SQL("{} {} NULLS LAST, {}").format(_key(field), direction, by_id)

    async def native_query(
        self, index: str, query: str, /, *, offset: int = 0, limit: int = 10
    ) -> QueryResult:
        """Not offered: raw SQL pass-through cannot be made safe (Search rule 8)."""
        raise CapabilityNotSupportedError(
            "postgres",
            Capability.SEARCH_NATIVE_QUERY,
            "use structured queries (hotmesh.providers.Query)",
        )
