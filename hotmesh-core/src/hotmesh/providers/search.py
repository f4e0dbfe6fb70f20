"""The Search contract: indexes over declared fields and structured queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from hotmesh.providers._base import Provider
from hotmesh.providers._types import IndexSpec, JSONValue, Query, QueryResult


@runtime_checkable
class Search(Provider, Protocol):
    """Documents with indexed fields, queried with :class:`~hotmesh.providers.Query`.

    Rules (cited by the kit as "Search rule N"):

    1. ``create_index`` is idempotent for the same spec; a different spec under the same name
       replaces the definition and existing documents are queried under the new one.
    2. ``upsert`` merges fields into a document (creating it). Fields not in the spec are stored
       and returned but not queryable. TAG values are strings, NUMERIC values numbers, TEXT values
       strings; a value of the wrong type raises ValidationError before anything is written.
    3. A write is visible to ``query`` when the call returns (read-your-writes).
    4. ``query`` evaluates the ``where`` tree exactly as documented on
       :class:`~hotmesh.providers.Condition`; a document missing a field matches no condition on
       that field except NE. ``total`` counts all matches; ``hits`` is the page after sort,
       ``offset`` and ``limit``; without ``sort_by`` hits are ordered by document id. Ties in
       ``sort_by`` are broken by document id.
    5. User values are data: quotes, braces, ``@``, ``*``, ``|``, ``--``, ``;``, ``%`` and unicode
       in a value never change a query's meaning.
    6. Querying a field that is not in the spec, sorting by a field that is not sortable, or an
       operator that does not fit the field's type raises ValidationError naming the field.
    7. ``delete_fields`` removes fields; ``delete`` removes the document (True if it existed);
       ``drop_index`` removes the index and its documents.
    8. With SEARCH_NATIVE_QUERY, ``native_query`` passes a backend-specific query string;
       without it, it raises CapabilityNotSupportedError.
    9. Querying an index that does not exist raises ValidationError naming it.
    """

    async def create_index(self, spec: IndexSpec, /) -> None:
        """Declare an index (rule 1)."""
        ...

    async def drop_index(self, index: str, /) -> None:
        """Remove an index and its documents (rule 7)."""
        ...

    async def upsert(self, index: str, doc_id: str, fields: Mapping[str, JSONValue], /) -> None:
        """Merge fields into a document (rules 2, 3)."""
        ...

    async def get(self, index: str, doc_id: str, /) -> dict[str, JSONValue] | None:
        """All stored fields of a document, or None."""
        ...

    async def delete_fields(self, index: str, doc_id: str, fields: Sequence[str], /) -> None:
        """Remove fields of a document (rule 7)."""
        ...

    async def delete(self, index: str, doc_id: str, /) -> bool:
        """Remove a document (rule 7)."""
        ...

    async def query(self, query: Query, /) -> QueryResult:
        """Run a structured query (rules 4-6, 9)."""
        ...

    async def native_query(
        self, index: str, query: str, /, *, offset: int = 0, limit: int = 10
    ) -> QueryResult:
        """Run a backend-native query (rule 8)."""
        ...
