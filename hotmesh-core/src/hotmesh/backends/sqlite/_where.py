"""Validation and SQL translation of search ``Where`` trees (Search rules 4-6).

Every user value is bound as a parameter; full-text words are reduced to ``\\w+`` runs and
hex-encoded into FTS5 tokens, each quoted, so no value can change a query's meaning (Search
rule 5).
"""

from __future__ import annotations

import re
from typing import Any

from hotmesh.providers import And, Condition, JSONValue, Op, Or, Where, is_number

_WORD = re.compile(r"\w+")
_COMPARE = {Op.LT: "<", Op.LE: "<=", Op.GT: ">", Op.GE: ">="}


def words(text: str) -> list[str]:
    """Lower-cased words of a text, as MATCH sees them (Condition docs: ``\\w+`` runs)."""
    return [word.lower() for word in _WORD.findall(text)]


def token(word: str) -> str:
    """The FTS5 token of a word: ``x`` + hex of its UTF-8 bytes.

    FTS5's unicode61 tokenizer splits and folds by Unicode 6.1 tables, which differ from Python's
    ``\\w`` (combining marks, newer letters). Feeding it hex tokens made of ``[0-9a-fx]`` gives
    exactly one FTS token per contract word, so MATCH means precisely "every word occurs", and no
    user text can ever reach FTS5 query syntax (Search rule 5).
    """
    return "x" + word.encode("utf-8").hex()


def tokens(text: str) -> str:
    """The FTS5 document body of a TEXT value."""
    return " ".join(token(word) for word in words(text))


def text_of(value: JSONValue) -> str:
    """The text a TEXT field contributes to the full-text index."""
    return value if isinstance(value, str) else str(value)


class WhereSql:
    """Builds a SQL boolean over ``d.doc_id`` with its parameters, for one (ns, index)."""

    def __init__(self, ns: str, index: str) -> None:
        self._ns = ns
        self._index = index
        self.params: list[Any] = []

    def build(self, where: Where) -> str:
        """SQL text for a (validated) where tree."""
        if isinstance(where, And):
            if not where.clauses:
                return "1"
            return "(" + " AND ".join(self.build(c) for c in where.clauses) + ")"
        if isinstance(where, Or):
            if not where.clauses:
                return "0"
            return "(" + " OR ".join(self.build(c) for c in where.clauses) + ")"
        return self._condition(where)

    def _values(self, field: str, predicate: str, params: list[Any]) -> str:
        self.params.extend([self._ns, self._index, field, *params])
        return (
            "d.doc_id IN (SELECT v.doc_id FROM hm_values v WHERE v.ns = ? AND v.idx = ?"
            f" AND v.field = ? AND {predicate})"
        )

    def _equal(self, field: str, targets: list[Any]) -> str:
        """Equality as JSON values compare: strings to TAG text, numbers to numbers."""
        strings = [t for t in targets if isinstance(t, str)]
        numbers = [t for t in targets if is_number(t)]  # a bool equals no number
        parts: list[str] = []
        params: list[Any] = []
        if strings:
            parts.append(f"v.tag IN ({', '.join('?' * len(strings))})")
            params.extend(strings)
        if numbers:
            parts.append(f"v.num IN ({', '.join('?' * len(numbers))})")
            params.extend(numbers)
        if not parts:
            return "0"
        return self._values(field, "(" + " OR ".join(parts) + ")", params)

    def _condition(self, cond: Condition) -> str:
        op, value = cond.op, cond.value
        if op is Op.EQ:
            return self._equal(cond.field, [value])
        if op is Op.NE:
            return f"NOT {self._equal(cond.field, [value])}"
        if op is Op.IN:
            assert isinstance(value, (tuple, list))
            return self._equal(cond.field, list(value))
        if op is Op.BETWEEN:
            assert isinstance(value, (tuple, list))
            return self._values(cond.field, "v.num BETWEEN ? AND ?", [value[0], value[1]])
        if op in _COMPARE:
            return self._values(cond.field, f"v.num {_COMPARE[op]} ?", [value])
        # MATCH: every word as a quoted phrase; no word matches nothing (Condition docs).
        wanted = words(text_of(value))  # type: ignore[arg-type]
        if not wanted:
            return "0"
        phrase = " ".join(f'"{token(word)}"' for word in wanted)  # implicit AND of words
        self.params.extend([phrase, self._ns, self._index, cond.field])
        return (
            "d.doc_id IN (SELECT doc_id FROM hm_fts WHERE hm_fts MATCH ? AND ns = ?"
            " AND idx = ? AND field = ?)"
        )
