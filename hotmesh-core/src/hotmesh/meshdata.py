"""MeshData: workflows as searchable records.

A record is a MeshFlow workflow (id = record id, workflow name = entity) whose data lives in its
job as fields ``r.<name>`` (the source of truth: increments are atomic there) and is indexed in
the search provider under the entity's index (document id = record id). Schema fields are
queryable; other fields are stored and returned but not queryable.

Visibility: a field written by ``set``/``incr``/``delete`` (outside a workflow, or inside one via
``MeshData.workflow.search()``) is visible to ``find_where`` when that call returns. A record
with a ``ttl`` leaves the store and the index ``ttl`` after its workflow finishes (a durable
timer, so it needs no TTL support from the backend). Each namespace has its own records; a
record id is unique within its namespace (across entities, like any workflow id).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticError

from hotmesh._payload import json_args
from hotmesh._runtime import ConnectionLike, runtime
from hotmesh.config import HotMeshConfig, load_config
from hotmesh.connection import Connection
from hotmesh.engine.durations import Duration, parse_duration
from hotmesh.errors import ValidationError
from hotmesh.meshflow import _records as rec
from hotmesh.meshflow._replay import current_state
from hotmesh.meshflow.client import Client
from hotmesh.meshflow.worker import RECORD_PREFIX, Worker, new_workflow_job, record_operation
from hotmesh.providers import (
    And,
    Condition,
    FieldType,
    IndexSpec,
    JSONValue,
    Op,
    Query,
    SearchField,
    check_json,
)

__all__ = ["FieldSchema", "FindResult", "MeshData", "RecordSearch", "SearchSchema"]


class FieldSchema(BaseModel):
    """One field of a record schema: TEXT (words), TAG (exact strings) or NUMERIC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["TEXT", "TAG", "NUMERIC"]
    sortable: bool = False
    nostem: bool = False


class SearchSchema(BaseModel):
    """The searchable fields of an entity, in the original's shape: ``{"schema": {...}, "index": ..., "prefix": [...]}``.

    ``index`` and ``prefix`` are accepted for compatibility; the index is named after the entity.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    fields: dict[str, FieldSchema] = Field(alias="schema")
    index: str | None = None
    prefix: list[str] = Field(default_factory=list)

    def spec(self, entity: str) -> IndexSpec:
        return IndexSpec(
            entity,
            tuple(
                SearchField(name, FieldType(f.type), sortable=f.sortable, nostem=f.nostem)
                for name, f in sorted(self.fields.items())
            ),
        )


class FindResult(BaseModel):
    """What ``find_where`` returns: the total number of matches and one page of records."""

    model_config = ConfigDict(frozen=True)

    count: int
    data: list[dict[str, Any]]


_OPS: dict[str, Op] = {
    "=": Op.EQ,
    "!=": Op.NE,
    "<": Op.LT,
    "<=": Op.LE,
    ">": Op.GT,
    ">=": Op.GE,
    "[]": Op.BETWEEN,
    "in": Op.IN,
    "match": Op.MATCH,
}


def _check_entity(entity: object) -> str:
    return rec.check_workflow_name(entity) if isinstance(entity, str) else rec.check_workflow_name(str(entity))


def _field_names(fields: object, what: str) -> list[JSONValue]:
    """Field names as a list; one bare string is refused (it would be taken letter by letter)."""
    if isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
        raise ValidationError(f"{what} must be a list of field names, got {type(fields).__name__} {fields!r}")
    names: list[JSONValue] = list(fields)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ValidationError(f"{what} must be non-empty strings; got {bad!r}")
    return names


def _parse_schema(schema: SearchSchema | Mapping[str, Any] | None) -> SearchSchema | None:
    if schema is None or isinstance(schema, SearchSchema):
        return schema
    try:
        data = dict(schema)
        if "schema" not in data:  # a bare field mapping
            data = {"schema": data}
        return SearchSchema.model_validate(data)
    except PydanticError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_input=False, include_url=False)
        )
        raise ValidationError(f"invalid MeshData schema: {problems}") from None


class RecordSearch:
    """``MeshData.workflow.search()``: read and write this workflow's record, durably."""

    def __init__(self, index: str) -> None:
        self._index = index

    async def _op(self, op: str, **details: JSONValue) -> JSONValue:
        state = current_state("search")
        return await state.durable("search", f"{op}:{self._index}", {"op": op, "index": self._index, **details})

    async def set(self, field: str | Mapping[str, Any], value: Any = None) -> None:
        """Set one field (``set("active", "yes")``) or several (``set({...})``)."""
        fields = dict(field) if isinstance(field, Mapping) else {field: value}
        check_json(fields, "fields")
        await self._op("set", fields=fields)

    async def get(self, field: str | None = None) -> Any:
        """One field's value (None when unset), or the whole record without an argument."""
        values = await self._op("get", fields=[field] if field is not None else None)
        assert isinstance(values, dict)
        return values.get(field) if field is not None else values

    async def incr(self, field: str, amount: float = 1) -> float:
        """Add ``amount`` to a numeric field atomically; returns the new value."""
        value = await self._op("incr", field=field, amount=amount)
        return float(value) if isinstance(value, (int, float)) else 0.0

    async def delete(self, *fields: str) -> None:
        """Remove fields from the record and its index."""
        await self._op("delete", fields=list(fields))


class _MeshDataWorkflow:
    """``MeshData.workflow``: the in-workflow API."""

    @staticmethod
    async def search() -> RecordSearch:
        """The current workflow's record (the workflow must have been started by MeshData.exec)."""
        state = current_state("search")
        index = state.job.get("search_index")
        if not isinstance(index, str):
            raise ValidationError("MeshData.workflow.search() needs a workflow started by MeshData.exec")
        return RecordSearch(index)


class MeshData:
    """Searchable workflow records: ``connect`` a target, ``exec`` records, ``find_where`` them."""

    workflow = _MeshDataWorkflow

    def __init__(self, connection: ConnectionLike = None, schema: SearchSchema | Mapping[str, Any] | None = None) -> None:
        self._given = connection
        self.schema = _parse_schema(schema)

    async def _connection(self, namespace: str | None) -> Connection:
        if namespace is None:
            return await runtime.connection(self._given)
        if isinstance(self._given, Connection):
            base = self._given.config
        elif isinstance(self._given, HotMeshConfig):
            base = self._given
        else:
            base = load_config(url=self._given)
        config = base.model_copy(update={"namespace": namespace})
        HotMeshConfig.model_validate(config.model_dump())  # the namespace is checked like any other
        return await runtime.connection(config)

    def _spec(self, entity: str) -> IndexSpec:
        if self.schema is None:
            raise ValidationError("this MeshData has no schema: pass schema= to declare the searchable fields")
        return self.schema.spec(entity)

    async def create_search_index(self, entity: str, *, namespace: str | None = None) -> None:
        """Create the entity's index from the schema (idempotent)."""
        spec = self._spec(_check_entity(entity))
        conn = await self._connection(namespace)
        await conn.search.create_index(spec)

    async def connect(
        self,
        entity: str,
        target: Callable[..., Any],
        *,
        namespace: str | None = None,
        concurrency: int = 50,
    ) -> Worker:
        """Serve ``entity`` records with ``target`` (an ``async def`` workflow function) in this process."""
        name = _check_entity(entity)
        conn = await self._connection(namespace)
        conn.search  # noqa: B018 - fail now (CapabilityNotSupportedError) when search is unavailable
        return await Worker.create(connection=conn, task_queue=name, workflow={name: target}, concurrency=concurrency)

    async def exec(
        self,
        entity: str,
        args: Iterable[Any] = (),
        *,
        id: str | None = None,
        ttl: Duration | Literal["infinity"] | None = None,
        search: Mapping[str, Any] | None = None,
        namespace: str | None = None,
        timeout: Duration | None = None,
        await_: bool = True,
    ) -> Any:
        """Create the record ``id`` and run the entity's target with ``args``; return its result.

        ``search={"data": {...}}`` sets the record's initial fields (visible to ``find_where`` as
        soon as this call has started the workflow). ``ttl`` removes the record that long after
        its workflow finishes ("infinity" or None: keep it). An ``id`` that exists returns that
        record's result instead of running again. With ``await_=False`` returns the id at once.
        """
        name = _check_entity(entity)
        call_args = json_args(args)
        record_id = rec.check_workflow_id(id) if id is not None else uuid.uuid4().hex
        keep = None if ttl is None or ttl == "infinity" else parse_duration(ttl, what="ttl").total_seconds()
        data = dict((search or {}).get("data") or {})
        unknown = set(search or {}) - {"data"}
        if unknown:
            raise ValidationError(f"search takes {{'data': {{...}}}}; unknown keys {sorted(unknown)}")
        check_json(data, "search.data")
        conn = await self._connection(namespace)
        conn.check_payload(call_args, "args")
        conn.check_payload(data, "search.data")
        engine = runtime.engine(conn)
        extra: dict[str, JSONValue] = {"search_index": name, **{RECORD_PREFIX + k: v for k, v in data.items()}}
        if keep is not None:
            extra["record_ttl"] = keep
        if data and await conn.store.get_job(rec.job_id(record_id), ["status"]) is None:
            await conn.search.upsert(name, record_id, data)  # indexed before the workflow can run
        await engine.create(new_workflow_job(record_id, workflow_name=name, task_queue=name, args=call_args, extra=extra))
        if not await_:
            return record_id
        return await Client(conn).workflow.get_handle(name, name, record_id).result(timeout=timeout)

    async def get(
        self, entity: str, id: str, *, fields: Sequence[str] | None = None, namespace: str | None = None
    ) -> dict[str, Any]:
        """The record's fields (all, or those named); WorkflowNotFoundError when it does not exist."""
        names = _field_names(fields, "fields") if fields is not None else None
        return await self._record(entity, id, namespace, {"op": "get", "fields": names})  # type: ignore[return-value]

    async def set(self, entity: str, id: str, data: Mapping[str, Any], *, namespace: str | None = None) -> None:
        """Set record fields from outside the workflow (store first, then the index)."""
        if not isinstance(data, Mapping):
            raise ValidationError(f"set takes a mapping of field names to JSON values as data, got {type(data).__name__}")
        fields = dict(data)
        check_json(fields, "data")
        await self._record(entity, id, namespace, {"op": "set", "fields": fields})

    async def incr(self, entity: str, id: str, field: str, amount: float = 1, *, namespace: str | None = None) -> float:
        """Add ``amount`` to a numeric record field atomically; returns the new value."""
        value = await self._record(entity, id, namespace, {"op": "incr", "field": field, "amount": amount})
        return float(value) if isinstance(value, (int, float)) else 0.0

    async def delete_fields(self, entity: str, id: str, fields: Sequence[str], *, namespace: str | None = None) -> None:
        """Remove record fields (from the store and the index)."""
        names = _field_names(fields, "fields")
        await self._record(entity, id, namespace, {"op": "delete", "fields": names})

    async def _record(self, entity: str, id: str, namespace: str | None, cmd: dict[str, JSONValue]) -> JSONValue:
        name = _check_entity(entity)
        record_id = rec.check_workflow_id(id)
        conn = await self._connection(namespace)
        step = f"ext:{uuid.uuid4().hex}"
        return await record_operation(runtime.engine(conn), record_id, step, {**cmd, "index": name})

    async def find_where(
        self,
        entity: str,
        *,
        query: Sequence[Mapping[str, Any]] = (),
        limit: Mapping[str, int] | None = None,
        return_: Sequence[str] | None = None,
        sort: Mapping[str, str] | None = None,
        native: str | None = None,
        namespace: str | None = None,
    ) -> FindResult:
        """Find records: ``query=[{"field": "active", "is": "=", "value": "yes"}, ...]`` (all must hold).

        ``is`` is one of ``= != < <= > >= [] in match``; on a TEXT field ``=`` matches words.
        ``limit={"start": 0, "size": 100}``; ``return_`` names the fields of each hit (each hit
        also has ``$id``); ``sort={"field": ..., "order": "ASC"|"DESC"}`` on a sortable field.
        ``native`` passes a backend query string through (FT.SEARCH syntax on Redis) where the
        search provider declares native queries.
        """
        name = _check_entity(entity)
        page = dict(limit or {})
        offset, size = int(page.get("start", 0)), int(page.get("size", 10))
        if offset < 0 or size < 0:
            raise ValidationError(f"limit start and size must not be negative, got {page}")
        conn = await self._connection(namespace)
        if native is not None:
            result = await conn.search.native_query(name, native, offset=offset, limit=size)
        else:
            result = await conn.search.query(
                Query(
                    index=name,
                    where=self._where(name, query),
                    sort_by=(sort or {}).get("field"),
                    descending=str((sort or {}).get("order", "ASC")).upper() == "DESC",
                    offset=offset,
                    limit=size,
                    fields=tuple(return_ or ()),
                )
            )
        data = [{"$id": hit.doc_id, **{k: v for k, v in hit.fields.items() if not return_ or k in return_}} for hit in result.hits]
        return FindResult(count=result.total, data=data)

    def _where(self, entity: str, query: Sequence[Mapping[str, Any]]) -> And | None:
        types = {f.name: f.type for f in self._spec(entity).fields} if self.schema is not None else {}
        conditions = []
        for index, clause in enumerate(query):
            if not isinstance(clause, Mapping) or set(clause) - {"field", "is", "value"} or "field" not in clause:
                raise ValidationError(f"query[{index}] must be {{'field': ..., 'is': ..., 'value': ...}}, got {clause!r}")
            symbol = str(clause.get("is", "="))
            op = _OPS.get(symbol)
            if op is None:
                raise ValidationError(f"query[{index}]: unknown operator {symbol!r}; use one of {sorted(_OPS)}")
            field = str(clause["field"])
            value = clause.get("value")
            if op is Op.EQ and types.get(field) is FieldType.TEXT:
                op = Op.MATCH
            if op in (Op.BETWEEN, Op.IN):
                if not isinstance(value, (list, tuple)):
                    raise ValidationError(f"query[{index}]: {symbol!r} takes a list of values, got {value!r}")
                value = tuple(value)
            conditions.append(Condition(field, op, value))
        return And(tuple(conditions)) if conditions else None
