"""The plugin SDK: the one module a plugin imports from the core.

A plugin is a :class:`Plugin` subclass that declares what it adds: resource types (the data
API's getters, actions and update methods, the only place its SQL lives), its tables and
their Alembic migrations, web routes (:class:`JsonApi` subclasses, one Klein app each) and
background services.  Routes and services get a frozen :class:`PluginContext`: the data
API, the master's auth policy (:class:`PluginAuth`), the master directory and a clock.

Every route answers through one error mapping (:meth:`JsonApi.answer`): :class:`HttpError`
gives its status; a data API ``NotFound`` 404; bad input (``InvalidQuery``, any other
``DataError``, a bad body) 400; an ``AuthError`` 401/403; anything else is logged and
answered 500 with a JSON body that shows no internals.  Each API's wire format (its error
body shape, its JSON layout) is one overridable method, so a plugin serving a real API keeps
that API's shapes exactly.

Everything else here is re-exported from the core, so that a plugin's imports never reach
past this module (an import-linter contract checks it in CI).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import EllipsisType, SimpleNamespace
from typing import Any, ClassVar

import orjson
import sqlalchemy as sa
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from master import plugin as _core_plugin
from master.config import ConfigError, load_config
from master.data.base import (
    Action,
    ActionCall,
    Collection,
    Endpoint,
    Field,
    Kind,
    Param,
    RawContent,
    ResourceType,
    update_method,
)
from master.data.connector import DataAPI
from master.data.errors import Conflict, DataError, InvalidParams, InvalidPath, InvalidQuery, NotFound
from master.data.resources.common import (
    boolean_filter,
    dumps,
    list_loader,
    now,
    properties_loader,
)
from master.data.resultspec import Filter, ResultSpec, one_int
from master.data.types import Boolean, DateTime, FieldType, Integer, JsonObject, List, NonBlank, NoneOk, String
from master.db import schema as _core_schema
from master.db.interfaces import IntegrityError, ITransaction, Prepared, StorageError
from master.engine.interfaces import Command, CommandResult
from master.engine.steps import ShellCommand, StepLog
from master.junit import ERROR, FAILED, PASSED, JUnitError, TestCase, parse_junit
from master.junit import SKIPPED as JUNIT_SKIPPED
from master.junit import count as count_cases
from master.results import CANCELLED, EXCEPTION, FAILURE, RESULTS, RETRY, SKIPPED, SUCCESS, WARNINGS
from master.www.auth import Authenticator, AuthError, User, UserStore, scope_plugin_reads
from master.www.httplimits import DEFAULT_MAX_BODY_BYTES
from master.www.responses import encode_json, json_body

__all__ = [
    # the plugin and what it is handed
    "Plugin", "PluginContext", "PluginAuth", "DataAPI",
    # web routes
    "JsonApi", "HttpError", "Response", "handler", "read_body", "read_json", "encode_json",
    # declaring resource types
    "Action", "ActionCall", "Collection", "Endpoint", "Field", "Kind", "Param", "RawContent", "ResourceType",
    "update_method", "Filter", "ResultSpec", "one_int",
    "Boolean", "DateTime", "FieldType", "Integer", "JsonObject", "List", "NonBlank", "NoneOk", "String",
    "boolean_filter", "dumps", "list_loader", "now", "properties_loader",
    # errors
    "DataError", "Conflict", "InvalidParams", "InvalidPath", "InvalidQuery", "NotFound", "AuthError",
    "StorageError", "IntegrityError", "ConfigError",
    # storage seams a resource type's SQL uses, and the core tables plugin tables may refer to
    "ITransaction", "Prepared", "core_table", "core_tables",
    # users
    "User", "UserStore",
    # result codes
    "SUCCESS", "WARNINGS", "FAILURE", "SKIPPED", "EXCEPTION", "RETRY", "CANCELLED", "RESULTS",
    # build steps a plugin may offer
    "Command", "CommandResult", "ShellCommand", "StepLog",
    # JUnit reports
    "parse_junit", "JUnitError", "TestCase", "count_cases", "PASSED", "FAILED", "ERROR", "JUNIT_SKIPPED",
    # tools
    "open_data", "load_config",
]

log = Logger()


def core_table(name: str) -> sa.Table:
    """The core table *name* (``builds``, ``steps``...): for plugin tables' foreign keys and resource types' joins."""
    table = getattr(_core_schema, name, None)
    if not isinstance(table, sa.Table):
        raise LookupError(f"no core table {name!r}")
    return table


class _CoreTables:
    """The core tables as attributes (``core_tables.builds``), for resource types' joins and foreign keys."""

    def __getattr__(self, name: str) -> sa.Table:
        try:
            return core_table(name)
        except LookupError as e:
            raise AttributeError(str(e)) from None


core_tables = _CoreTables()


# -- what routes and services are handed -------------------------------------------------------


class PluginAuth:
    """The master's auth policy as a plugin sees it: who calls, what they may do, what they may read.

    It follows the master's Authenticator (the one ``master.cfg``'s ``auth`` configures, and
    reconfig updates).  *wired* is False when no master handed one over (a plugin served
    outside a master); plugins then fail closed on writes.  Cross-site request forgery is
    refused by the master's site for every mounted plugin before a route runs (a state change
    riding on the session cookie needs ``Content-Type: application/json`` or a same-site
    ``Origin``): a plugin has nothing to add.
    """

    def __init__(self, source: Callable[[], Authenticator | None]) -> None:
        self._source = source

    @property
    def authenticator(self) -> Authenticator | None:
        """The master's Authenticator now, or None."""
        return self._source()

    @property
    def wired(self) -> bool:
        """Whether a master handed its Authenticator over."""
        return self._source() is not None

    @property
    def enabled(self) -> bool:
        """Whether ``auth`` is on in master.cfg (users, tokens and rules exist)."""
        auth = self._source()
        return auth is not None and auth.enabled

    @property
    def restricts_reads(self) -> bool:
        """Whether ``Auth.read_rules`` restrict reads."""
        auth = self._source()
        return auth is not None and bool(getattr(auth, "restricts_reads", False))

    @property
    def users(self) -> UserStore | None:
        """The master's users file, when auth is on."""
        auth = self._source()
        return auth.users if auth is not None and auth.enabled else None

    def authenticate(self, request: IRequest) -> User | None:
        """Who makes *request* (Bearer token, Basic password or session cookie), or None; AuthError(401) if wrong."""
        auth = self._source()
        return auth.authenticate(request) if auth is not None else None

    def user_by_token(self, token: str) -> User | None:
        """The user of API token *token*, or None (also when auth is off)."""
        users = self.users
        return users.by_token(token) if users is not None else None

    def authorize(self, user: User | None, resource: str, action: str) -> None:
        """Raise AuthError(401/403) unless *user* may call *action* on *resource* (``Auth.rules``)."""
        auth = self._source()
        if auth is not None:
            auth.authorize(user, resource, action)

    def authorize_read(self, user: User | None, resource: str) -> None:
        """Raise AuthError(401/403) unless *user* may read *resource* (``Auth.read_rules``)."""
        auth = self._source()
        if auth is not None:
            auth.authorize_read(user, resource)

    def scope_reads(self, request: IRequest, user: User | None | EllipsisType = ...) -> None:
        """Check every later ``data.get`` of the running route against the read rules, as *user*
        (by default whoever *request* authenticates as).  Every GET route calls this before it reads.
        """
        scope_plugin_reads(SimpleNamespace(auth=self._source()), request, user)


@dataclass(frozen=True)
class PluginContext:
    """What a plugin's routes and services are handed: the data API, the auth policy, the master directory, a clock."""

    data: DataAPI
    auth: PluginAuth
    basedir: Path
    clock: Any

    @classmethod
    def of(cls, data: Any, clock: Any = None) -> PluginContext:
        """The context of a plugin running on *data* (the master binds its Authenticator and directory to it)."""
        if clock is None:
            from twisted.internet import reactor as clock
        return cls(data, PluginAuth(lambda: data.auth), Path(data.basedir or "."), clock)


class Plugin(_core_plugin.Plugin):
    """The base of a plugin: set ``name``, ``tables``/``migrations_dir`` and override what you add.

    Settings are the attributes ``__init__`` sets from its arguments: on reconfig a plugin whose
    settings changed is replaced (its routes remounted, its services restarted).
    """

    name = "plugin"
    tables: ClassVar[sa.MetaData | None] = None
    """The MetaData of the plugin's tables (created when missing, or migrated with ``migrations_dir``)."""
    migrations_dir: ClassVar[str | None] = None
    """A folder of Alembic revisions for ``tables`` (stamped in ``alembic_version_<name>``)."""

    def resource_types(self) -> list[ResourceType]:
        """The resource types this plugin adds to the data API."""
        return []

    def routes(self, ctx: PluginContext) -> Mapping[str, Any]:
        """``{url prefix: JsonApi or twisted.web resource}`` to mount on the master's web server."""
        return {}

    def background(self, ctx: PluginContext) -> list[Any]:
        """twisted.application services run while the plugin is enabled (started after the data API)."""
        return []

    # -- what the core calls --------------------------------------------------------------------

    def metadata(self) -> sa.MetaData | None:
        """The plugin's tables (the core's hook)."""
        return self.tables

    def migrations(self) -> str | None:
        """The plugin's migrations folder (the core's hook)."""
        return self.migrations_dir

    def web_resources(self, data: Any) -> dict[str, Any]:
        """The core's hook: ``routes`` with their JsonApis made into resources."""
        ctx = PluginContext.of(data)
        return {prefix: api.resource() if isinstance(api, JsonApi) else api for prefix, api in self.routes(ctx).items()}

    def services(self, data: Any) -> list[Any]:
        """The core's hook: ``background``."""
        return list(self.background(PluginContext.of(data)))


# -- routes ------------------------------------------------------------------------------------


class HttpError(Exception):
    """An error answer: *status*, and *body*: a message (shaped by :meth:`JsonApi.error_body`) or a whole JSON body."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None = None,
                 message: str | None = None) -> None:
        super().__init__(message or (body if isinstance(body, str) else f"HTTP {status}"))
        self.status = status
        self.body = body
        self.headers = dict(headers or {})

    @property
    def message(self) -> str:
        """The message (the body itself when it is one)."""
        return self.body if isinstance(self.body, str) else str(self)


@dataclass
class Response:
    """A route's answer with a status or headers; *body* is JSON-able, ``bytes`` sent as they are, or None (no body)."""

    body: Any = None
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


def read_body(request: IRequest, limit: int | None = None) -> bytes:
    """The request body, at most *limit* bytes (by default the site's ``www.max_body_bytes``); 413 beyond."""
    if limit is None:
        limit = getattr(request, "max_body_bytes", None) or DEFAULT_MAX_BODY_BYTES
    if request.content is None:
        return b""
    request.content.seek(0)
    raw: bytes = request.content.read(limit + 1)
    if len(raw) > limit:
        raise HttpError(413, f"the body is larger than {limit} bytes")
    return raw


def read_json(request: IRequest, limit: int | None = None, empty: Any = ..., kind: type | None = dict) -> Any:
    """The body as JSON: 400 if it is not, or not of *kind* (None: any); *empty* stands for an empty body."""
    raw = read_body(request, limit)
    if not raw.strip() and empty is not ...:
        return empty
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise HttpError(400, f"the body is not JSON: {e}") from None
    if kind is not None and not isinstance(body, kind):
        raise HttpError(400, f"the body must be a JSON {'object' if kind is dict else kind.__name__}, "
                             f"not {type(body).__name__}")
    return body


def handler(method: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Make an ``async def route(self, request, **args)`` of a JsonApi answer through :meth:`JsonApi.answer`.

    Put it under Klein's ``@app.route(...)``.  The coroutine returns a JSON-able body (200),
    a :class:`Response`, or ``bytes`` already rendered.
    """

    def route(self: JsonApi, request: IRequest, *args: Any, **kwargs: Any) -> defer.Deferred[bytes]:
        return defer.ensureDeferred(self.answer(request, lambda: method(self, request, *args, **kwargs)))

    route.__name__ = method.__name__
    route.__qualname__ = method.__qualname__
    route.__doc__ = method.__doc__
    return route


class JsonApi:
    """A plugin's Klein app: one error mapping, and the wire format in overridable methods.

    Subclasses make their own app with ``app = JsonApi.klein()`` and decorate async methods
    with ``@app.route(...)`` then ``@handler``.  Override :meth:`error_body` (the shape of an
    error), :meth:`render` (how a body is written), :meth:`auth_error` and :meth:`data_error`
    (how those map to statuses), :meth:`routing_error` (unknown paths, other methods) and
    :meth:`before` (what runs before each route: by default a GET's read scope opens as its caller).
    """

    app: ClassVar[Klein]
    internal_error = "internal error (logged on the master)"
    """The message of a 500: the failure itself goes to the master's log, never to the client."""
    auth_challenge: ClassVar[bytes | None] = None
    """The ``WWW-Authenticate`` header of a 401, if the API sends one."""

    def __init__(self, ctx: PluginContext | Any) -> None:
        self.ctx = ctx if isinstance(ctx, PluginContext) else PluginContext.of(ctx)
        self.data = self.ctx.data
        self.auth = self.ctx.auth

    @staticmethod
    def klein() -> Klein:
        """A Klein app whose router errors (no such path, another method) answer through the API's error mapping."""
        app = Klein()

        def routing(self: JsonApi, request: IRequest, failure: Failure) -> bytes:
            # *self* is the API instance; Klein's error-method protocol names it so
            error = failure.value
            assert isinstance(error, HTTPException), error  # registered for HTTPException only
            return self.render_error(request, self.routing_error(request, error))

        app.handle_errors(HTTPException)(routing)
        return app

    def resource(self) -> Any:
        """The twisted.web resource to mount."""
        mounted = self.app.resource()
        limit = getattr(self, "max_body_bytes", None)
        if limit is not None:
            mounted.max_body_bytes = limit  # type: ignore[attr-defined]  # ours, read by master.www.httplimits
        return mounted

    # -- the wire format (override per API) -------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        """The JSON body of an error with *message*: ``{"error": message}`` unless the API says otherwise."""
        return {"error": message}

    def render(self, request: IRequest, body: Any, status: int = 200) -> bytes:
        """Write *body* as the API writes JSON (compact, ``application/json; charset=utf-8``)."""
        return json_body(request, body, status)

    def render_error(self, request: IRequest, error: HttpError) -> bytes:
        """Write *error*: its headers, and its body (a message goes through :meth:`error_body`)."""
        for name, value in error.headers.items():
            request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
        body = self.error_body(error.status, error.body) if isinstance(error.body, str) else error.body
        return self.render(request, body, error.status)

    # -- the error mapping ----------------------------------------------------------------------

    def auth_error(self, request: IRequest, error: AuthError) -> HttpError:
        """An AuthError's answer: its 401 or 403 and message (with ``auth_challenge`` on a 401)."""
        challenge = self.auth_challenge if error.status == 401 else None
        headers = {"WWW-Authenticate": challenge.decode()} if challenge else {}
        return HttpError(error.status, error.message, headers)

    def data_error(self, request: IRequest, error: DataError) -> HttpError:
        """A data API error's answer: 404 for what does not exist, 400 for bad input."""
        return HttpError(404 if isinstance(error, NotFound | InvalidPath) else 400, error.message)

    def routing_error(self, request: IRequest, error: HTTPException) -> HttpError:
        """No route for the path (404), or not for the method (405 with ``Allow``)."""
        allowed = sorted(getattr(error, "valid_methods", None) or ())
        if error.code == 405 and allowed:
            method = request.method.decode(errors="replace")
            return HttpError(405, f"method {method} is not allowed here; use {', '.join(allowed)}",
                             {"Allow": ", ".join(allowed)})
        if error.code == 404:
            return HttpError(404, f"no such path: {request.path.decode(errors='replace')}")
        return HttpError(error.code or 400, error.description or error.name)

    def before(self, request: IRequest) -> None:
        """Run before each route: a GET or HEAD reads as its caller under the master's read rules."""
        if request.method in (b"GET", b"HEAD"):
            self.auth.scope_reads(request)

    async def answer(self, request: IRequest, work: Callable[[], Awaitable[Any]]) -> bytes:
        """Run *work* and write what it returns, or the error it raises, in the API's wire format."""
        try:
            self.before(request)
            result = await work()
            if isinstance(result, bytes):
                return result
            if not isinstance(result, Response):
                return self.render(request, result)
            for name, value in result.headers.items():
                request.setHeader(name.encode("latin-1"), value.encode("latin-1"))
            if isinstance(result.body, bytes):
                request.setResponseCode(result.status)
                return result.body
            if result.body is None:
                request.setResponseCode(result.status)
                return b""
            return self.render(request, result.body, result.status)
        except defer.CancelledError:
            raise  # the client went away
        except Exception as e:  # noqa: BLE001 (the one place every route's failures are answered)
            return self.render_error(request, self.map_error(request, e))

    def by_method(self, request: IRequest, handlers: Mapping[bytes, Callable[[], Awaitable[Any]]]) -> Any:
        """Answer with the handler of the request's method, or 405 with ``Allow``.

        For routes taking every method (``methods=None``), which an API with a catch-all
        ``<path:...>`` route needs: the router would otherwise give the catch-all a method
        a named route does not take, instead of a 405.
        """
        work = handlers.get(request.method)
        if work is None:
            allow = ", ".join(method.decode() for method in handlers)
            method = request.method.decode(errors="replace")
            return self.render_error(request, HttpError(405, f"method {method} is not allowed here; use {allow}",
                                                        {"Allow": allow}))
        return defer.ensureDeferred(self.answer(request, work))

    def map_error(self, request: IRequest, error: Exception) -> HttpError:
        """The HttpError to answer for *error*; an unexpected one is logged (with its traceback) and a 500."""
        if isinstance(error, HttpError):
            return error
        if isinstance(error, AuthError):
            return self.auth_error(request, error)
        if isinstance(error, DataError):
            return self.data_error(request, error)
        log.failure("{api} {method} {uri} failed", Failure(error), api=type(self).__name__,
                    method=request.method, uri=request.uri)
        return HttpError(500, self.internal_error)


# -- tools -------------------------------------------------------------------------------------


@asynccontextmanager
async def open_data(db_url: str, plugin: Plugin) -> AsyncIterator[DataAPI]:
    """A data API on *db_url* with *plugin*'s resource types (its tables created or migrated), for a plugin's
    own command-line tools; storage is closed on exit.
    """
    from twisted.internet import threads

    from master.db import migrate
    from master.db.backends import make_storage

    schemas = migrate.plugin_schemas([plugin])
    if schemas:
        await threads.deferToThread(migrate.prepare_plugin_tables, db_url, schemas)
    storage = make_storage(db_url)
    await storage.start()
    try:
        data = DataAPI(storage)
        data.add_plugin(plugin)
        yield data
    finally:
        await storage.stop()
