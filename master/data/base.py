"""Building blocks of resource types: fields, endpoints, actions and update methods."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, FromClause
from zope.interface import implementer

from master.data.interfaces import IAction, IEndpoint, IResourceType
from master.data.types import FieldType, List, NoneOk, String

if TYPE_CHECKING:
    from master.data.connector import DataAPI
    from master.data.resultspec import ResultSpec


class Kind(enum.Enum):
    """What a getter returns."""

    SINGLE = "single"
    COLLECTION = "collection"
    RAW = "raw"


@dataclass
class Field:
    """One field of an entity.

    *column* is the SQL expression the field is read, filtered and ordered by; a field
    without one is filled by a loader of its resource type and can be neither filtered nor
    ordered.  *filter_sql* replaces the default SQL of a filter, for fields whose best
    query is not ``column op value`` (tags, computed flags).
    """

    type: FieldType
    column: ColumnElement[Any] | None = None
    doc: str = ""
    filter_sql: Callable[[str, tuple[Any, ...]], ColumnElement[bool]] | None = None
    operators: tuple[str, ...] | None = None
    """The filter operators allowed, when not all of them are."""

    @property
    def filterable(self) -> bool:
        """Whether ``field=value`` filters are allowed."""
        return self.filter_sql is not None or (self.column is not None and self.type.sql_comparable)

    @property
    def orderable(self) -> bool:
        """Whether ``order=field`` is allowed."""
        return self.column is not None and self.type.sql_comparable

    @property
    def containable(self) -> bool:
        """Whether the ``contains`` operator applies."""
        inner = self.type.of if isinstance(self.type, NoneOk) else self.type
        return isinstance(inner, String) or (isinstance(inner, List) and self.filter_sql is not None)

    @property
    def nullable(self) -> bool:
        """Whether the value may be null (nulls sort before every value)."""
        return isinstance(self.type, NoneOk)


@dataclass
class Collection:
    """A page of a collection and the number of entities matching, whatever the page.

    *total_is_lower_bound*: more entities match than were counted (a filtered query counts at
    most ``master.data.query.COUNT_CAP``); *total* is then the cap, or the end of this page.
    """

    items: list[dict[str, Any]]
    total: int
    total_is_lower_bound: bool = False
    last_id: Any = None
    """The id of the page's last entity (also when not selected), for keyset links."""


@dataclass
class RawContent:
    """Raw content for download: a media type, an optional file name and the body in chunks.

    Content of a known *length* that can be read from any offset gives *read_range(start, end)*
    (bytes start..end-1), so that the REST layer can answer byte-range requests; *etag*, when
    set, identifies the content (e.g. its sha256).
    """

    content_type: str
    chunks: AsyncIterator[bytes]
    filename: str | None = None
    length: int | None = None
    read_range: Callable[[int, int], AsyncIterator[bytes]] | None = None
    etag: str | None = None


@dataclass
class Param:
    """A parameter of an action.

    *anonymous_required*: the handler defaults it to the logged-in user, so only callers who
    are not logged in must give it; the API description lists it as required.
    """

    type: FieldType
    required: bool = False
    default: Any = None
    doc: str = ""
    anonymous_required: bool = False


@dataclass
class ActionCall:
    """Everything an action handler gets: the API, path arguments, checked parameters, the entity."""

    data: DataAPI
    args: dict[str, Any]
    params: dict[str, Any]
    entity: dict[str, Any] | None = None
    user: Any = None

    @property
    def target(self) -> dict[str, Any]:
        """The entity acted on, for an action at a single-entity path (RuntimeError at a collection)."""
        if self.entity is None:
            raise RuntimeError("this action is at a collection path: it has no entity")
        return self.entity


@implementer(IAction)
@dataclass
class Action:
    """A control.  Unknown parameters are refused unless *open_params* (forms with free fields)."""

    name: str
    handler: Callable[[ActionCall], Awaitable[Any]]
    params: dict[str, Param] = field(default_factory=dict)
    doc: str = ""
    open_params: bool = False

    async def __call__(self, call: ActionCall) -> Any:
        """Run the handler."""
        return await self.handler(call)


@implementer(IEndpoint)
class Endpoint:
    """A getter at one path pattern.

    The default getter reads the resource type's source with the path arguments and the
    result spec pushed into SQL.  A path argument is matched against the field of the same
    name unless *arg_columns* maps it to another SQL expression, or to a function that
    makes the condition from the bound parameter (for arguments reached through a join).
    """

    def __init__(
        self,
        pattern: str,
        kind: Kind = Kind.SINGLE,
        *,
        actions: Sequence[Action] = (),
        arg_columns: Mapping[str, ColumnElement[Any] | Callable[[Any], ColumnElement[bool]]] | None = None,
        options: tuple[str, ...] = (),
        doc: str = "",
    ) -> None:
        self.pattern = pattern
        self.kind = kind
        self.actions = {action.name: action for action in actions}
        self.arg_columns = dict(arg_columns or {})
        self.options = options
        self.doc = doc
        self._rtype: ResourceType | None = None

    @property
    def rtype(self) -> ResourceType:
        """The resource type this endpoint belongs to (RuntimeError before it is declared by one)."""
        if self._rtype is None:
            raise RuntimeError(f"endpoint {self.pattern} belongs to no resource type")
        return self._rtype

    @rtype.setter
    def rtype(self, rtype: ResourceType) -> None:
        self._rtype = rtype

    def conditions(self, arg_names: tuple[str, ...]) -> list[ColumnElement[bool]]:
        """SQL conditions for the path arguments, bound as ``arg_<name>`` parameters."""
        clauses: list[ColumnElement[bool]] = []
        for name in arg_names:
            column = self.arg_columns.get(name)
            bind: sa.BindParameter[Any] = sa.bindparam(f"arg_{name}")
            if column is None:
                field_column = self.rtype.fields[name].column
                if field_column is None:
                    raise ValueError(f"{self.pattern}: path argument {name!r} has no column (map it in arg_columns)")
                clauses.append(field_column == bind)
            elif callable(column) and not isinstance(column, ColumnElement):
                clauses.append(column(bind))
            else:
                clauses.append(column == bind)
        return clauses

    async def get(self, data: DataAPI, spec: ResultSpec, args: dict[str, Any]) -> Any:
        """Read from SQL: an entity or None (SINGLE), or a Collection."""
        from master.data.query import read

        return await read(data, self, spec, args)

    def __repr__(self) -> str:
        return f"<Endpoint {self.pattern}>"


Loader = Callable[["DataAPI", list[Any], "ResultSpec"], Awaitable[Mapping[Any, Any]]]
"""Fills one field for a page of entities: gets their ids, returns {id: value}."""

Declaration = tuple[FromClause, Mapping[str, "Field"], Sequence["Endpoint"], Mapping[str, Loader]]
"""What :meth:`ResourceType.declare` returns: ``(source, fields, endpoints, loaders)``."""


UPDATE_MARK = "is_update_method"
"""The attribute :func:`update_method` sets on the functions it marks."""

UpdateFn = TypeVar("UpdateFn", bound=Callable[..., Awaitable[Any]])


def update_method(fn: UpdateFn) -> UpdateFn:
    """Mark a resource type method as an update method, published as ``data.updates.<name>``."""
    setattr(fn, UPDATE_MARK, True)  # a function attribute has no static type: read with getattr
    return fn


def is_update_method(obj: object) -> bool:
    """Whether *obj* (a resource type's class attribute) was marked by :func:`update_method`."""
    return getattr(obj, UPDATE_MARK, False) is True


class InlineLoader:
    """A loader that can also be a column of the page's own query (a correlated subquery).

    ``master.data.query`` inlines such a loader's field instead of calling it after the page
    is read, saving a round trip.
    """

    async def __call__(self, data: DataAPI, ids: list[Any], spec: ResultSpec) -> Mapping[Any, Any]:
        """Load the field for a page of entity ids: ``{id: value}``."""
        raise NotImplementedError

    def inline(self, owner: ColumnElement[Any]) -> ColumnElement[Any]:
        """The field as a scalar subquery correlated with *owner*, the page's id column."""
        raise NotImplementedError


@implementer(IResourceType)
class ResourceType:
    """Base class of resource types.

    Subclasses set ``name``, ``plural``, ``id_field`` and ``event_paths``, and implement
    :meth:`declare` to return the SQL source, the fields, the endpoints and the loaders.
    """

    name: str = ""
    plural: str = ""
    id_field: str = ""
    event_paths: tuple[str, ...] = ()
    doc: str = ""
    counted_table: str | None = None
    """The table of ``source`` whose maintained row counters (master.db.counters) give exact totals."""

    def __init__(self) -> None:
        source, fields, endpoints, loaders = self.declare()
        self.source: FromClause = source
        self.fields: dict[str, Field] = dict(fields)
        self.endpoints: list[Endpoint] = list(endpoints)
        self.loaders: dict[str, Loader] = dict(loaders)
        for endpoint in self.endpoints:
            endpoint.rtype = self
        self._data: DataAPI | None = None
        self._event_templates = [tuple(path.strip("/").split("/")) for path in self.event_paths]

    def declare(self) -> Declaration:
        """Return ``(source, fields, endpoints, loaders)``."""
        raise NotImplementedError

    def attach(self, data: DataAPI) -> None:
        """Remember the DataAPI this type is registered with."""
        self._data = data

    @property
    def data(self) -> DataAPI:
        """The DataAPI this type is registered with (RuntimeError before it is)."""
        if self._data is None:
            raise RuntimeError(f"resource type {self.plural!r} is not registered with a DataAPI")
        return self._data

    def endpoint_at(self, pattern: str) -> Endpoint:
        """The endpoint declared at *pattern* (KeyError when there is none)."""
        by_pattern = self.__dict__.get("_by_pattern")
        if by_pattern is None:
            by_pattern = self._by_pattern = {endpoint.pattern: endpoint for endpoint in self.endpoints}
        return by_pattern[pattern]

    def field_for(self, name: str) -> Field | None:
        """The field a query parameter *name* filters on: a declared one, or one a subclass makes up
        (such as ``property.NAME`` on builds); None when there is none.
        """
        return self.fields.get(name)

    def event_keys(self, entity: Mapping[str, Any], event: str) -> list[tuple[str, ...]]:
        """Every routing key an event of *entity* is published under, one per event path."""
        keys = []
        for template in self._event_templates:
            key = []
            for part in template:
                if part.startswith(":"):
                    value = entity.get(part[1:])
                    if value is None:
                        break  # e.g. a build with no worker is not under workers/...
                    key.append(str(value))
                else:
                    key.append(part)
            else:
                keys.append((*key, event))
        return keys

    async def produce_event(self, entity: Mapping[str, Any] | None, event: str) -> None:
        """Publish *event* ('new', 'update', 'finished', ...) of *entity* under all its paths.

        *entity* None (read back after a write, but deleted meanwhile) publishes nothing.
        """
        if entity is None:
            return
        await self.data.events.produce(self, entity, event, self.event_keys(entity, event))

    async def get_entity(self, entity_id: Any) -> dict[str, Any] | None:
        """Read one entity by its id, with all fields, through the data API."""
        entity: dict[str, Any] | None = await self.data.get((self.plural, str(entity_id)))
        return entity
