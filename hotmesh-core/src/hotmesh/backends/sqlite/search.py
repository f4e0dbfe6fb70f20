"""SqliteSearch: documents with indexed fields, FTS5 for TEXT (Search rules 1-9).

``hm_docs`` holds each document's JSON; ``hm_values`` one row per indexed (document, field) with
its TAG text or NUMERIC number (and the FTS5 rowid of a TEXT field's words); ``hm_fts`` the words.
Queries are parameterized SQL over these tables; there is no native query syntax.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hotmesh.backends.sqlite._provider import BASE_CAPABILITIES, SqliteProvider
from hotmesh.backends.sqlite._where import WhereSql, text_of, tokens
from hotmesh.errors import CapabilityNotSupportedError, ValidationError
from hotmesh.providers import (
    Capability,
    FieldType,
    Hit,
    IndexSpec,
    JSONValue,
    Query,
    QueryResult,
    SearchField,
    check_search_value,
    check_search_where,
    dumps,
    is_number,
    loads,
)

_FIELD_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def _spec_json(spec: IndexSpec) -> str:
    return dumps(
        [
            {"name": f.name, "type": f.type.value, "sortable": f.sortable, "nostem": f.nostem}
            for f in spec.fields
        ]
    )


def _spec_from(name: str, text: str) -> IndexSpec:
    items: Any = loads(text)
    return IndexSpec(
        name=name,
        fields=tuple(
            SearchField(
                name=i["name"], type=FieldType(i["type"]), sortable=i["sortable"], nostem=i["nostem"]
            )
            for i in items
        ),
    )


def _check_spec(spec: IndexSpec) -> None:
    if not isinstance(spec, IndexSpec) or not isinstance(spec.name, str) or not spec.name:
        raise ValidationError("create_index takes an IndexSpec with a non-empty name")
    seen: set[str] = set()
    for field in spec.fields:
        if not isinstance(field.name, str) or not _FIELD_NAME.match(field.name):
            raise ValidationError(f"search field name {field.name!r}: use letters, digits, underscore")
        if field.name in seen:
            raise ValidationError(f"search field {field.name!r} is declared twice in {spec.name!r}")
        if not isinstance(field.type, FieldType):
            raise ValidationError(f"search field {field.name!r} has no FieldType")
        seen.add(field.name)


class SqliteSearch(SqliteProvider):
    """The Search role on a SQLite file (SEARCH_SORT; no native query)."""

    role: ClassVar[str] = "search"
    tables: ClassVar[tuple[str, ...]] = ("hm_indexes", "hm_docs", "hm_values", "hm_fts")
    declared: ClassVar[frozenset[Capability]] = BASE_CAPABILITIES | {Capability.SEARCH_SORT}

    # -- helpers (inside a transaction) ---------------------------------------------------------

    def _spec(self, conn: sqlite3.Connection, index: str) -> IndexSpec:
        row = conn.execute(
            "SELECT spec FROM hm_indexes WHERE ns = ? AND name = ?", (self._namespace, index)
        ).fetchone()
        if row is None:
            raise ValidationError(f"no search index {index!r}")  # Search rule 9
        return _spec_from(index, row[0])

    def _unindex(
        self, conn: sqlite3.Connection, index: str, doc_id: str | None, names: Sequence[str] | None
    ) -> None:
        """Remove value and word rows of a document's fields (all fields / all documents on None)."""
        sql = "FROM hm_values WHERE ns = ? AND idx = ?"
        params: list[Any] = [self._namespace, index]
        if doc_id is not None:
            sql += " AND doc_id = ?"
            params.append(doc_id)
        if names is not None:
            if not names:
                return
            sql += f" AND field IN ({', '.join('?' * len(names))})"
            params.extend(names)
        rowids = [r[0] for r in conn.execute(f"SELECT fts_rowid {sql}", params) if r[0] is not None]
        for rowid in rowids:
            conn.execute("DELETE FROM hm_fts WHERE rowid = ?", (rowid,))
        conn.execute(f"DELETE {sql}", params)

    def _index_fields(
        self,
        conn: sqlite3.Connection,
        spec: IndexSpec,
        doc_id: str,
        values: Mapping[str, JSONValue],
    ) -> None:
        """Insert value (and word) rows for the spec's fields present in ``values``."""
        ns, index = self._namespace, spec.name
        for field in spec.fields:
            if field.name not in values:
                continue
            value = values[field.name]
            tag = value if isinstance(value, str) else None
            num = value if is_number(value) else None
            rowid: int | None = None
            if field.type is FieldType.TEXT:
                cursor = conn.execute(
                    "INSERT INTO hm_fts (ns, idx, doc_id, field, body) VALUES (?, ?, ?, ?, ?)",
                    (ns, index, doc_id, field.name, tokens(text_of(value))),
                )
                rowid = cursor.lastrowid
            conn.execute(
                "INSERT INTO hm_values (ns, idx, doc_id, field, tag, num, fts_rowid)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (ns, index, doc_id, field.name, tag, num, rowid),
            )

    def _doc(self, conn: sqlite3.Connection, index: str, doc_id: str) -> dict[str, JSONValue] | None:
        row = conn.execute(
            "SELECT fields FROM hm_docs WHERE ns = ? AND idx = ? AND doc_id = ?",
            (self._namespace, index, doc_id),
        ).fetchone()
        if row is None:
            return None
        doc: dict[str, JSONValue] = loads(row[0])  # type: ignore[assignment]
        return doc

    # -- Search ---------------------------------------------------------------------------------

    async def create_index(self, spec: IndexSpec, /) -> None:
        """Declare or redefine an index; a new definition re-indexes its documents (rule 1)."""
        _check_spec(spec)
        text = _spec_json(spec)
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "SELECT spec FROM hm_indexes WHERE ns = ? AND name = ?", (ns, spec.name)
            ).fetchone()
            if row is not None and row[0] == text:
                return
            conn.execute(
                "INSERT INTO hm_indexes (ns, name, spec) VALUES (?, ?, ?)"
                " ON CONFLICT (ns, name) DO UPDATE SET spec = excluded.spec",
                (ns, spec.name, text),
            )
            if row is None:
                return
            self._unindex(conn, spec.name, None, None)
            docs = conn.execute(
                "SELECT doc_id, fields FROM hm_docs WHERE ns = ? AND idx = ?", (ns, spec.name)
            ).fetchall()
            for doc_id, fields in docs:
                self._index_fields(conn, spec, doc_id, loads(fields))  # type: ignore[arg-type]

        await self._db.write(run)

    async def drop_index(self, index: str, /) -> None:
        """Remove the index and its documents (rule 7)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> None:
            self._unindex(conn, index, None, None)
            conn.execute("DELETE FROM hm_docs WHERE ns = ? AND idx = ?", (ns, index))
            conn.execute("DELETE FROM hm_indexes WHERE ns = ? AND name = ?", (ns, index))

        await self._db.write(run)

    async def upsert(self, index: str, doc_id: str, fields: Mapping[str, JSONValue], /) -> None:
        """Merge fields into a document; type-checked before any write (rules 2, 3)."""
        if not isinstance(doc_id, str) or not doc_id:
            raise ValidationError("doc_id must be a non-empty string")
        values: dict[str, JSONValue] = loads(dumps(dict(fields), "fields"))  # type: ignore[assignment]
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> None:
            spec = self._spec(conn, index)
            for name, value in values.items():
                check_search_value(spec, name, value)
            doc = self._doc(conn, index, doc_id) or {}
            doc.update(values)
            conn.execute(
                "INSERT INTO hm_docs (ns, idx, doc_id, fields) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (ns, idx, doc_id) DO UPDATE SET fields = excluded.fields",
                (ns, index, doc_id, dumps(doc)),
            )
            self._unindex(conn, index, doc_id, [f.name for f in spec.fields if f.name in values])
            self._index_fields(conn, spec, doc_id, values)

        await self._db.write(run)

    async def get(self, index: str, doc_id: str, /) -> dict[str, JSONValue] | None:
        """All stored fields of a document, or None."""

        def run(conn: sqlite3.Connection) -> dict[str, JSONValue] | None:
            self._spec(conn, index)
            return self._doc(conn, index, doc_id)

        return await self._db.read(run)

    async def delete_fields(self, index: str, doc_id: str, fields: Sequence[str], /) -> None:
        """Remove fields of a document (rule 7)."""
        names = [n for n in fields if isinstance(n, str)]
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> None:
            self._spec(conn, index)
            doc = self._doc(conn, index, doc_id)
            if doc is None:
                return
            for name in names:
                doc.pop(name, None)
            conn.execute(
                "UPDATE hm_docs SET fields = ? WHERE ns = ? AND idx = ? AND doc_id = ?",
                (dumps(doc), ns, index, doc_id),
            )
            self._unindex(conn, index, doc_id, names)

        await self._db.write(run)

    async def delete(self, index: str, doc_id: str, /) -> bool:
        """Remove a document; True if it existed (rule 7)."""
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> bool:
            self._spec(conn, index)
            self._unindex(conn, index, doc_id, None)
            return (
                conn.execute(
                    "DELETE FROM hm_docs WHERE ns = ? AND idx = ? AND doc_id = ?",
                    (ns, index, doc_id),
                ).rowcount
                == 1
            )

        return await self._db.write(run)

    async def query(self, query: Query, /) -> QueryResult:
        """Filter, count, sort, page: one read transaction (rules 4-6, 9)."""
        if not isinstance(query.offset, int) or not isinstance(query.limit, int):
            raise ValidationError("offset and limit must be ints")
        if query.offset < 0 or query.limit < 0:
            raise ValidationError("offset and limit must not be negative")
        ns = self._namespace

        def run(conn: sqlite3.Connection) -> QueryResult:
            spec = self._spec(conn, query.index)
            if query.where is not None:
                check_search_where(spec, query.where)
            sort_field: SearchField | None = None
            if query.sort_by is not None:
                found = [f for f in spec.fields if f.name == query.sort_by and f.sortable]
                if not found:
                    raise ValidationError(
                        f"field {query.sort_by!r} is not sortable in {spec.name!r}"
                    )
                sort_field = found[0]
            builder = WhereSql(ns, query.index)
            condition = builder.build(query.where) if query.where is not None else "1"
            base = f"FROM hm_docs d WHERE d.ns = ? AND d.idx = ? AND {condition}"
            params: list[Any] = [ns, query.index, *builder.params]
            total = conn.execute(f"SELECT COUNT(*) {base}", params).fetchone()[0]
            if sort_field is None:
                sql = f"SELECT d.doc_id, d.fields {base} ORDER BY d.doc_id LIMIT ? OFFSET ?"
                page_params = [*params, query.limit, query.offset]
            else:
                column = "num" if sort_field.type is FieldType.NUMERIC else "tag"
                direction = "DESC" if query.descending else "ASC"
                # Missing values last in both directions; ties by document id ascending (rule 4).
                sort = (
                    f"(SELECT s.{column} FROM hm_values s WHERE s.ns = d.ns AND s.idx = d.idx"
                    " AND s.doc_id = d.doc_id AND s.field = ?)"
                )
                sql = (
                    f"SELECT d.doc_id, d.fields, {sort} AS sv {base}"
                    f" ORDER BY sv IS NULL, sv {direction}, d.doc_id LIMIT ? OFFSET ?"
                )
                page_params = [sort_field.name, *params, query.limit, query.offset]
            rows = conn.execute(sql, page_params).fetchall()
            hits: list[Hit] = []
            for row in rows:
                doc: dict[str, JSONValue] = loads(row[1])  # type: ignore[assignment]
                # Query.fields: the requested ones, or all indexed fields of the spec.
                wanted = query.fields or tuple(f.name for f in spec.fields)
                doc = {name: doc[name] for name in wanted if name in doc}
                hits.append(Hit(doc_id=row[0], fields=doc))
            return QueryResult(total=int(total), hits=tuple(hits))

        return await self._db.read(run)

    async def native_query(
        self, index: str, query: str, /, *, offset: int = 0, limit: int = 10
    ) -> QueryResult:
        """Not supported (Search rule 8): FTS5 syntax is not exposed; use ``query``."""
        raise CapabilityNotSupportedError(
            self.name, Capability.SEARCH_NATIVE_QUERY, "Use query() with a structured Query."
        )
