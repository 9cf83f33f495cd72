"""An OpenAPI 3 document generated from the registered resource types."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from master.data.base import Kind
from master.data.pathmatch import parse_pattern
from master.data.resultspec import OPERATORS

if TYPE_CHECKING:
    from master.data.connector import DataAPI

_ARG_SCHEMAS = {"n": {"type": "integer"}, "i": {"type": "string", "pattern": "^[a-zA-Z_-][a-zA-Z0-9._-]*$"},
                "s": {"type": "string"}}


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


def _collection_parameters() -> list[dict[str, Any]]:
    return [
        {"name": "field", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
         "description": "fields to return (repeatable)"},
        {"name": "order", "in": "query", "schema": {"type": "array", "items": {"type": "string"}},
         "description": "fields to order by, '-' for descending (repeatable)"},
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}},
        {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
    ]


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
    for endpoint in data.endpoints():
        rtype = endpoint.rtype
        segments = parse_pattern(endpoint.pattern)
        path = "/" + "/".join(f"{{{s.name}}}" if s.is_capture else s.name for s in segments)
        parameters = [
            {"name": s.name, "in": "path", "required": True, "schema": _ARG_SCHEMAS[s.type_code]}
            for s in segments if s.is_capture
        ]
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
        get: dict[str, Any] = {
            "summary": endpoint.doc or f"{'list' if endpoint.kind is Kind.COLLECTION else 'get'} {rtype.plural}",
            "parameters": parameters + (_collection_parameters() if endpoint.kind is Kind.COLLECTION else []),
            "responses": {"200": response, "304": _NOT_MODIFIED, "400": {"description": "bad query"},
                          "404": {"description": "not found"}},
        }
        if endpoint.kind is Kind.COLLECTION:
            get["description"] = (
                "Filter with field=value or field__op=value, op one of " + ", ".join(OPERATORS) + "."
            )
        operations: dict[str, Any] = {"get": get}
        if endpoint.actions:
            variants = []
            for action in endpoint.actions.values():
                variants.append({
                    "type": "object",
                    "required": ["jsonrpc", "method", "id"],
                    "properties": {
                        "jsonrpc": {"const": "2.0"},
                        "method": {"const": action.name},
                        "id": {},
                        "params": {
                            "type": "object",
                            "properties": {
                                n: {**p.type.openapi(), "description": p.doc} for n, p in action.params.items()
                            },
                            "required": [n for n, p in action.params.items() if p.required],
                            "additionalProperties": action.open_params,
                        },
                    },
                })
            operations["post"] = {
                "summary": "JSON-RPC 2.0 actions: " + ", ".join(sorted(endpoint.actions)),
                "parameters": parameters,
                "requestBody": {"content": {"application/json": {"schema": {"oneOf": variants}}}},
                "responses": {"200": {"description": "the JSON-RPC result"}},
            }
        paths[path] = operations
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
