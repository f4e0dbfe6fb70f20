"""Schema version 4: search documents in document-id order per index.

A query without ``sort_by`` returns hits in ``doc_id COLLATE "C"`` order (Search rule 4). The
primary key ``(index_name, doc_id)`` uses the database's collation, which need not be "C", so
it cannot serve that order; this B-tree can: a page of a broad match (half of the documents)
walks it and stops after ``offset + limit`` hits instead of sorting every match. The per-field
B-trees are built by ``create_index`` (see _search.field_indexes), not here: they depend on
each index's spec.
"""

from __future__ import annotations

SEARCH_KEYSET = r"""
CREATE INDEX IF NOT EXISTS search_docs_keyset ON @S@.search_docs (index_name, doc_id COLLATE "C");
"""
