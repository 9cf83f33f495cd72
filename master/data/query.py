"""The read path's SQL: a result spec pushed down into one query (and a COUNT when needed).

Queries are described by a shape key (endpoint, fields, filter operators, order) and
built and compiled once per shape; each request only binds values.  Ordering always ends
with the entity id in the direction of the last key, so pages are stable; nulls sort
first ascending and last descending, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from master.data.base import Collection, Endpoint, Field, InlineLoader, Kind, Loader, ResourceType
from master.data.errors import InvalidQuery
from master.data.resultspec import Filter, ResultSpec
from master.data.types import check_int64, check_text
from master.db import schema
from master.db.counters import counter_name
from master.db.interfaces import Prepared, page_total

if TYPE_CHECKING:
    from master.data.connector import DataAPI


def _escape_like(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _check_values(flt: Filter) -> None:
    """InvalidQuery for a value neither backend can bind: filters parsed from a query are checked
    already, but plugins build some of theirs from their own APIs' parameters.
    """
    for value in flt.values:
        try:
            if isinstance(value, str):
                check_text(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                check_int64(value)
        except ValueError as e:
            raise InvalidQuery(f"invalid filter value for {flt.field!r}: {e}", flt.field) from None


def _bind_filter(field: Field, flt: Filter, index: int, params: dict[str, Any]) -> tuple[Any, ...]:
    """Put one filter's values in *params*; return the part of the shape key it adds.

    This runs on every request, so it only binds values: the SQL clause is made by
    :func:`_filter_clause`, once per shape, when the statement is compiled.
    """
    _check_values(flt)
    if field.filter_sql is not None:
        # custom filters may vary their SQL with the values, so the values join the key
        return (flt.field, flt.op, flt.values)
    name = f"f{index}"
    if flt.op == "contains":
        for n, value in enumerate(flt.values):
            params[f"{name}_{n}"] = f"%{_escape_like(value)}%"
        return (flt.field, flt.op, len(flt.values))
    if len(flt.values) > 1 or flt.op in ("in", "notin"):
        params[name] = list(flt.values)
        return (flt.field, "in" if flt.op in ("eq", "in") else "notin")
    params[name] = flt.values[0]
    return (flt.field, flt.op)


def _column(field: Field) -> ColumnElement[Any]:
    """The column of a field the caller knows has one (the parsed spec filters or orders by it)."""
    assert field.column is not None, field
    return field.column


def _filter_field(rtype: ResourceType, flt: Filter) -> Field:
    """The field a parsed filter is on (parse_result_spec admits only fields the type has)."""
    field = rtype.field_for(flt.field)
    assert field is not None, flt
    return field


def _inline_loader(loader: Loader) -> InlineLoader:
    """A loader :func:`_inlined` chose, which is an InlineLoader."""
    assert isinstance(loader, InlineLoader), loader
    return loader


def _filter_clause(field: Field, flt: Filter, index: int, key: tuple[Any, ...]) -> ColumnElement[bool]:
    """The SQL clause of one filter, with the bind parameters :func:`_bind_filter` fills."""
    if field.filter_sql is not None:
        return field.filter_sql(flt.op, flt.values)
    column = _column(field)
    name = f"f{index}"
    op = key[1]
    if op == "contains":
        likes = [column.like(sa.bindparam(f"{name}_{n}"), escape="/") for n in range(key[2])]
        return sa.or_(*likes)
    if op == "in":
        return column.in_(sa.bindparam(name, expanding=True))
    if op == "notin":
        clause = column.not_in(sa.bindparam(name, expanding=True))
        return sa.or_(clause, column.is_(None)) if field.nullable else clause
    bind: sa.BindParameter[Any] = sa.bindparam(name)
    if op == "eq":
        return column == bind
    if op == "ne":
        return column.is_distinct_from(bind) if field.nullable else column != bind
    if op == "lt":
        return column < bind
    if op == "le":
        return column <= bind
    if op == "gt":
        return column > bind
    return column >= bind


def _order_by(endpoint: Endpoint, spec: ResultSpec) -> list[ColumnElement[Any]]:
    fields = endpoint.rtype.fields
    id_field = endpoint.rtype.id_field
    terms: list[ColumnElement[Any]] = []
    descending = False
    for key in spec.order:
        descending = key.startswith("-")
        field = fields[key.lstrip("-")]
        term = _column(field).desc() if descending else _column(field).asc()
        if field.nullable:
            term = term.nulls_last() if descending else term.nulls_first()
        terms.append(term)
    if id_field not in {key.lstrip("-") for key in spec.order}:
        column = _column(fields[id_field])
        terms.append(column.desc() if descending else column.asc())
    return terms


COUNT_CAP = 10_000
"""Filtered collections count at most this many rows; beyond it ``meta.total`` is a lower bound."""

_COUNTER = Prepared(("row-counter",), lambda: sa.select(sa.func.coalesce(
    sa.select(schema.row_counts.c.n).where(schema.row_counts.c.name == sa.bindparam("counter_name"))
    .scalar_subquery(), 0).label("total")))


def _counter(endpoint: Endpoint, spec: ResultSpec, args: dict[str, Any]) -> str | None:
    """The maintained counter that is this collection's exact total, or None (see master.db.counters).

    It applies to a resource type that names its ``counted_table``, when the path arguments and
    the filters (one value each, ``eq``) are exactly the dimensions of one of its counters.
    """
    table = getattr(endpoint.rtype, "counted_table", None)
    if table is None:
        return None
    values: dict[str, Any] = {}
    for name, value in args.items():
        if name in endpoint.arg_columns or name not in endpoint.rtype.fields:
            return None  # reached through a join or a name: not a column of the table
        values[name] = value
    for flt in spec.filters:
        if flt.op != "eq" or len(flt.values) != 1 or flt.field in values:
            return None
        values[flt.field] = flt.values[0]
    return counter_name(table, values)


@dataclass(frozen=True)
class _Plan:
    """What reading and encoding *selected* fields of a resource type takes, worked out once per pair."""

    columns: tuple[str, ...]
    """The columns the page query reads: the selected ones with a column, and the id."""
    inlined: tuple[str, ...]
    """Selected list fields the page query reads as JSON arrays (see :func:`_inlined`)."""
    encoded: tuple[str, ...]
    """The fields of an entity taken from its row: with a column, or inlined."""
    converters: tuple[tuple[str, Callable[[Any], Any]], ...]
    """``(field, from_db)`` of the encoded columns whose type converts database values."""
    loaded: tuple[str, ...]
    """Selected fields filled by their loaders, a query per page."""


@lru_cache(maxsize=1024)
def _plan(rtype: ResourceType, selected: tuple[str, ...]) -> _Plan:
    fields = rtype.fields
    columns = [name for name in selected if fields[name].column is not None]
    if rtype.id_field not in columns:
        columns.append(rtype.id_field)
    inlined = _inlined(rtype, selected)
    encoded = tuple(name for name in selected if fields[name].column is not None or name in inlined)
    converters = tuple((name, fields[name].type.from_db) for name in encoded
                       if fields[name].column is not None and fields[name].type.converts)
    loaded = tuple(name for name in selected if fields[name].column is None and name not in inlined)
    return _Plan(tuple(columns), inlined, encoded, converters, loaded)


def build_read(
    endpoint: Endpoint, spec: ResultSpec, args: dict[str, Any]
) -> tuple[Prepared, Prepared | None, dict[str, Any], tuple[str, ...]]:
    """Return ``(page query, count query or None, params, selected fields)`` for a getter."""
    rtype = endpoint.rtype
    fields = rtype.fields
    selected = spec.fields or tuple(fields)
    plan = _plan(rtype, selected)
    columns, inlined = plan.columns, plan.inlined
    params: dict[str, Any] = {f"arg_{name}": value for name, value in args.items()}
    arg_names = tuple(args)
    filtered = [_filter_field(rtype, flt) for flt in spec.filters]
    filter_key = [_bind_filter(filtered[index], flt, index, params) for index, flt in enumerate(spec.filters)]
    collection = endpoint.kind is Kind.COLLECTION
    shape = (endpoint.pattern, columns, inlined, tuple(filter_key), spec.order, collection)

    def where() -> list[ColumnElement[bool]]:
        filters = [
            _filter_clause(filtered[index], flt, index, key)
            for index, (flt, key) in enumerate(zip(spec.filters, filter_key, strict=True))
        ]
        return [*endpoint.conditions(arg_names), *filters]

    def build_page() -> sa.Select[Any]:
        owner = _column(fields[rtype.id_field])
        query = sa.select(
            *(_column(fields[name]).label(name) for name in columns),
            *(_inline_loader(rtype.loaders[name]).inline(owner).label(name) for name in inlined),
        ).select_from(rtype.source)
        query = query.where(*where())
        if collection:
            query = query.order_by(*_order_by(endpoint, spec))
            query = query.limit(sa.bindparam("page_limit")).offset(sa.bindparam("page_offset"))
        else:
            query = query.limit(2)
        return query

    def build_count() -> sa.Select[Any]:
        # at most COUNT_CAP + 1 rows are counted: one more than the cap says "more than the cap"
        rows: sa.Select[Any] = sa.select(sa.literal_column("1").label("one")).select_from(rtype.source).where(*where())
        capped = rows.limit(sa.bindparam("count_cap")).subquery("capped")
        return sa.select(sa.func.count().label("total")).select_from(capped)

    if collection:
        params["page_limit"] = spec.limit
        params["page_offset"] = spec.offset
        counter = _counter(endpoint, spec, args)
        if counter is not None:
            params["counter_name"] = counter
            count = _COUNTER
        else:
            params["count_cap"] = COUNT_CAP + 1
            count = Prepared(("count", endpoint.pattern, tuple(filter_key)), build_count)
    else:
        count = None
    return Prepared(("page", *shape), build_page), count, params, selected


TOTAL = "__total__"
"""The column of a paged read that carries the collection's total (on every row; see :func:`paged`)."""


def paged(page: Prepared, count: Prepared) -> Prepared:
    """One statement reading the page and, only when the page is full, the count: one round trip.

    ``count(*) OVER ()`` around the limited page counts the page's own rows, and the count
    is an uncorrelated scalar subquery in a ``CASE`` branch, which both databases evaluate
    once and only when the branch is taken (PostgreSQL's lazy InitPlan, SQLite's ``Once``):
    a page shorter than its limit tells its total itself, as :func:`page_total` says.  One
    statement is one snapshot on both backends, so page and total always agree.  An empty
    page returns no row; the caller counts apart when that page cannot tell the total.
    """

    def build() -> sa.Select[Any]:
        page_query, count_query = page.build(), count.build()
        assert isinstance(page_query, sa.Select) and isinstance(count_query, sa.Select), (page.key, count.key)
        inner = page_query.subquery("page")
        full = sa.func.count().over() == sa.bindparam("page_limit")
        total = sa.case((full, count_query.scalar_subquery()), else_=sa.null())
        return sa.select(*inner.c, total.label(TOTAL))

    return Prepared(("paged", page.key, count.key), build)


async def read(data: DataAPI, endpoint: Endpoint, spec: ResultSpec, args: dict[str, Any]) -> Any:
    """Run a getter's query and encode the rows; SINGLE gives an entity or None."""
    page, count, params, selected = build_read(endpoint, spec, args)
    if count is None:
        rows = await data.storage.fetch_all(page, params)
        if not rows:
            return None
        items = await encode(data, endpoint, spec, rows, selected)
        return items[0]
    assert spec.limit is not None, "a collection's spec has a limit (Limits.default)"
    if getattr(data.storage, "round_trips_cost", False):
        rows, total = await _read_paged(data, page, count, params, spec)
    else:  # SQLite reads in-process: its page and count in one read transaction cost less
        rows, total = await data.storage.fetch_page(page, count, params, spec.limit, spec.offset)
    last_id = rows[-1][endpoint.rtype.id_field] if rows else None
    items = await encode(data, endpoint, spec, rows, selected)
    if "count_cap" in params and total > COUNT_CAP and page_total(len(rows), spec.limit, spec.offset) is None:
        # the count stopped at the cap; a page past the cap shows there are at least that many
        return Collection(items, max(COUNT_CAP, spec.offset + len(rows)), True, last_id)
    return Collection(items, total, last_id=last_id)


def _inlined(rtype: Any, selected: tuple[str, ...]) -> tuple[str, ...]:
    """The selected loader fields read by the page query itself, as JSON arrays (list loaders)."""
    fields = rtype.fields
    if all(fields[name].column is not None for name in selected):
        return ()
    owner = fields[rtype.id_field].column
    if getattr(owner, "table", None) is None:  # no table to correlate the lists with
        return ()
    return tuple(
        name for name in selected
        if fields[name].column is None and isinstance(rtype.loaders.get(name), InlineLoader)
    )


def _json_list(value: Any) -> list[Any]:
    """A list read by an inlined list loader: JSON text (SQLite), a list already (PostgreSQL's ARRAY), null for none."""
    if value is None:
        return []
    decoded: list[Any] = orjson.loads(value) if isinstance(value, str | bytes) else value
    return decoded


def _json_lists(values: list[Any]) -> list[list[Any]]:
    """The lists of one inlined column over a page: SQLite's JSON texts are decoded in one go (one
    ``orjson.loads`` of the joined array, not one per row), other values one by one.
    """
    try:
        decoded: list[list[Any]] = orjson.loads("[" + ",".join(values) + "]")
    except TypeError:  # a null, or PostgreSQL's lists: no JSON text to join
        return [_json_list(value) for value in values]
    return decoded


async def _read_paged(
    data: DataAPI, page: Prepared, count: Prepared, params: dict[str, Any], spec: ResultSpec
) -> tuple[list[dict[str, Any]], int]:
    """The page and its total through :func:`paged`: one statement, so one round trip."""
    rows = await data.storage.fetch_all(paged(page, count), params)
    total = None
    for row in rows:
        total = row.pop(TOTAL)
    if total is None:
        assert spec.limit is not None  # read() checked it
        total = page_total(len(rows), spec.limit, spec.offset)
        if total is None:  # an empty page past the end, or limit=0: only a count can tell
            total = (await data.storage.fetch_all(count, params))[0]["total"]
    return rows, total


async def encode(
    data: DataAPI, endpoint: Endpoint, spec: ResultSpec, rows: list[dict[str, Any]], selected: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Turn rows into entities: convert column values by field type, then run the loaders."""
    rtype = endpoint.rtype
    plan = _plan(rtype, selected)
    # rows are dicts keyed by field name already; only the values of converting types change
    if rtype.id_field in plan.encoded:
        items = rows
    else:  # the id was read for the loaders and the order tie-break, not asked for
        columns = plan.encoded
        items = [{name: row[name] for name in columns} for row in rows]
    converters = plan.converters
    if converters:
        for item in items:
            for name, convert in converters:
                item[name] = convert(item[name])
    for name in plan.inlined:
        for item, value in zip(items, _json_lists([item[name] for item in items]), strict=True):
            item[name] = value
    if plan.loaded and items:
        ids = [row[rtype.id_field] for row in rows]
        for name in plan.loaded:
            values = await rtype.loaders[name](data, ids, spec)
            for item, entity_id in zip(items, ids, strict=True):
                item[name] = values[entity_id]
    return items
