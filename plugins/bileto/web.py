"""Bileto's public API v1 (mounted at ``/v1``): its routes mapped onto the data API.

Reads go through ``data.get`` with a result spec built here (filters, newest first, a page),
so every query runs in SQL; writes go through the actions of the ``tickets`` resource type.
Bodies are Bileto's: ``{"requests": [ticket, ...]}``; errors are ``{"error": message}``
with 400 (bad query or body), 401/403 (credentials), 404 (no such ticket or path) or 405.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs

import orjson
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from master.data.base import Collection
from master.data.errors import DataError, InvalidParams, InvalidQuery, NotFound
from master.data.resultspec import Filter, ResultSpec, one_int
from master.data.types import Boolean
from master.www.auth import AuthError
from master.www.responses import json_body, json_error, json_routing_errors
from plugins.bileto.access import authorize_read, identify_poster, site_authenticator
from plugins.bileto.resources import CLOSED_STATUSES

log = Logger()

IGNORED_ON_READ = ("token",)
"""Parameters a GET accepts and ignores: bots add their token to every URL."""
IGNORED_ON_WRITE = ("date", "comments", "search")
"""Ticket fields a POST may carry (clients send back what they read) but cannot set."""
IGNORED_ON_COMMENT = ("date", "id")
"""Comment fields a POST to /v1/comment may carry but cannot set."""
FAILURE_WORDS = ("can't", "failed", "error")
PUBLISHABLE_STATUS = "Packages built"
PUBLISHABLE_SIGNOFFS = ("QA Granted", "Publish without QA")
MAX_BODY = 1024 * 1024
"""The largest POST body read (1 MiB); tickets are a few kilobytes."""


class BadRequest(Exception):
    """A request Bileto refuses; *status* and *message* are what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ticket_spec(
    data: Any,
    args: Mapping[str, Sequence[str]],
    base: Sequence[Filter] = (),
    always_active: bool = False,
) -> ResultSpec:
    """The result spec of a ticket listing: *base* filters plus the query's, newest first, one page.

    ``field=value`` is a case-insensitive substring filter (``request_id`` matches exactly);
    several values of one field match any of them.  Landed and Abandoned tickets are left
    out when the query names no field, when ``active_only`` is given, or with *always_active*.
    """
    fields = data.rtypes["tickets"].fields
    filters = list(base)
    named_field = False
    active_only = always_active
    limit, offset = data.limits.maximum, 0
    for name, values in args.items():
        if name == "active_only":
            active_only = active_only or _flag(name, values)
        elif name == "limit":
            limit = one_int(name, values, 0, data.limits.maximum)
        elif name == "offset":
            offset = one_int(name, values, 0, None)
        elif name in IGNORED_ON_READ:
            continue
        elif name not in fields:
            raise InvalidQuery(f"unknown field {name!r}; fields are {', '.join(sorted(fields))}", name)
        elif not fields[name].filterable:
            raise InvalidQuery(f"cannot query on field {name!r}", name)
        else:
            named_field = True
            if name == "request_id":
                try:
                    numbers = tuple(int(value) for value in values)
                except ValueError:
                    raise InvalidQuery(f"request_id must be an integer, got {values[0]!r}", name) from None
                filters.append(Filter(name, "eq", numbers))
            else:
                filters.append(Filter(name, "contains", tuple(values)))
    if active_only or not named_field:
        filters.append(Filter("status", "notin", CLOSED_STATUSES))
    return ResultSpec(filters=filters, order=("-request_id",), limit=limit, offset=offset)


def query_args(request: IRequest) -> dict[str, list[str]]:
    """The query string as ``{name: [values]}``, keeping bare names such as ``?active_only`` (as "")."""
    # Twisted's request.args drops a name without "=", which is how Bileto spells active_only
    _, _, query = request.uri.partition(b"?")
    try:
        return parse_qs(query.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeError:
        raise InvalidQuery("the query string is not valid UTF-8") from None


def _flag(name: str, values: Sequence[str]) -> bool:
    """A bare ``?active_only`` is on; ``=true``/``=false`` (yes/no, on/off, 1/0) also work."""
    value = values[-1]
    if value == "":
        return True
    try:
        return Boolean().from_string(value)
    except ValueError as e:
        raise InvalidQuery(f"invalid {name}: {e}", name) from None


def _body(request: IRequest) -> dict[str, Any]:
    raw = request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadRequest(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(400, f"the body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(400, f"the body must be a JSON object, not {type(body).__name__}")
    return body


def _request_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise BadRequest(400, f"request_id must be an integer, got {value!r}")


def bileto_order(ticket: Mapping[str, Any]) -> dict[str, Any]:
    """A ticket with its keys in the seed's order (alphabetical; the data API appends loaded fields last)."""
    return dict(sorted(ticket.items()))


def _params_error(error: InvalidParams) -> str:
    """One line naming every bad field, unknown ones first."""
    unknown = sorted(name for name, reason in error.errors.items() if reason == "unknown parameter")
    parts = [f"unknown field {name!r}" for name in unknown]
    parts += [f"{name}: {reason}" for name, reason in sorted(error.errors.items()) if name not in unknown]
    return "; ".join(parts)


class BiletoApi:
    """The ``/v1`` routes over one DataAPI."""

    app = json_routing_errors(Klein())

    def __init__(self, data: Any, api_token: str | None, lists: Mapping[str, list[str]]) -> None:
        self.data = data
        self.api_token = api_token
        self.lists = lists

    def resource(self) -> Any:
        """The twisted.web resource to mount at ``/v1``."""
        return self.app.resource()

    # -- plumbing ---------------------------------------------------------------------------

    def _answer(self, request: IRequest, handlers: Mapping[bytes, Callable[[], Awaitable[bytes]]]) -> Any:
        """Run the handler of the request's method, turning every failure into a JSON error."""
        work = handlers.get(request.method)
        if work is None:
            allow = b", ".join(handlers)
            request.setHeader(b"Allow", allow)
            method = request.method.decode(errors="replace")
            return json_error(request, 405, f"method {method} is not allowed here; use {allow.decode()}")

        async def run() -> bytes:
            try:
                return await work()
            except BadRequest as e:
                return json_error(request, e.status, e.message)
            except AuthError as e:
                if e.status == 401:
                    request.setHeader(b"WWW-Authenticate", b'Bearer realm="ci-master"')
                return json_error(request, e.status, e.message)
            except InvalidParams as e:
                return json_error(request, 400, _params_error(e))
            except NotFound as e:
                return json_error(request, 404, e.message)
            except DataError as e:
                return json_error(request, 400, e.message)
            except defer.CancelledError:
                raise  # the client went away
            except Exception:
                log.failure("{method} {uri} failed", method=request.method, uri=request.uri)
                return json_error(request, 500, "internal error (logged on the master)")

        return defer.ensureDeferred(run())

    def _reads(self, read: Callable[[], Awaitable[bytes]]) -> dict[bytes, Callable[[], Awaitable[bytes]]]:
        return {b"GET": read, b"HEAD": read}

    def _listing(
        self, request: IRequest, base: Sequence[Filter] = (), always_active: bool = False
    ) -> dict[bytes, Callable[[], Awaitable[bytes]]]:
        return self._reads(lambda: self._list(request, base, always_active))

    async def _list(self, request: IRequest, base: Sequence[Filter] = (), always_active: bool = False) -> bytes:
        authorize_read(request, site_authenticator(self.data), self.api_token)
        spec = ticket_spec(self.data, query_args(request), base, always_active)
        found: Collection = await self.data.get(("tickets",), spec)
        # the body stays exactly Bileto's; the total, whatever the page, rides in a header
        request.setHeader(b"X-Total-Count", str(found.total).encode())
        return json_body(request, {"requests": [bileto_order(ticket) for ticket in found.items]})

    # -- reads ------------------------------------------------------------------------------

    @app.route("/tickets", methods=None)
    def tickets(self, request: IRequest) -> Any:
        """GET lists tickets by query; POST creates or updates one."""
        return self._answer(request, {**self._listing(request), b"POST": lambda: self._post_ticket(request)})

    @app.route("/ticket/<ticket>", methods=None)
    def ticket(self, request: IRequest, ticket: str) -> Any:
        """One ticket by its number."""

        async def read() -> bytes:
            authorize_read(request, site_authenticator(self.data), self.api_token)
            if not ticket.isdigit():
                raise BadRequest(400, f"a ticket number is an integer, not {ticket!r}")
            found = await self.data.get(("tickets", ticket))
            if found is None:
                raise NotFound(f"no ticket {int(ticket)}")
            return json_body(request, {"requests": [bileto_order(found)]})

        return self._answer(request, self._reads(read))

    @app.route("/user/<lander>", methods=None)
    def user(self, request: IRequest, lander: str) -> Any:
        """Active tickets whose landers contain *lander*."""
        base = [Filter("landers", "contains", (lander,))]
        return self._answer(request, self._listing(request, base, always_active=True))

    @app.route("/silo/<path:silo>", methods=None)
    def silo(self, request: IRequest, silo: str) -> Any:
        """Active tickets whose silo name contains *silo* (``001`` or ``ubuntu/landing-001``)."""
        base = [Filter("siloname", "contains", (silo,))]
        return self._answer(request, self._listing(request, base, always_active=True))

    @app.route("/publishable", methods=None)
    def publishable(self, request: IRequest) -> Any:
        """Tickets a trainguard can publish: packages built and QA granted or waived."""
        base = [Filter("status", "eq", (PUBLISHABLE_STATUS,)), Filter("qa_signoff", "in", PUBLISHABLE_SIGNOFFS)]
        return self._answer(request, self._listing(request, base))

    @app.route("/failures", methods=None)
    def failures(self, request: IRequest) -> Any:
        """Tickets whose status says something failed."""
        base = [Filter("status", "contains", FAILURE_WORDS)]
        return self._answer(request, self._listing(request, base))

    @app.route("/metadata", methods=None)
    def metadata(self, request: IRequest) -> Any:
        """Each field's documentation and the drop-down lists' values."""

        async def read() -> bytes:
            fields = self.data.rtypes["tickets"].fields
            docs = {name: field.doc for name, field in fields.items()}
            return json_body(request, {"fields": docs, **self.lists})

        return self._answer(request, self._reads(read))

    # -- writes -----------------------------------------------------------------------------

    async def _post_ticket(self, request: IRequest) -> bytes:
        authenticator = site_authenticator(self.data)
        poster = identify_poster(request, authenticator, self.api_token)
        body = _body(request)
        request_id = body.pop("request_id", None)
        params = {name: value for name, value in body.items() if name not in IGNORED_ON_WRITE}
        if request_id is None or request_id == "":
            poster.authorize(authenticator, "create")
            ticket = await self.data.control(("tickets",), "create", params, poster.user)
            return json_body(request, {"requests": [bileto_order(ticket)]}, 201)
        number = _request_id(request_id)
        poster.authorize(authenticator, "update")
        ticket = await self.data.control(("tickets", str(number)), "update", params, poster.user)
        return json_body(request, {"requests": [bileto_order(ticket)]})

    @app.route("/comment", methods=None)
    def comment(self, request: IRequest) -> Any:
        """Add a comment to a ticket: ``{"request_id": 6, "text": "...", "author": "..."}``."""

        async def post() -> bytes:
            authenticator = site_authenticator(self.data)
            poster = identify_poster(request, authenticator, self.api_token)
            body = _body(request)
            poster.authorize(authenticator, "comment")
            if "request_id" not in body:
                raise BadRequest(400, "request_id is required: the ticket to comment on")
            number = _request_id(body.pop("request_id"))
            params = {name: value for name, value in body.items() if name not in IGNORED_ON_COMMENT}
            added = await self.data.control(("tickets", str(number)), "comment", params, poster.user)
            return json_body(request, {"comments": [added]}, 201)

        return self._answer(request, {b"POST": post})

    # -- anything else ----------------------------------------------------------------------

    @app.route("/", methods=None, strict_slashes=False)
    def index(self, request: IRequest) -> bytes:
        """``/v1`` itself: where the API is."""
        return json_error(request, 404, "Bileto API v1: see /v1/tickets, /v1/ticket/<id>, /v1/metadata")

    @app.route("/<path:rest>", methods=None)
    def unknown(self, request: IRequest, rest: str) -> bytes:
        """A JSON 404 for any other path."""
        return json_error(request, 404, f"no such path: /v1/{rest}")
