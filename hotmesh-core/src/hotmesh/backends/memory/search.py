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
    FieldType,
    Hit,
    IndexSpec,
    JSONValue,
    Op,
    Or,
    Query,
    QueryResult,
    Where,
    dumps,
    loads,
)

_WORD = re.compile(r"\w+")
_NUMERIC_OPS = {Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN, Op.IN}
_TAG_OPS = {Op.EQ, Op.NE, Op.IN}
_TEXT_OPS = {Op.MATCH}
ALLOWED_OPS: Mapping[FieldType, set[Op]] = {
    FieldType.NUMERIC: _NUMERIC_OPS,
    FieldType.TAG: _TAG_OPS,
    FieldType.TEXT: _TEXT_OPS,
}


def words(text: str) -> list[str]:
    """Lower-cased words of a text, as MATCH sees them."""
    return _WORD.findall(text.lower())


def is_number(value: object) -> bool:
    """True for int/float but not bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_value(spec: IndexSpec, name: str, value: JSONValue) -> None:
    """Search rule 2: indexed values must have their field's type."""
    for field in spec.fields:
        if field.name != name:
            continue
        ok = is_number(value) if field.type is FieldType.NUMERIC else isinstance(value, str)
        if not ok:
            raise ValidationError(
                f"field {name!r} of index {spec.name!r} is {field.type.value}; "
                f"got {type(value).__name__} {value!r}"
            )


def check_where(spec: IndexSpec, where: Where) -> None:
    """Search rule 6: fields exist and operators fit their types."""
    if isinstance(where, (And, Or)):
        for clause in where.clauses:
            check_where(spec, clause)
        return
    types = {f.name: f.type for f in spec.fields}
    if where.field not in types:
        raise ValidationError(f"field {where.field!r} is not in index {spec.name!r}")
    ftype = types[where.field]
    if where.op not in ALLOWED_OPS[ftype]:
        raise ValidationError(
            f"operator {where.op.value!r} does not apply to {ftype.value} field {where.field!r}"
        )
    if where.op is Op.BETWEEN and not (
        isinstance(where.value, (tuple, list)) and len(where.value) == 2 and all(is_number(v) for v in where.value)
    ):
        raise ValidationError(f"BETWEEN on {where.field!r} needs two numbers, got {where.value!r}")
    if where.op is Op.IN and not isinstance(where.value, (tuple, list)):
        raise ValidationError(f"IN on {where.field!r} needs a tuple of values, got {where.value!r}")
    if where.op in {Op.LT, Op.LE, Op.GT, Op.GE} and not is_number(where.value):
        raise ValidationError(f"{where.op.value} on {where.field!r} needs a number, got {where.value!r}")


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
                check_value(state["spec"], name, value)
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
                check_where(spec, query.where)
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
