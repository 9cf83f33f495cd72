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

from twisted.web.iweb import IRequest

from master.sdk import (
    Boolean,
    Collection,
    DataAPI,
    DataError,
    Filter,
    HttpError,
    InvalidParams,
    InvalidQuery,
    JsonApi,
    NotFound,
    PluginContext,
    Response,
    ResultSpec,
    one_int,
    read_json,
)
from plugins.bileto.access import authorize_read, identify_poster
from plugins.bileto.documents import params_error, ticket_document
from plugins.bileto.resources import CLOSED_STATUSES

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


def ticket_spec(
    data: DataAPI,
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
    return read_json(request, MAX_BODY)


def _request_id(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise HttpError(400, f"request_id must be an integer, got {value!r}")


class BiletoApi(JsonApi):
    """The ``/v1`` routes over one plugin context (errors ``{"error": message}``, the SDK's default)."""

    app = JsonApi.klein()
    auth_challenge = b'Bearer realm="ci-master"'

    def __init__(self, ctx: PluginContext | Any, api_token: str | None, lists: Mapping[str, list[str]]) -> None:
        super().__init__(ctx)
        self.api_token = api_token
        self.lists = lists

    # -- plumbing ---------------------------------------------------------------------------

    def before(self, request: IRequest) -> None:
        """Nothing: each read route checks its caller (the site token counts too) with :func:`authorize_read`."""

    def data_error(self, request: IRequest, error: DataError) -> HttpError:
        """Bad action parameters as one line naming every bad field; else the SDK's 404/400."""
        if isinstance(error, InvalidParams):
            return HttpError(400, params_error(error.errors))
        return super().data_error(request, error)

    def _reads(self, read: Callable[[], Awaitable[Any]]) -> dict[bytes, Callable[[], Awaitable[Any]]]:
        return {b"GET": read, b"HEAD": read}

    def _listing(
        self, request: IRequest, base: Sequence[Filter] = (), always_active: bool = False
    ) -> dict[bytes, Callable[[], Awaitable[Any]]]:
        return self._reads(lambda: self._list(request, base, always_active))

    async def _list(self, request: IRequest, base: Sequence[Filter] = (), always_active: bool = False) -> Response:
        authorize_read(request, self.auth, self.api_token)
        spec = ticket_spec(self.data, query_args(request), base, always_active)
        found: Collection = await self.data.get(("tickets",), spec)
        # the body stays exactly Bileto's; the total, whatever the page, rides in a header
        return Response({"requests": [ticket_document(ticket) for ticket in found.items]},
                        headers={"X-Total-Count": str(found.total)})

    # -- reads ------------------------------------------------------------------------------

    @app.route("/tickets", methods=None)
    def tickets(self, request: IRequest) -> Any:
        """GET lists tickets by query; POST creates or updates one."""
        return self.by_method(request, {**self._listing(request), b"POST": lambda: self._post_ticket(request)})

    @app.route("/ticket/<ticket>", methods=None)
    def ticket(self, request: IRequest, ticket: str) -> Any:
        """One ticket by its number."""

        async def read() -> Any:
            authorize_read(request, self.auth, self.api_token)
            if not ticket.isdigit():
                raise HttpError(400, f"a ticket number is an integer, not {ticket!r}")
            found = await self.data.get(("tickets", ticket))
            if found is None:
                raise NotFound(f"no ticket {int(ticket)}")
            return {"requests": [ticket_document(found)]}

        return self.by_method(request, self._reads(read))

    @app.route("/user/<lander>", methods=None)
    def user(self, request: IRequest, lander: str) -> Any:
        """Active tickets whose landers contain *lander*."""
        base = [Filter("landers", "contains", (lander,))]
        return self.by_method(request, self._listing(request, base, always_active=True))

    @app.route("/silo/<path:silo>", methods=None)
    def silo(self, request: IRequest, silo: str) -> Any:
        """Active tickets whose silo name contains *silo* (``001`` or ``ubuntu/landing-001``)."""
        base = [Filter("siloname", "contains", (silo,))]
        return self.by_method(request, self._listing(request, base, always_active=True))

    @app.route("/publishable", methods=None)
    def publishable(self, request: IRequest) -> Any:
        """Tickets a trainguard can publish: packages built and QA granted or waived."""
        base = [Filter("status", "eq", (PUBLISHABLE_STATUS,)), Filter("qa_signoff", "in", PUBLISHABLE_SIGNOFFS)]
        return self.by_method(request, self._listing(request, base))

    @app.route("/failures", methods=None)
    def failures(self, request: IRequest) -> Any:
        """Tickets whose status says something failed."""
        base = [Filter("status", "contains", FAILURE_WORDS)]
        return self.by_method(request, self._listing(request, base))

    @app.route("/metadata", methods=None)
    def metadata(self, request: IRequest) -> Any:
        """Each field's documentation and the drop-down lists' values."""

        async def read() -> Any:
            fields = self.data.rtypes["tickets"].fields
            docs = {name: field.doc for name, field in fields.items()}
            return {"fields": docs, **self.lists}

        return self.by_method(request, self._reads(read))

    # -- writes -----------------------------------------------------------------------------

    async def _post_ticket(self, request: IRequest) -> Any:
        poster = identify_poster(request, self.auth, self.api_token)
        body = _body(request)
        request_id = body.pop("request_id", None)
        params = {name: value for name, value in body.items() if name not in IGNORED_ON_WRITE}
        if request_id is None or request_id == "":
            poster.authorize(self.auth, "create")
            ticket = await self.data.control(("tickets",), "create", params, poster.user)
            return Response({"requests": [ticket_document(ticket)]}, 201)
        number = _request_id(request_id)
        poster.authorize(self.auth, "update")
        ticket = await self.data.control(("tickets", str(number)), "update", params, poster.user)
        return {"requests": [ticket_document(ticket)]}

    @app.route("/comment", methods=None)
    def comment(self, request: IRequest) -> Any:
        """Add a comment to a ticket: ``{"request_id": 6, "text": "...", "author": "..."}``."""

        async def post() -> Any:
            poster = identify_poster(request, self.auth, self.api_token)
            body = _body(request)
            poster.authorize(self.auth, "comment")
            if "request_id" not in body:
                raise HttpError(400, "request_id is required: the ticket to comment on")
            number = _request_id(body.pop("request_id"))
            params = {name: value for name, value in body.items() if name not in IGNORED_ON_COMMENT}
            added = await self.data.control(("tickets", str(number)), "comment", params, poster.user)
            return Response({"comments": [added]}, 201)

        return self.by_method(request, {b"POST": post})

    # -- anything else ----------------------------------------------------------------------

    @app.route("/", methods=None, strict_slashes=False)
    def index(self, request: IRequest) -> bytes:
        """``/v1`` itself: where the API is."""
        where = "Bileto API v1: see /v1/tickets, /v1/ticket/<id>, /v1/metadata"
        return self.render_error(request, HttpError(404, where))

    @app.route("/<path:rest>", methods=None)
    def unknown(self, request: IRequest, rest: str) -> bytes:
        """A JSON 404 for any other path."""
        return self.render_error(request, HttpError(404, f"no such path: /v1/{rest}"))
