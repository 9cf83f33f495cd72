"""Writing JSON responses: compact bodies, the right headers, no internals ever shown."""

from __future__ import annotations

from typing import Any

import orjson
from klein import Klein
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

JSON = b"application/json; charset=utf-8"


def _default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_json(body: Any) -> bytes:
    """Compact JSON for *body*."""
    return orjson.dumps(body, default=_default, option=orjson.OPT_NON_STR_KEYS)


def json_body(request: IRequest, body: Any, status: int = 200) -> bytes:
    """Set status and JSON headers on *request* and return the encoded body."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON)
    encoded = encode_json(body)
    request.setHeader(b"Content-Length", b"%d" % len(encoded))
    return encoded


def json_error(request: IRequest, status: int, message: str) -> bytes:
    """A REST error: ``{"error": message}`` with *status*."""
    return json_body(request, {"error": message}, status)


DATABASE_UNAVAILABLE = "the database is unavailable; the master carries on once it is back: try again shortly"
RETRY_AFTER = b"5"


def database_available(storage: Any) -> bool:
    """Whether *storage* can be reached now (backends without outages have no such state: always)."""
    return getattr(storage, "database_available", True)


def unavailable_error(request: IRequest) -> bytes:
    """A REST 503 saying the database is away, with ``Retry-After``."""
    request.setHeader(b"Retry-After", RETRY_AFTER)
    return json_error(request, 503, DATABASE_UNAVAILABLE)


def json_routing_errors(app: Klein) -> Klein:
    """Have *app* answer its router's own errors in JSON: a path no route matches (even one holding a
    newline, which no ``<path:...>`` route takes), a method a route does not take (with ``Allow``).
    """
    app.handle_errors(HTTPException)(_routing_error)
    return app


def _routing_error(self: Any, request: IRequest, failure: Failure) -> bytes:
    # *self* (the app's instance, unused): Klein's error-method protocol names it so
    error = failure.value
    assert isinstance(error, HTTPException), error  # registered for HTTPException only
    allowed = getattr(error, "valid_methods", None)
    if error.code == 405 and allowed:
        allowed = sorted(allowed)
        request.setHeader(b"Allow", ", ".join(allowed).encode())
        message = f"method {request.method.decode(errors='replace')} is not allowed here; use {', '.join(allowed)}"
    elif error.code == 404:
        message = f"no such path: {request.path.decode(errors='replace')}"
    else:
        message = error.description or error.name
    return json_error(request, error.code or 500, message)
