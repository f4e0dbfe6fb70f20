"""RedisSearch: the Redis Query Engine (FT.CREATE ... ON HASH, FT.SEARCH), Search rules 1-9.

Needs a server with the query engine (Redis 8 with search, Redis Stack, or redis-server
``--loadmodule redisearch.so``); ``open()`` raises CapabilityNotSupportedError otherwise, naming
the server needed and the other search providers. Documents are hashes
``hm:x:{ns}:d:<len>:<index>:<doc id>``: each field's JSON under ``__j:<name>`` (returned by
``get``), and strings/numbers raw under ``<name>`` (indexed). Every user value in a query is
escaped (rule 5); queries run with ``DIALECT 2 VERBATIM`` (no stemming expansion) and the
index has no stopwords, so MATCH means "every word occurs".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import anyio
import redis.exceptions as rexc

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
    loads,
)
from hotmesh_redis._base import Client, RedisProvider

_JSON = "__j:"
_ID = "__id"
_WORD = re.compile(r"\w+")
_PUNCT = re.compile(r"([^\w\u0080-\U0010ffff]|_)")
_SEPARATOR = "\x1f"
_MAX_RESULTS = 10000

Compiled = str | bool
"""A query fragment, or True (matches all) / False (matches none)."""


def escape(value: str) -> str:
    """Backslash-escape every ASCII punctuation and space character (Search rule 5)."""
    return _PUNCT.sub(r"\\\1", value)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def _and(parts: Sequence[Compiled]) -> Compiled:
    if any(p is False for p in parts):
        return False
    strs = [p for p in parts if isinstance(p, str)]
    if not strs:
        return True
    return strs[0] if len(strs) == 1 else "(" + " ".join(strs) + ")"


def _or(parts: Sequence[Compiled]) -> Compiled:
    if any(p is True for p in parts):
        return True
    strs = [p for p in parts if isinstance(p, str)]
    if not strs:
        return False
    return strs[0] if len(strs) == 1 else "(" + " | ".join(strs) + ")"


def _not(part: Compiled) -> Compiled:
    if isinstance(part, bool):
        return not part
    return f"(-{part})"


class RedisSearch(RedisProvider):
    """Search on the Redis Query Engine."""

    role: ClassVar[str] = "search"
    role_letter: ClassVar[str] = "x"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """Native FT.SEARCH queries and sorting."""
        return frozenset(
            {Capability.MULTI_PROCESS, Capability.DURABLE, Capability.SEARCH_NATIVE_QUERY,
             Capability.SEARCH_SORT}
        )

    async def _on_open(self, client: Client) -> None:
        hint = (
            "The Redis search provider needs the Redis Query Engine (FT.SEARCH): Redis 8 with"
            " search, Redis Stack, or redis-server --loadmodule redisearch.so (RediSearch >= 2.10)."
            f" {self.settings.where} has none. Or configure another search provider, e.g."
            " search=postgresql://... or search=sqlite:///hotmesh.db."
        )
        if self.settings.cluster:
            raise CapabilityNotSupportedError(
                "redis", "search", "The open-source Redis Query Engine does not index across"
                " a Redis Cluster: use a single Redis 8 / Redis Stack server for search, or"
                " configure another search provider, e.g. search=postgresql://..."
            )
        with self.errors("open"):
            try:
                await client.execute_command("FT._LIST")
            except rexc.ResponseError as exc:
                if "unknown command" not in str(exc).lower():
                    raise
                raise CapabilityNotSupportedError("redis", "search", hint) from None

    # -- keys -----------------------------------------------------------------------------
    def _index_name(self, index: str) -> str:
        return self.ns_key(f"i:{index}")

    def _spec_key(self, index: str) -> str:
        return self.ns_key(f"spec:{index}")

    def _doc_prefix(self, index: str) -> str:
        return self.ns_key(f"d:{len(index)}:{index}:")

    async def _spec(self, index: str) -> IndexSpec:
        with self.errors("spec"):
            raw = await self.client.get(self._spec_key(index))
        if raw is None:
            raise ValidationError(f"search index {index!r} does not exist")
        data: Any = loads(raw)
        fields = tuple(
            SearchField(f["name"], FieldType(f["type"]), f["sortable"], f["nostem"])
            for f in data["fields"]
        )
        return IndexSpec(data["name"], fields)

    @staticmethod
    def _encode_spec(spec: IndexSpec) -> str:
        return dumps(
            {
                "name": spec.name,
                "fields": [
                    {"name": f.name, "type": f.type.value, "sortable": f.sortable,
                     "nostem": f.nostem}
                    for f in spec.fields
                ],
            }
        )

    # -- indexes --------------------------------------------------------------------------
    async def create_index(self, spec: IndexSpec, /) -> None:
        """FT.CREATE; the same spec again is a no-op, another one replaces it (rule 1)."""
        if not isinstance(spec.name, str) or not spec.name:
            raise ValidationError(f"an index name must be a non-empty string, got {spec.name!r}")
        names = [f.name for f in spec.fields]
        for f in spec.fields:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f.name) or f.name == _ID:
                raise ValidationError(f"invalid search field name {f.name!r}")
        if len(set(names)) != len(names):
            raise ValidationError(f"duplicate field names in index {spec.name!r}")
        encoded = self._encode_spec(spec)
        client = self.client
        with self.errors("create_index"):
            current = await client.get(self._spec_key(spec.name))
            if current == encoded:
                return
            if current is not None:
                try:
                    await client.execute_command("FT.DROPINDEX", self._index_name(spec.name))
                except Exception as exc:
                    if "unknown index" not in str(exc).lower() and "no such" not in str(exc).lower():
                        raise
            schema: list[str] = []
            for f in spec.fields:
                schema.append(f.name)
                if f.type is FieldType.TAG:
                    schema += ["TAG", "SEPARATOR", _SEPARATOR, "CASESENSITIVE", "INDEXEMPTY"]
                elif f.type is FieldType.TEXT:
                    schema += ["TEXT"] + (["NOSTEM"] if f.nostem else []) + ["INDEXEMPTY"]
                else:
                    schema += ["NUMERIC"]
                if f.sortable:
                    schema += ["SORTABLE"]
            schema += [_ID, "TAG", "CASESENSITIVE", "SORTABLE", "UNF"]
            await client.execute_command(
                "FT.CREATE", self._index_name(spec.name), "ON", "HASH",
                "PREFIX", "1", self._doc_prefix(spec.name), "STOPWORDS", "0", "SCHEMA", *schema,
            )
            await client.set(self._spec_key(spec.name), encoded)
            # Existing documents are indexed in the background: wait (rule 1).
            for _ in range(500):
                info: Any = await client.execute_command("FT.INFO", self._index_name(spec.name))
                flat = dict(zip(info[::2], info[1::2], strict=False)) if isinstance(info, list) else info
                if str(flat.get("indexing", "0")) in ("0", "0.0"):
                    break
                await anyio.sleep(0.01)

    async def drop_index(self, index: str, /) -> None:
        """FT.DROPINDEX ... DD and the documents' keys (rule 7)."""
        client = self.client
        with self.errors("drop_index"):
            try:
                await client.execute_command("FT.DROPINDEX", self._index_name(index), "DD")
            except Exception as exc:
                if "unknown index" not in str(exc).lower() and "no such" not in str(exc).lower():
                    raise
            async for key in client.scan_iter(match=_glob(self._doc_prefix(index)) + "*", count=500):
                await client.unlink(key)
            await client.delete(self._spec_key(index))

    # -- documents ------------------------------------------------------------------------
    async def upsert(self, index: str, doc_id: str, fields: Mapping[str, JSONValue], /) -> None:
        """HSET the JSON and the raw indexed value of each field (rules 2, 3)."""
        spec = await self._spec(index)
        mapping: dict[str, Any] = {_ID: doc_id}
        for name, value in fields.items():
            check_search_value(spec, name, value)
            mapping[_JSON + name] = dumps(value, f"fields[{name!r}]")
            if isinstance(value, str):
                mapping[name] = value
            elif is_number(value):
                mapping[name] = _number(value)  # type: ignore[arg-type]
        with self.errors("upsert"):
            key = self._doc_prefix(index) + doc_id
            pipe = self.client.pipeline(transaction=True)
            # A field that was a string/number and becomes, say, a list loses its raw copy.
            stale = [n for n, v in fields.items() if not isinstance(v, str) and not is_number(v)]
            if stale:
                pipe.hdel(key, *stale)
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            await pipe.execute()

    async def get(self, index: str, doc_id: str, /) -> dict[str, JSONValue] | None:
        """All stored fields of a document."""
        await self._spec(index)
        with self.errors("get"):
            raw: Any = await self.client.hgetall(self._doc_prefix(index) + doc_id)
        if not raw:
            return None
        return {k[len(_JSON):]: loads(v) for k, v in raw.items() if k.startswith(_JSON)}

    async def delete_fields(self, index: str, doc_id: str, fields: Sequence[str], /) -> None:
        """HDEL both copies of each field (rule 7)."""
        await self._spec(index)
        if not fields:
            return
        names = [n for f in fields for n in (f, _JSON + f)]
        with self.errors("delete_fields"):
            key = self._doc_prefix(index) + doc_id
            await self.client.hdel(key, *names)

    async def delete(self, index: str, doc_id: str, /) -> bool:
        """DEL the document (rule 7)."""
        await self._spec(index)
        with self.errors("delete"):
            return bool(await self.client.delete(self._doc_prefix(index) + doc_id))

    # -- queries --------------------------------------------------------------------------
    def _compile(self, spec: IndexSpec, where: Where) -> Compiled:
        if isinstance(where, And):
            return _and([self._compile(spec, c) for c in where.clauses])
        if isinstance(where, Or):
            return _or([self._compile(spec, c) for c in where.clauses])
        return self._condition(spec, where)

    def _condition(self, spec: IndexSpec, cond: Condition) -> Compiled:
        ftype = {f.name: f.type for f in spec.fields}[cond.field]
        f = cond.field
        v: Any = cond.value
        if ftype is FieldType.TEXT:
            words = [w.lower() for w in _WORD.findall(str(v))]
            if not words:
                return False
            return "@" + f + ":(" + " ".join(escape(w) for w in words) + ")"
        if ftype is FieldType.TAG:
            def eq(x: Any) -> Compiled:
                if not isinstance(x, str):
                    return False
                return "@" + f + ":{" + (escape(x) if x else '""') + "}"
        else:
            def eq(x: Any) -> Compiled:
                if not is_number(x):
                    return False
                return f"@{f}:[{_number(x)} {_number(x)}]"
        if cond.op is Op.EQ:
            return eq(v)
        if cond.op is Op.NE:
            return _not(eq(v))
        if cond.op is Op.IN:
            return _or([eq(x) for x in v])
        if cond.op is Op.BETWEEN:
            return f"@{f}:[{_number(v[0])} {_number(v[1])}]"
        n = _number(v)
        return {
            Op.LT: f"@{f}:[-inf ({n}]",
            Op.LE: f"@{f}:[-inf {n}]",
            Op.GT: f"@{f}:[({n} +inf]",
            Op.GE: f"@{f}:[{n} +inf]",
        }[cond.op]

    async def query(self, query: Query, /) -> QueryResult:
        """Compile the where tree to FT.SEARCH syntax with every value escaped (rules 4-6, 9)."""
        spec = await self._spec(query.index)
        if query.where is not None:
            check_search_where(spec, query.where)
        by_name = {f.name: f for f in spec.fields}
        if query.sort_by is not None:
            field = by_name.get(query.sort_by)
            if field is None or not field.sortable:
                raise ValidationError(
                    f"field {query.sort_by!r} of index {query.index!r} is not sortable"
                )
        if query.offset < 0 or query.limit < 0:
            raise ValidationError("offset and limit must not be negative")
        compiled = True if query.where is None else self._compile(spec, query.where)
        if compiled is False:
            return QueryResult(total=0, hits=())
        text = "*" if compiled is True else compiled
        wanted = query.fields or tuple(f.name for f in spec.fields)
        index = self._index_name(query.index)
        client = self.client
        with self.errors("query"):
            if query.sort_by is None:
                reply: Any = await client.execute_command(
                    "FT.SEARCH", index, text, "VERBATIM", "NOCONTENT", "SORTBY", _ID, "ASC",
                    "LIMIT", query.offset, query.limit, "DIALECT", "2",
                )
                total, ids = int(reply[0]), list(reply[1:])
            else:
                # Missing values last and ties by id (rule 4): order the matches here.
                reply = await client.execute_command(
                    "FT.SEARCH", index, text, "VERBATIM", "RETURN", "2", _ID, query.sort_by,
                    "LIMIT", 0, _MAX_RESULTS, "DIALECT", "2",
                )
                total = int(reply[0])
                rows = []
                for i in range(1, len(reply), 2):
                    values = dict(zip(reply[i + 1][::2], reply[i + 1][1::2], strict=False))
                    rows.append((reply[i], values.get(query.sort_by)))
                rows.sort(key=lambda r: r[0])
                present = [r for r in rows if r[1] is not None]
                missing = [r for r in rows if r[1] is None]
                present.sort(key=lambda r: float(r[1] or 0), reverse=query.descending)
                ids = [r[0] for r in present + missing][query.offset : query.offset + query.limit]
            hits = await self._hits(ids, wanted)
        return QueryResult(total=total, hits=tuple(hits))

    async def _hits(self, keys: Sequence[str], wanted: Sequence[str] | None) -> list[Hit]:
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        docs: list[Any] = await pipe.execute()
        hits = []
        for raw in docs:
            if not raw:
                continue
            values = {k[len(_JSON):]: loads(v) for k, v in raw.items() if k.startswith(_JSON)}
            if wanted is not None:
                values = {n: values[n] for n in wanted if n in values}
            hits.append(Hit(doc_id=raw.get(_ID, ""), fields=values))
        return hits

    async def native_query(
        self, index: str, query: str, /, *, offset: int = 0, limit: int = 10
    ) -> QueryResult:
        """FT.SEARCH with the caller's query string (DIALECT 2) (rule 8)."""
        await self._spec(index)
        with self.errors("native_query"):
            reply: Any = await self.client.execute_command(
                "FT.SEARCH", self._index_name(index), query, "NOCONTENT", "LIMIT", offset, limit,
                "DIALECT", "2",
            )
            hits = await self._hits(list(reply[1:]), None)
        return QueryResult(total=int(reply[0]), hits=tuple(hits))

    # -- cleanup --------------------------------------------------------------------------
    async def _indexes(self) -> list[str]:
        prefix = self.ns_key("i:")
        listed: Any = await self.client.execute_command("FT._LIST")
        return [name for name in listed if name.startswith(prefix)]

    async def purge(self) -> None:
        """Drop this namespace's indexes, then its keys (Provider rule 4)."""
        with self.errors("purge"):
            for name in await self._indexes():
                await self.client.execute_command("FT.DROPINDEX", name)
        await super().purge()

    async def is_empty(self) -> bool:
        """No index and no key of the namespace remains (Provider rule 4)."""
        with self.errors("is_empty"):
            if await self._indexes():
                return False
        return await super().is_empty()


def _glob(text: str) -> str:
    """Escape glob specials of a key prefix for SCAN MATCH."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
