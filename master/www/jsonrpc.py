"""JSON-RPC 2.0 over POST: the method is a data API action on the posted path.

Batches, positional parameters and notifications are not supported (every request gets an
answer).  Errors, with their HTTP status:

==========  ======  =============================================================
code        HTTP    when
==========  ======  =============================================================
-32700      400     the body is not JSON
-32600      400     not a JSON-RPC 2.0 request object, or Content-Type not JSON
-32600      404     no such path, or no such resource at it
-32001      401     the action needs a logged-in user (or the credentials are bad)
-32003      403     the user's roles do not allow the action
-32601      400     the endpoint has no such action
-32601      405     the endpoint has no action at all (read-only; with ``Allow``)
-32602      400     bad parameters; ``error.data`` maps each bad one to a message
-32000      409     the action does not apply in the resource's present state
-32004      503     the database is unreachable (with ``Retry-After``): try again shortly
-32603      500     a fault of ours (logged on the master; no detail in the body)
==========  ======  =============================================================
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from master.data.connector import DataAPI
from master.data.errors import Conflict, InvalidParams, InvalidPath, NotFound, UnknownAction
from master.data.types import INT64_MAX, INT64_MIN
from master.db.interfaces import DatabaseUnavailable
from master.metrics import note_action, note_outcome
from master.www.auth import Authenticator, AuthError
from master.www.responses import DATABASE_UNAVAILABLE, RETRY_AFTER, database_available, json_body

log = Logger()

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
UNAVAILABLE = -32004
INTERNAL_ERROR = -32603
CONFLICT = -32000
UNAUTHENTICATED = -32001
FORBIDDEN = -32003


class RpcError(Exception):
    """An error answer: JSON-RPC code, HTTP status, message and optional data."""

    def __init__(self, code: int, status: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.status, self.message, self.data = code, status, message, data


def _parse(request: IRequest) -> dict[str, Any]:
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise RpcError(INVALID_REQUEST, 400, "Content-Type must be application/json")
    try:
        body = orjson.loads(request.content.read())
    except orjson.JSONDecodeError as e:
        raise RpcError(PARSE_ERROR, 400, f"JSON parse error: {e}") from None
    if isinstance(body, list):
        raise RpcError(INVALID_REQUEST, 400, "JSON-RPC batch requests are not supported")
    if not isinstance(body, dict):
        raise RpcError(INVALID_REQUEST, 400, "the request must be a JSON object")
    if body.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 400, "only JSON-RPC 2.0 is supported ('jsonrpc': '2.0')")
    if not isinstance(body.get("method"), str):
        raise RpcError(INVALID_REQUEST, 400, "'method' must be a string")
    if "id" not in body:
        raise RpcError(INVALID_REQUEST, 400, "'id' is required: notifications are not supported")
    if body["id"] is not None and not _valid_id(body["id"]):
        raise RpcError(INVALID_REQUEST, 400, "'id' must be a string, a 64-bit integer or null")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise RpcError(INVALID_REQUEST, 400, "'params' must be an object (positional parameters are not supported)")
    return body


def _valid_id(candidate: Any) -> bool:
    """Whether *candidate* may be a request id: a string, or an integer a 64-bit client can read back."""
    if isinstance(candidate, bool):
        return False
    return isinstance(candidate, str) or (isinstance(candidate, int) and INT64_MIN <= candidate <= INT64_MAX)


def _request_id(request: IRequest) -> Any:
    """The id of a request whose body failed validation, when it can still be read."""
    try:
        request.content.seek(0)
        body = orjson.loads(request.content.read())
        candidate = body.get("id") if isinstance(body, dict) else None
        return candidate if _valid_id(candidate) else None
    except Exception:
        return None


def read_only(request: IRequest, path: str) -> bytes:
    """The answer to a POST where the endpoint has no action: HTTP 405 (the caller sets ``Allow``)."""
    message = f"/{path.strip('/')} has no actions: it is read-only (GET)"
    error = {"code": METHOD_NOT_FOUND, "message": message}
    return json_body(request, {"jsonrpc": "2.0", "error": error, "id": _request_id(request)}, 405)


async def handle(data: DataAPI, request: IRequest, path: str, auth: Authenticator | None = None) -> bytes:
    """Answer one JSON-RPC POST to *path*; with *auth*, the caller must be allowed the action."""
    request_id = None
    try:
        try:
            body = _parse(request)
        except RpcError:
            request_id = _request_id(request)
            raise
        request_id = body["id"]
        note_action(request, data, path, body["method"])
        try:
            if not database_available(data.storage):
                raise DatabaseUnavailable(DATABASE_UNAVAILABLE)
            user = None
            if auth is not None and auth.enabled:
                endpoint, _ = data.resolve(path)
                user = auth.authenticate(request)
                auth.authorize(user, endpoint.rtype.plural, body["method"])
            result = await data.control(path, body["method"], body.get("params", {}), user)
        except AuthError as e:
            if e.status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="ci-master"')
            raise RpcError(UNAUTHENTICATED if e.status == 401 else FORBIDDEN, e.status, e.message) from None
        except (InvalidPath, NotFound) as e:
            raise RpcError(INVALID_REQUEST, 404, e.message) from None
        except UnknownAction as e:
            note_outcome(request, "unknown_action")  # a 400 like bad params, but counted apart
            raise RpcError(METHOD_NOT_FOUND, 400, e.message) from None  # the caller's error: no 5xx
        except InvalidParams as e:
            raise RpcError(INVALID_PARAMS, 400, e.message, e.errors) from None
        except Conflict as e:
            raise RpcError(CONFLICT, 409, e.message) from None
        except DatabaseUnavailable:
            request.setHeader(b"Retry-After", RETRY_AFTER)
            raise RpcError(UNAVAILABLE, 503, DATABASE_UNAVAILABLE) from None
    except RpcError as e:
        error: dict[str, Any] = {"code": e.code, "message": e.message}
        if e.data is not None:
            error["data"] = e.data
        return json_body(request, {"jsonrpc": "2.0", "error": error, "id": request_id}, e.status)
    except defer.CancelledError:
        raise  # the client went away
    except Exception:
        log.failure("JSON-RPC POST /api/v2/{path} failed", path=path)
        error = {"code": INTERNAL_ERROR, "message": "internal error (logged on the master)"}
        return json_body(request, {"jsonrpc": "2.0", "error": error, "id": request_id}, 500)
    return json_body(request, {"jsonrpc": "2.0", "result": result, "id": request_id})
