"""The MeshData suite's schema, hostile values, and the oracle's reading of find_where clauses.

``condition_to_where`` states the documented meaning of a ``find_where`` clause list (all clauses
hold; ``=`` on a TEXT field matches words; ``[]`` is an inclusive range) as a structured query,
so the brute-force evaluator in ``searchmodel`` can judge the provider's answer.
"""

from __future__ import annotations

from typing import Any

from hotmesh import MeshData
from hotmesh.meshdata import SearchSchema
from hotmesh.providers import And, Condition, FieldType, IndexSpec, Op, Where

SCHEMA = SearchSchema.model_validate(
    {
        "schema": {
            "id": {"type": "TAG", "sortable": False},
            "first": {"type": "TEXT", "sortable": False, "nostem": True},
            "active": {"type": "TAG", "sortable": False},
            "created": {"type": "NUMERIC", "sortable": True},
        },
        "index": "user",
        "prefix": ["user"],
    }
)

HOSTILE = ["it's", 'say "hi"', "{curly}", "@field:x", "*", "a|b", "--x", "x;y", "100%", "naïve ☃", "a\\b", "-(x)"]

_OPS = {"=": Op.EQ, "!=": Op.NE, "<": Op.LT, "<=": Op.LE, ">": Op.GT, ">=": Op.GE, "[]": Op.BETWEEN, "in": Op.IN}


def condition_to_where(clauses: list[dict[str, Any]], spec: IndexSpec) -> Where | None:
    types = {f.name: f.type for f in spec.fields}
    conditions: list[Where] = []
    for clause in clauses:
        op = _OPS[clause["is"]]
        if op is Op.EQ and types[clause["field"]] is FieldType.TEXT:
            op = Op.MATCH
        value = clause["value"]
        conditions.append(Condition(clause["field"], op, tuple(value) if isinstance(value, list) else value))
    return And(tuple(conditions)) if conditions else None


__all__ = ["HOSTILE", "SCHEMA", "MeshData", "condition_to_where"]
