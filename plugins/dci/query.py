"""DCI's list parameters (``limit``, ``offset``, ``sort``, ``where``...) turned into a data API ResultSpec.

The spec is pushed into SQL by ``data.get`` like any other: filters, order and the page all run in
the database, and ``_meta.count`` is the total before paging.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from datetime import datetime

from master.sdk import Filter, NoneOk, ResourceType, ResultSpec, String
from plugins.dci.errors import DciError, malformed

ALLOWED = ("limit", "offset", "sort", "where", "embed", "query", "created_after", "updated_after")
"""The only query parameters a DCI list accepts; others are refused as the DCI server refuses them."""
DEFAULT_LIMIT = 20
MAX_LIMIT = 200
FORBIDDEN_WHERE = {"api_secret", "data", "password", "cert_fp"}
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def _one(args: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = args.get(name)
    return values[-1] if values else None


def _count(name: str, text: str, low: int) -> int:
    try:
        number = int(text)
    except ValueError:
        raise malformed(f"{name}: {text!r} is not an integer") from None
    if number < low:
        raise malformed(f"{name}: {number} is less than the minimum of {low}")
    return number


def where_keys(rtype: ResourceType) -> list[str]:
    """The fields ``where`` may name."""
    return sorted(name for name, f in rtype.fields.items() if f.filterable and name not in FORBIDDEN_WHERE)


def sort_keys(rtype: ResourceType) -> list[str]:
    """The fields ``sort`` may name."""
    return sorted(name for name, f in rtype.fields.items() if f.orderable)


def parse_where(rtype: ResourceType, text: str) -> list[Filter]:
    """``k:v,k2:v2`` as filters: case-insensitive text, ``v*`` a substring, an empty value IS NULL."""
    filters = []
    try:
        items = next(csv.reader([text]), [])
    except csv.Error as e:
        raise malformed(f"where: {e}") from None
    valid = where_keys(rtype)
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise malformed(f"where: {item!r} is not a 'key value csv'")
        if key not in valid:
            raise DciError(400, f'Invalid where key: "{key}"', {"Valid where keys": valid})
        field = rtype.fields[key]
        if value == "":
            filters.append(Filter(key, "eq", (None,)))
        elif value.endswith("*") and value.count("*") == 1 and field.containable:
            filters.append(Filter(key, "contains", (value[:-1],)))
        else:
            inner = field.type.of if isinstance(field.type, NoneOk) else field.type
            try:
                parsed = value if isinstance(inner, String) else field.type.from_string(value)
            except ValueError as e:
                raise malformed(f"where: {key}: {e}") from None
            filters.append(Filter(key, "eq", (parsed,)))
    return filters


def parse_sort(rtype: ResourceType, text: str) -> tuple[str, ...]:
    """``a,-b`` as an order; an unknown key is a 400 listing the valid ones."""
    order = []
    valid = sort_keys(rtype)
    for part in text.split(","):
        bare = part.strip().removeprefix("-")
        if not bare:
            continue
        if bare not in valid:
            raise DciError(400, f'Invalid sort key: "{bare}"', {"Valid sort keys": valid})
        order.append(("-" if part.strip().startswith("-") else "") + bare)
    return tuple(order)


def _date(name: str, text: str) -> str:
    try:
        return datetime.strptime(text, _DATE_FORMAT).strftime(_DATE_FORMAT)
    except ValueError:
        raise malformed(f"{name}: {text!r} does not match '{_DATE_FORMAT}'") from None


def list_spec(
    rtype: ResourceType,
    args: Mapping[str, Sequence[str]],
    fields: Sequence[str] | None,
    default_sort: str = "-created_at",
    extra_filters: Sequence[Filter] = (),
) -> ResultSpec:
    """The ResultSpec of a DCI list request on *rtype*, selecting *fields*.

    Archived entities are left out, as the DCI server hides them.
    """
    unknown = sorted(set(args) - set(ALLOWED))
    if unknown:
        raise malformed(f"Additional properties are not allowed ({', '.join(map(repr, unknown))} was unexpected)")
    limit, offset = _one(args, "limit"), _one(args, "offset")
    if (limit is None) != (offset is None):
        given, missing = ("limit", "offset") if offset is None else ("offset", "limit")
        raise malformed(f"'{missing}' is a dependency of '{given}'")
    if _one(args, "query") is not None and _one(args, "where") is None:
        raise DciError(400, "the 'query' language is not supported by ci-master; filter with 'where=key:value'")
    filters: list[Filter] = list(extra_filters)
    if "state" in rtype.fields:
        filters.append(Filter("state", "ne", ("archived",)))
    where = _one(args, "where")
    if where:
        filters.extend(parse_where(rtype, where))
    for name, column in (("created_after", "created_at"), ("updated_after", "updated_at")):
        value = _one(args, name)
        if value is not None and column in rtype.fields:
            filters.append(Filter(column, "gt", (_date(name, value),)))
    sort = _one(args, "sort")
    order = parse_sort(rtype, sort if sort else default_sort)
    return ResultSpec(
        fields=tuple(fields) if fields else None,
        filters=filters,
        order=order,
        limit=min(_count("limit", limit, 1), MAX_LIMIT) if limit is not None else DEFAULT_LIMIT,
        offset=_count("offset", offset, 0) if offset is not None else 0,
    )
