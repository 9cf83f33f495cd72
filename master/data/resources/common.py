"""Helpers shared by the core resource types."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from master.data.base import InlineLoader, Loader
from master.data.types import INT64_MAX
from master.db.interfaces import Prepared

if TYPE_CHECKING:
    from master.data.connector import DataAPI
    from master.data.resultspec import ResultSpec


def now() -> int:
    """The time now, in integer seconds since the epoch (the API's time unit)."""
    return int(time.time())


def dumps(value: Any) -> str:
    """JSON text of a value, as stored in JSON columns."""
    return orjson.dumps(value).decode()


def boolean_filter(when_true: Callable[[], ColumnElement[Any]]) -> Callable[[str, tuple[Any, ...]], ColumnElement[Any]]:
    """The ``filter_sql`` of a computed boolean field: ``field=true/false`` as *when_true()* or its negation.

    Used where the plain comparison ``expression = true`` would not use an index (``complete_at IS
    NOT NULL``) or is not a column at all (an EXISTS).
    """

    def make(op: str, values: tuple[Any, ...]) -> ColumnElement[Any]:
        wanted = set(values) if op in ("eq", "in") else {True, False} - set(values)
        if wanted == {True}:
            return when_true()
        if wanted == {False}:
            return sa.not_(when_true())
        return sa.true() if wanted else sa.false()

    return make


def list_loader(
    key: str, table_key: ColumnElement[Any], value: ColumnElement[Any], order: ColumnElement[Any] | None = None
) -> Loader:
    """A loader giving each id the list of *value* in rows where *table_key* is that id."""
    return _ListLoader(key, table_key, value, order)


class _ListLoader(InlineLoader):
    """:func:`list_loader`'s loader: a query per page of ids, or a column of the page's own query."""

    def __init__(
        self, key: str, table_key: ColumnElement[Any], value: ColumnElement[Any], order: ColumnElement[Any] | None
    ) -> None:
        self.table_key = table_key
        self.value = value
        self.order = order if order is not None else value
        self.prepared = Prepared(("list-loader", key), self.build)

    def build(self) -> sa.Select[Any]:
        """The query of every page: (owner, value) rows of the ids bound as ``ids``."""
        query = sa.select(self.table_key.label("owner"), self.value.label("value")).where(
            self.table_key.in_(sa.bindparam("ids", expanding=True))
        )
        return query.order_by(self.order)

    async def __call__(self, data: DataAPI, ids: list[Any], spec: ResultSpec) -> Mapping[Any, Any]:
        """Load the lists of a page of ids."""
        found: dict[Any, list[Any]] = defaultdict(list)
        for row in await data.storage.fetch_all(self.prepared, {"ids": ids}):
            found[row["owner"]].append(row["value"])
        return {entity_id: found.get(entity_id, []) for entity_id in ids}

    def inline(self, owner: ColumnElement[Any]) -> ColumnElement[Any]:
        """The same lists as a column of the page's own query: an array per row (see master.data.query)."""
        listed = sa.select(self.value.label("value"), self.order.label("sort_key"))
        # the LIMIT keeps SQLite from dropping the ORDER BY of a subquery that only feeds an aggregate
        listed = listed.where(self.table_key == owner).correlate(owner.table)
        subquery = listed.order_by(listed.selected_columns.sort_key).limit(INT64_MAX).subquery("listed")
        as_json = sa.select(JsonList(subquery.c.value, subquery.c.sort_key)).select_from(subquery).scalar_subquery()
        ordered = sa.select(self.value).where(self.table_key == owner).correlate(owner.table).order_by(self.order)
        return ListColumn(as_json, ordered)


class JsonList(FunctionElement[Any]):
    """``JsonList(value, sort_key)``: the aggregate JSON array of *value* in *sort_key* order.

    SQLite's ``json_group_array`` (``[]`` over no rows) takes the rows in the order of the
    sorted subquery they come from (SQLite has no ORDER BY in aggregates before 3.44).
    """

    name = "json_list"
    inherit_cache = True


@compiles(JsonList)
def _json_list(element: JsonList, compiler: Any, **kw: Any) -> str:
    value, _ = element.clauses
    return f"json_group_array({compiler.process(value, **kw)})"


class ListColumn(ColumnElement[Any]):
    """The inlined list of a list loader, as each backend reads it cheapest.

    PostgreSQL: ``ARRAY(SELECT value ... ORDER BY sort_key)``, which psycopg2 hands over as a
    list (``{}``, not null, over no rows); about half the server time of ``json_agg`` over a
    sorted subquery, and no JSON to decode.  Elsewhere (SQLite): *as_json*, a JSON text.
    Built only into statements compiled once per shape (``Prepared``), so it needs no cache key.
    """

    inherit_cache = False

    def __init__(self, as_json: ColumnElement[Any], ordered: sa.Select[Any]) -> None:
        self.as_json = as_json
        self.ordered = ordered
        self.type = as_json.type


@compiles(ListColumn, "postgresql")
def _list_column_postgresql(element: ListColumn, compiler: Any, **kw: Any) -> str:
    return f"ARRAY({compiler.process(element.ordered, **kw)})"


@compiles(ListColumn)
def _list_column(element: ListColumn, compiler: Any, **kw: Any) -> str:
    result: str = compiler.process(element.as_json, **kw)
    return result


def properties_loader(key: str, table: sa.FromClause, owner: str, option: str | None = "property") -> Loader:
    """A loader of ``{name: [value, source]}`` property dicts.

    With *option* set, properties are loaded only when the query asks for them with
    ``property=name`` (repeatable; ``*`` for all), as in Buildbot; otherwise ``{}``.
    """

    def build(filtered: bool) -> Callable[[], sa.Select[Any]]:
        def make() -> sa.Select[Any]:
            query = sa.select(table.c[owner].label("owner"), table.c.name, table.c.value, table.c.source)
            query = query.where(table.c[owner].in_(sa.bindparam("ids", expanding=True)))
            if filtered:
                query = query.where(table.c.name.in_(sa.bindparam("names", expanding=True)))
            return query

        return make

    every = Prepared(("props", key, False), build(False))
    named = Prepared(("props", key, True), build(True))

    async def load(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
        found: dict[Any, dict[str, Any]] = {entity_id: {} for entity_id in ids}
        if option is None:
            statement, params = every, {"ids": ids}
        else:
            names = [n for value in spec.options.get(option, []) for n in value.split(",") if n]
            if not names:
                return found
            if "*" in names:
                statement, params = every, {"ids": ids}
            else:
                statement, params = named, {"ids": ids, "names": names}
        for row in await data.storage.fetch_all(statement, params):
            found[row["owner"]][row["name"]] = [orjson.loads(row["value"]), row["source"]]
        return found

    return load
