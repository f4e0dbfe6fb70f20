"""MemorySearch: the reference evaluator of the Search rules (brute force over all documents)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from hotmesh.backends.memory._provider import MemoryProvider
from hotmesh.errors import CapabilityNotSupportedError, ValidationError
from hotmesh.providers import (
    And,
    Capability,
    Condition,
    Hit,
    IndexSpec,
    JSONValue,
    Op,
    Or,
    Query,
    QueryResult,
    Where,
    check_search_value,
    check_search_where,
    dumps,
    is_number,
    loads,
)

_WORD = re.compile(r"\w+")
def words(text: str) -> list[str]:
    """Lower-cased words of a text, as MATCH sees them."""
    return _WORD.findall(text.lower())


def matches(where: Where | None, doc: Mapping[str, JSONValue]) -> bool:
    """Evaluate a where tree against one document exactly as Condition documents."""
    if where is None:
        return True
    if isinstance(where, And):
        return all(matches(c, doc) for c in where.clauses)
    if isinstance(where, Or):
        return any(matches(c, doc) for c in where.clauses)
    return _condition(where, doc)


def _condition(cond: Condition, doc: Mapping[str, JSONValue]) -> bool:
    if cond.field not in doc:
        return cond.op is Op.NE
    value: Any = doc[cond.field]
    target: Any = cond.value
    if cond.op is Op.EQ:
        return bool(value == target)
    if cond.op is Op.NE:
        return bool(value != target)
    if cond.op is Op.IN:
        return any(value == t for t in target)
    if cond.op is Op.MATCH:
        wanted = words(str(target))
        have = set(words(str(value)))
        return bool(wanted) and all(w in have for w in wanted)
    if not is_number(value):
        return False
    if cond.op is Op.BETWEEN:
        return bool(target[0] <= value <= target[1])
    return bool(
        {
            Op.LT: value < target,
            Op.LE: value <= target,
            Op.GT: value > target,
            Op.GE: value >= target,
        }[cond.op]
    )


def order(hits: list[tuple[str, dict[str, JSONValue]]], sort_by: str | None, descending: bool) -> None:
    """Sort in place: by field (missing last), ties and default by document id (Query docs).

    Python's sort is stable even with ``reverse=True``, so sorting by id first keeps ties ascending.
    """
    hits.sort(key=lambda h: h[0])
    if sort_by is None:
        return
    present = [h for h in hits if sort_by in h[1]]
    missing = [h for h in hits if sort_by not in h[1]]
    present.sort(key=lambda h: h[1][sort_by], reverse=descending)  # type: ignore[arg-type,return-value]
    hits[:] = present + missing


class MemorySearch(MemoryProvider):
    """Indexes as dicts of documents; queries evaluated by brute force."""

    role: ClassVar[str] = "search"
    declared: ClassVar[frozenset[Capability]] = frozenset({Capability.SEARCH_SORT})

    def _empty(self) -> dict[str, Any]:
        return {"indexes": {}}

    def _index(self, name: str) -> dict[str, Any]:
        index: dict[str, Any] | None = self._data()["indexes"].get(name)
        if index is None:
            raise ValidationError(f"no search index {name!r}")  # Search rule 9
        return index

    async def create_index(self, spec: IndexSpec, /) -> None:
        """Search rule 1."""
        with self.database.lock:
            indexes = self._data()["indexes"]
            if spec.name in indexes:
                indexes[spec.name]["spec"] = spec
            else:
                indexes[spec.name] = {"spec": spec, "docs": {}}

    async def drop_index(self, index: str, /) -> None:
        """Search rule 7."""
        with self.database.lock:
            self._data()["indexes"].pop(index, None)

    async def upsert(self, index: str, doc_id: str, fields: Mapping[str, JSONValue], /) -> None:
        """Search rules 2, 3."""
        values = loads(dumps(dict(fields), "fields"))
        assert isinstance(values, dict)
        with self.database.lock:
            state = self._index(index)
            for name, value in values.items():
                check_search_value(state["spec"], name, value)
            state["docs"].setdefault(doc_id, {}).update(values)

    async def get(self, index: str, doc_id: str, /) -> dict[str, JSONValue] | None:
        """All stored fields of a document."""
        with self.database.lock:
            doc = self._index(index)["docs"].get(doc_id)
            return None if doc is None else dict(doc)

    async def delete_fields(self, index: str, doc_id: str, fields: Sequence[str], /) -> None:
        """Search rule 7."""
        with self.database.lock:
            doc = self._index(index)["docs"].get(doc_id)
            for name in fields:
                if doc is not None:
                    doc.pop(name, None)

    async def delete(self, index: str, doc_id: str, /) -> bool:
        """Search rule 7."""
        with self.database.lock:
            return self._index(index)["docs"].pop(doc_id, None) is not None

    async def query(self, query: Query, /) -> QueryResult:
        """Search rules 4-6, 9."""
        with self.database.lock:
            state = self._index(query.index)
            spec: IndexSpec = state["spec"]
            if query.where is not None:
                check_search_where(spec, query.where)
            if query.sort_by is not None:
                sortable = {f.name for f in spec.fields if f.sortable}
                if query.sort_by not in sortable:
                    raise ValidationError(f"field {query.sort_by!r} is not sortable in {spec.name!r}")
            if query.offset < 0 or query.limit < 0:
                raise ValidationError("offset and limit must not be negative")
            found = [(doc_id, dict(doc)) for doc_id, doc in state["docs"].items() if matches(query.where, doc)]
        order(found, query.sort_by, query.descending)
        page = found[query.offset : query.offset + query.limit]
        wanted = set(query.fields) if query.fields else {f.name for f in spec.fields}  # Query.fields
        hits = tuple(Hit(doc_id, {k: v for k, v in doc.items() if k in wanted}) for doc_id, doc in page)
        return QueryResult(total=len(found), hits=hits)

    async def native_query(
        self, index: str, query: str, /, *, offset: int = 0, limit: int = 10
    ) -> QueryResult:
        """Search rule 8: not supported in memory."""
        raise CapabilityNotSupportedError(
            self.name, Capability.SEARCH_NATIVE_QUERY, "Use query() with a structured Query."
        )
