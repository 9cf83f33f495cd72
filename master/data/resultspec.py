"""Result specs: what a client asked of a getter (fields, filters, order, page).

A :class:`ResultSpec` is parsed from query arguments against the resource type's declared
fields, and every error names the parameter at fault.  The spec is then pushed down into
SQL by :mod:`master.data.query`; nothing is ever filtered or sorted in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from master.data.errors import InvalidQuery
from master.data.types import INT64_MAX, check_text

if TYPE_CHECKING:
    from master.data.base import ResourceType

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "contains", "in", "notin")
"""Filter operators, written ``field__op=value``; a bare ``field=value`` means ``eq``."""

_SINGLE_VALUE_OPS = {"lt", "le", "gt", "ge"}
RESERVED = {"field", "order", "limit", "offset"}


@dataclass(frozen=True)
class Limits:
    """Page size bounds: the limit used when none is asked for, and the largest allowed."""

    default: int = 100
    maximum: int = 1000


@dataclass(frozen=True)
class Filter:
    """One filter: ``field op values`` (several values mean "any of" for eq/contains/in)."""

    field: str
    op: str
    values: tuple[Any, ...]


@dataclass
class ResultSpec:
    """A parsed query: selected fields, filters, ordering and page, plus endpoint-specific options."""

    fields: tuple[str, ...] | None = None
    filters: list[Filter] = field(default_factory=list)
    order: tuple[str, ...] = ()
    limit: int | None = None
    offset: int = 0
    options: dict[str, list[str]] = field(default_factory=dict)

    @property
    def filter_fields(self) -> set[str]:
        """Names of the filtered fields."""
        return {f.field for f in self.filters}


def one_int(name: str, values: Sequence[str], low: int, high: int | None) -> int:
    """The integer value of query parameter *name*, given once, within [low, high]; else InvalidQuery."""
    if len(values) != 1:
        raise InvalidQuery(f"'{name}' may be given only once", name)
    try:
        number = int(values[0])
    except ValueError:
        raise InvalidQuery(f"invalid {name} {values[0]!r}: expected an integer", name) from None
    high = INT64_MAX if high is None else high  # what the databases can hold
    if not low <= number <= high:
        raise InvalidQuery(f"invalid {name} {number}: must be between {low} and {high}", name)
    return number


def parse_result_spec(
    rtype: ResourceType,
    args: Mapping[str, Sequence[str]],
    *,
    collection: bool,
    limits: Limits,
    options: Sequence[str] = (),
) -> ResultSpec:
    """Parse query arguments for a getter of *rtype*.

    *options* names extra parameters the endpoint handles itself (such as ``property``);
    they are passed through in ``spec.options`` unparsed.
    """
    spec = ResultSpec(limit=limits.default if collection else None)
    fields = rtype.fields
    for name, values in args.items():
        if name in options:
            spec.options[name] = list(values)
        elif name == "field":
            selected: list[str] = []
            for value in values:
                for part in value.split(","):
                    if not part:
                        continue  # an empty field= (as generated clients send) selects nothing more
                    if part not in fields:
                        raise InvalidQuery(f"no such field {part!r} in field=", "field")
                    if part not in selected:
                        selected.append(part)
            spec.fields = tuple(selected) or None  # no field named: all of them
        elif not collection:
            raise InvalidQuery(f"{name!r} applies only to collections, and this path is a single {rtype.name}", name)
        elif name == "order":
            order: list[str] = []
            for value in values:
                for part in value.split(","):
                    if not part:
                        continue  # as for field=: an empty order= adds no key
                    bare = part[1:] if part.startswith("-") else part
                    if bare not in fields:
                        raise InvalidQuery(f"no such field {bare!r} in order=", "order")
                    if not fields[bare].orderable:
                        raise InvalidQuery(f"cannot order on field {bare!r}", "order")
                    order.append(part)
            spec.order = tuple(order)
        elif name == "limit":
            spec.limit = one_int("limit", values, 0, limits.maximum)
        elif name == "offset":
            spec.offset = one_int("offset", values, 0, None)
        else:
            spec.filters.append(_parse_filter(rtype, name, values))
    return spec


def _parse_filter(rtype: ResourceType, name: str, values: Sequence[str]) -> Filter:
    field_name, sep, op = name.partition("__")
    if not sep:
        op = "eq"
    declared = rtype.field_for(field_name)
    if declared is None:
        raise InvalidQuery(f"unrecognized query parameter {name!r}", name)
    if op not in OPERATORS:
        raise InvalidQuery(f"unknown operator {op!r} in {name!r}; operators are {', '.join(OPERATORS)}", name)
    if declared.operators is not None and op not in declared.operators:
        raise InvalidQuery(f"operator {op!r} does not apply to {field_name!r} (only {', '.join(declared.operators)})",
                           name)
    if not declared.filterable:
        raise InvalidQuery(f"cannot filter on field {field_name!r}", name)
    raw: list[str] = []
    for value in values:
        raw.extend(value.split(",") if op in ("in", "notin") else [value])
    if op in _SINGLE_VALUE_OPS and len(raw) != 1:
        raise InvalidQuery(f"operator {op!r} takes one value, {name!r} has {len(raw)}", name)
    if op == "contains":
        try:
            parsed = tuple(check_text(v) for v in raw)
        except ValueError as e:
            raise InvalidQuery(f"invalid filter value for {name!r}: {e}", name) from None
        if not declared.containable:
            raise InvalidQuery(f"{name!r}: operator 'contains' needs a text field, {field_name!r} is not one", name)
    else:
        try:
            parsed = tuple(declared.type.from_string(v) for v in raw)
        except ValueError as e:
            raise InvalidQuery(f"invalid filter value for {name!r}: {e}", name) from None
    return Filter(field_name, op, parsed)
