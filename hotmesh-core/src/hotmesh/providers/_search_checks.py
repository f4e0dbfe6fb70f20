"""Validation every Search provider applies before touching its backend (Search rules 2 and 6).

One copy for all providers, so a query that one backend refuses is refused by every backend
with the same words (the kit compares them).
"""

from __future__ import annotations

from collections.abc import Mapping

from hotmesh.errors import ValidationError
from hotmesh.providers._types import And, Condition, FieldType, IndexSpec, JSONValue, Op, Or, Where

ALLOWED_OPS: Mapping[FieldType, frozenset[Op]] = {
    FieldType.NUMERIC: frozenset({Op.EQ, Op.NE, Op.LT, Op.LE, Op.GT, Op.GE, Op.BETWEEN, Op.IN}),
    FieldType.TAG: frozenset({Op.EQ, Op.NE, Op.IN}),
    FieldType.TEXT: frozenset({Op.MATCH}),
}
"""The operators each field type accepts."""

_COMPARISONS = frozenset({Op.LT, Op.LE, Op.GT, Op.GE})


def is_number(value: object) -> bool:
    """True for int and float, not bool (JSON booleans are never numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_search_value(spec: IndexSpec, name: str, value: JSONValue) -> None:
    """Search rule 2: an indexed value must have its field's type."""
    for field in spec.fields:
        if field.name != name:
            continue
        ok = is_number(value) if field.type is FieldType.NUMERIC else isinstance(value, str)
        if not ok:
            raise ValidationError(
                f"field {name!r} of index {spec.name!r} is {field.type.value}; "
                f"got {type(value).__name__} {value!r}"
            )


def check_search_where(spec: IndexSpec, where: Where) -> None:
    """Search rule 6: fields exist and operators fit their types and values."""
    if isinstance(where, (And, Or)):
        for clause in where.clauses:
            check_search_where(spec, clause)
        return
    if not isinstance(where, Condition):
        raise ValidationError(f"a where clause must be Condition, And or Or, got {where!r}")
    types = {f.name: f.type for f in spec.fields}
    if where.field not in types:
        raise ValidationError(f"field {where.field!r} is not in index {spec.name!r}")
    ftype = types[where.field]
    if where.op not in ALLOWED_OPS[ftype]:
        raise ValidationError(f"operator {where.op.value!r} does not apply to {ftype.value} field {where.field!r}")
    value = where.value
    if where.op is Op.BETWEEN and not (
        isinstance(value, (tuple, list)) and len(value) == 2 and all(is_number(v) for v in value)
    ):
        raise ValidationError(f"BETWEEN on {where.field!r} needs two numbers, got {value!r}")
    if where.op is Op.IN and not isinstance(value, (tuple, list)):
        raise ValidationError(f"IN on {where.field!r} needs a tuple of values, got {value!r}")
    if where.op in _COMPARISONS and not is_number(value):
        raise ValidationError(f"{where.op.value} on {where.field!r} needs a number, got {value!r}")
