"""An OpenAPI 3 document generated from the registered resource types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from master.data.base import Kind
from master.data.pathmatch import parse_pattern
from master.data.resultspec import OPERATORS
from master.data.types import INT64_MAX, INT64_MIN, Identifier, Integer, String

if TYPE_CHECKING:
    from master.data.connector import DataAPI

_NO_NUL = "^[^\\u0000]*$"


def _input(schema: dict[str, Any]) -> dict[str, Any]:
    """*schema* for what clients send: text holds no NUL (refused, as PostgreSQL cannot store it)."""
    if schema.get("type") == "string" and "pattern" not in schema and "enum" not in schema:
        return {**schema, "pattern": _NO_NUL}
    if schema.get("type") == "array" and "items" in schema:
        return {**schema, "items": _input(schema["items"])}
    return schema


# ids count from 1: an example of 1 has generated clients (and tests) reach real entities
_ARG_SCHEMAS = {"n": {**Integer().openapi(), "example": 1}, "i": Identifier().openapi(),
                "s": {**_input(String().openapi()), "minLength": 1}}

_ERRORS = {
    "400": "a bad query or body (the message names the parameter)",
    "401": "a login is needed (with read rules, or for an action)",
    "403": "the user's roles do not allow it",
    "404": "no such path or resource",
}


_COLLECTION_META = {
    "type": "object",
    "properties": {
        "total": {"type": "integer", "description": (
            "the number of matching entities, whatever the page: exact for a collection unfiltered or filtered "
            "by its parent (kept by counters); for other filters at most 10,000 rows are counted")},
        "total_is_lower_bound": {"type": "boolean", "description": (
            "present (true) when more entities match than were counted: total is then 10,000, or the end of "
            "this page if further; page on until a page is short")},
    },
}
_ETAG = {"description": "a hash of the body; send it back in If-None-Match (a comma-separated list) "
         "to get 304 with no body while it is unchanged", "schema": {"type": "string"}}
_LINK = {"description": "on a full page of a collection ordered by its id (the default, order=<id> or "
         "order=-<id>): <the next page's URL, bounded by <id>__gt or <id>__lt instead of an offset>; "
         'rel="next"', "schema": {"type": "string"}}
_NOT_MODIFIED = {"description": "If-None-Match named the current ETag: no body"}


def _field_parameter(rtype: Any) -> dict[str, Any]:
    return {"name": "field", "in": "query", "style": "form", "explode": True,
            "schema": {"type": "array", "items": {"type": "string", "enum": ["", *rtype.fields]}},
            "description": "fields to return (repeatable, or comma-separated); an empty value: all of them"}


def _collection_parameters(rtype: Any, limits: Any) -> list[dict[str, Any]]:
    orderable = [name for name, field in rtype.fields.items() if field.orderable]
    keys = ["", *orderable, *(f"-{name}" for name in orderable)]
    return [
        {"name": "order", "in": "query", "style": "form", "explode": True,
         "schema": {"type": "array", "items": {"type": "string", "enum": keys}},
         "description": "fields to order by, '-' for descending (repeatable, or comma-separated)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": limits.maximum}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": INT64_MAX}},
    ]


def _responses(ok: dict[str, Any], *extra: str) -> dict[str, Any]:
    errors = {**_ERRORS, **{code: _EXTRA_ERRORS[code] for code in extra}}
    return {"200": ok, **{code: {"description": text} for code, text in errors.items()}}


_EXTRA_ERRORS = {"409": "the action does not apply in the resource's present state"}


def _request_id_schema() -> dict[str, Any]:
    return {"anyOf": [{"type": "string", "nullable": True}, {"type": "integer", "minimum": INT64_MIN,
                                                             "maximum": INT64_MAX}]}


def _paths(data: DataAPI) -> list[tuple[str, list[dict[str, Any]], Any]]:
    """``(OpenAPI path, path parameters, endpoint)`` for every endpoint shape.

    Patterns that differ only in the type of a capture (``/builders/n:builderid`` and
    ``/builders/i:buildername``) are one OpenAPI path, which OpenAPI requires: the parameter
    is named after both (``builderid_or_buildername``) and takes either type.  They share a
    resource type, a kind and actions; the first one's describe the path.
    """
    shapes: dict[tuple[str, ...], tuple[Any, list[list[Any]]]] = {}
    for endpoint in data.endpoints():
        segments = parse_pattern(endpoint.pattern)
        shape = tuple("{}" if s.is_capture else s.name for s in segments)
        first, captures = shapes.setdefault(shape, (endpoint, [[] for s in segments if s.is_capture]))
        for known, segment in zip(captures, [s for s in segments if s.is_capture], strict=True):
            if segment not in known:
                known.append(segment)
    found = []
    for shape, (endpoint, captures) in shapes.items():
        for alternatives in captures:
            alternatives.sort(key=lambda s: "nis".index(s.type_code))  # ids first: builderid_or_buildername
        names = iter("_or_".join(s.name for s in alternatives) for alternatives in captures)
        path = "/" + "/".join(f"{{{next(names)}}}" if part == "{}" else part for part in shape)
        parameters = []
        for alternatives in captures:
            schemas = [_ARG_SCHEMAS[s.type_code] for s in alternatives]
            parameters.append({"name": "_or_".join(s.name for s in alternatives), "in": "path", "required": True,
                               "schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}})
        found.append((path, parameters, endpoint))
    return found


def _get_operation(endpoint: Any, parameters: list[dict[str, Any]], limits: Any) -> dict[str, Any]:
    rtype = endpoint.rtype
    ref = {"$ref": f"#/components/schemas/{rtype.name}"}
    collection = endpoint.kind is Kind.COLLECTION
    if endpoint.kind is Kind.RAW:
        response = {"description": "raw content", "content": {"text/plain": {"schema": {"type": "string"}}}}
    else:
        envelope = {
            "type": "object",
            "properties": {rtype.plural: {"type": "array", "items": ref},
                           "meta": _COLLECTION_META if collection else {"type": "object"}},
        }
        response = {
            "description": f"{rtype.plural} envelope",
            "content": {"application/json": {"schema": envelope}},
            "headers": {"ETag": _ETAG, **({"Link": _LINK} if collection else {})},
        }
    query = []
    if endpoint.kind is not Kind.RAW:
        query.append(_field_parameter(rtype))
    if endpoint.kind is Kind.COLLECTION:
        query += _collection_parameters(rtype, limits)
    get: dict[str, Any] = {
        "summary": endpoint.doc or f"{'list' if endpoint.kind is Kind.COLLECTION else 'get'} {rtype.plural}",
        "parameters": parameters + query,
        "responses": {**_responses(response), "304": _NOT_MODIFIED},
    }
    if endpoint.kind is Kind.COLLECTION:
        get["description"] = "Filter with field=value or field__op=value, op one of " + ", ".join(OPERATORS) + "."
    return get


def _post_operation(endpoint: Any, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    variants = []
    for action in endpoint.actions.values():
        required = [n for n, p in action.params.items() if p.required or p.anonymous_required]
        properties = {}
        for name, param in action.params.items():
            schema = _input(param.type.openapi())
            if param.anonymous_required and schema.get("type") == "string":
                schema["minLength"] = 1  # an empty one is no name either
            properties[name] = {**schema, "description": param.doc}
        variants.append({
            "type": "object",
            "required": ["jsonrpc", "method", "id", *(["params"] if required else [])],
            "properties": {
                # enum, not const: OpenAPI 3.0 has no const
                "jsonrpc": {"type": "string", "enum": ["2.0"]},
                "method": {"type": "string", "enum": [action.name]},
                "id": _request_id_schema(),
                "params": {
                    "type": "object",
                    "properties": properties,
                    **({"required": required} if required else {}),
                    "additionalProperties": {"$ref": f"#/components/schemas/{_VALUE}"} if action.open_params else False,
                },
            },
        })
    return {
        "summary": "JSON-RPC 2.0 actions: " + ", ".join(sorted(endpoint.actions)),
        "parameters": parameters,
        "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": variants}}}},
        "responses": _responses({"description": "the JSON-RPC result"}, "409"),
    }


_VALUE = "_parameter_value"
"""The component naming what a free-form action parameter may hold."""


def _value_schema() -> dict[str, Any]:
    """Any JSON value whose text holds no NUL and whose integers fit 64 bits, at any depth."""
    ref = {"$ref": f"#/components/schemas/{_VALUE}"}
    return {"nullable": True, "anyOf": [
        _input({"type": "string"}), {"type": "boolean"}, {"type": "number"}, Integer().openapi(),
        {"type": "array", "items": ref}, {"type": "object", "additionalProperties": ref},
    ]}


def openapi_document(data: DataAPI, server_url: str) -> dict[str, Any]:
    """The OpenAPI document of every endpoint and action registered with *data*."""
    schemas: dict[str, Any] = {}
    for rtype in data.rtypes.values():
        schemas[rtype.name] = {
            "type": "object",
            "description": rtype.doc or (type(rtype).__doc__ or "").strip(),
            "properties": {
                name: {**field.type.openapi(), "description": field.doc} for name, field in rtype.fields.items()
            },
        }
    paths: dict[str, Any] = {}
    for path, parameters, endpoint in _paths(data):
        operations: dict[str, Any] = {"get": _get_operation(endpoint, parameters, data.limits)}
        if endpoint.actions:
            operations["post"] = _post_operation(endpoint, parameters)
        paths[path] = operations
    schemas[_VALUE] = _value_schema()
    return {
        "openapi": "3.0.3",
        "info": {"title": "ci-master data API", "version": "2"},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def _type_spec(field_type: Any) -> tuple[str, dict[str, Any]]:
    """A field type as Buildbot's ``application.spec`` names it: ``(type, type_spec)``."""
    from master.data.types import List, NoneOk

    if isinstance(field_type, NoneOk):
        inner, spec = _type_spec(field_type.of)
        return f"{inner} or None", {**spec, "can_be_null": True}
    if isinstance(field_type, List):
        _, of = _type_spec(field_type.of)
        return "list", {"type": "list", "of": of}
    name = type(field_type).__name__.rstrip("_").lower()
    return name, {"name": name}


def application_spec(data: DataAPI) -> dict[str, Any]:
    """``/api/v2/application.spec``: every endpoint path with its type and fields, as Buildbot's web UI reads it.

    The UI's About page lists these; the shape (``specs`` of ``{path, plural, type, type_spec}``)
    is Buildbot's.
    """
    specs = []
    for endpoint in data.endpoints():
        rtype = endpoint.rtype
        fields = []
        for name, field in rtype.fields.items():
            type_name, type_spec = _type_spec(field.type)
            fields.append({"name": name, "type": type_name, "type_spec": type_spec})
        specs.append({
            "path": endpoint.pattern.strip("/"),
            "plural": rtype.plural,
            "type": rtype.name,
            "type_spec": {"type": rtype.name, "fields": fields},
        })
    return {"specs": specs, "meta": {"total": len(specs)}}
