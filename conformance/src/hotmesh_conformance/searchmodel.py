"""A brute-force evaluator of structured queries: the oracle of the search property tests.

It reads :class:`~hotmesh.providers.Condition` and :class:`~hotmesh.providers.Query` literally
(Search rule 4): a missing field matches only NE; MATCH needs every ``\\w+`` word of the value as
a word of the field, case-insensitively, and a value with no word matches nothing; without
``sort_by`` hits are ordered by document id; with it, documents lacking the field come last and
ties are broken by ascending document id. It is written independently of every provider, so a
provider that agrees with it agrees with the contract, not with another provider.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hotmesh.providers import And, Condition, Hit, IndexSpec, JSONValue, Op, Or, Query, QueryResult, Where

_WORD = re.compile(r"\w+")

Docs = Mapping[str, Mapping[str, JSONValue]]


def words(text: str) -> set[str]:
    """The case-folded ``\\w+`` words of ``text``."""
    return {w.lower() for w in _WORD.findall(text)}


def _num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def holds(where: Where | None, doc: Mapping[str, JSONValue]) -> bool:
    """Whether ``doc`` satisfies ``where`` (None matches everything)."""
    if where is None:
        return True
    if isinstance(where, And):
        return all(holds(c, doc) for c in where.clauses)
    if isinstance(where, Or):
        return any(holds(c, doc) for c in where.clauses)
    return _holds_condition(where, doc)


def _equal(a: object, b: object) -> bool:
    if _num(a) and _num(b):
        return float(a) == float(b)  # type: ignore[arg-type]
    return type(a) is type(b) and a == b


def _holds_condition(cond: Condition, doc: Mapping[str, JSONValue]) -> bool:
    if cond.field not in doc:
        return cond.op is Op.NE
    value: Any = doc[cond.field]
    target: Any = cond.value
    if cond.op is Op.EQ:
        return _equal(value, target)
    if cond.op is Op.NE:
        return not _equal(value, target)
    if cond.op is Op.IN:
        return any(_equal(value, t) for t in target)
    if cond.op is Op.MATCH:
        wanted = words(str(target))
        return bool(wanted) and wanted <= words(str(value))
    if not _num(value):
        return False
    if cond.op is Op.BETWEEN:
        low, high = target
        return bool(low <= value <= high)
    if cond.op is Op.LT:
        return bool(value < target)
    if cond.op is Op.LE:
        return bool(value <= target)
    if cond.op is Op.GT:
        return bool(value > target)
    return bool(value >= target)  # Op.GE


def evaluate(spec: IndexSpec, docs: Docs, query: Query) -> QueryResult:
    """The result the contract demands for ``query`` over ``docs`` indexed by ``spec``."""
    matched = sorted(doc_id for doc_id, doc in docs.items() if holds(query.where, doc))
    if query.sort_by is not None:
        key = query.sort_by
        present = [d for d in matched if key in docs[d]]
        missing = [d for d in matched if key not in docs[d]]
        # Stable sorts: ids are ascending already, so ties stay ascending in both directions.
        present.sort(key=lambda d: docs[d][key], reverse=query.descending)  # type: ignore[arg-type, return-value]
        matched = present + missing
    page = matched[query.offset : query.offset + query.limit]
    wanted = query.fields or tuple(f.name for f in spec.fields)
    hits = tuple(
        Hit(d, {name: docs[d][name] for name in wanted if name in docs[d]}) for d in page
    )
    return QueryResult(total=len(matched), hits=hits)
