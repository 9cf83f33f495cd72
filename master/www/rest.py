"""REST: GET paths to data API getters, POST to JSON-RPC actions, all answered in JSON.

Routes (Klein, mounted at ``/api/v2``; ``/api`` itself lists the versions mounted under it, so plugins can
serve other versions beside it, e.g. ``/api/v1``):  ``/api/v2`` lists the root collections and every
endpoint pattern; ``/api/v2/openapi.json`` describes the API; ``/api/v2/<path>`` reads
(GET, HEAD) or controls (POST, JSON-RPC 2.0).  Status codes: 400 bad query, 404 unknown
path or resource, 405 other methods, and POST where the endpoint has no action (with ``Allow``),
503 (with ``Retry-After``) while the database is unreachable, 500 only for a fault of ours, with no
detail in the body (it is logged).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.iweb import IRequest
from zope.interface import implementer

from master.data.base import Collection, Kind, RawContent
from master.data.connector import DataAPI
from master.data.errors import DataError, InvalidPath, InvalidQuery, NotFound
from master.data.openapi import application_spec, openapi_document
from master.db.interfaces import DatabaseUnavailable
from master.metrics import note_route
from master.www import jsonrpc
from master.www.auth import Authenticator, AuthError
from master.www.conditional import json_conditional, next_link
from master.www.ranges import parse_range, path_segments
from master.www.responses import database_available, json_error, json_routing_errors, unavailable_error
from master.www.site import NotFoundResource
from master.www.transport import streaming

log = Logger()

API_PREFIX = b"/api/v2/"

_PLAIN_PATH = re.compile(rb"[A-Za-z0-9._~!$&'()*+,;=:@-]+(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]+)*")
"""A path after ``/api/v2/`` that Klein's router would take as it is: non-empty segments without
%-escapes, separators or controls, and no trailing slash (reads of such paths skip the router)."""

_KLEIN_ROUTES = frozenset({b"openapi.json", b"application.spec"})
"""The reads Klein serves by a route of their own (``/api/v2/`` itself is never plain)."""

ALLOW = b"GET, HEAD, POST, OPTIONS"
READ_ONLY_ALLOW = b"GET, HEAD, OPTIONS"
"""What an endpoint without actions takes: a POST there is a 405, not a JSON-RPC error."""


def query_args(request: IRequest) -> dict[str, list[str]]:
    """The query string as ``{name: [values]}``, decoded as UTF-8 (InvalidQuery otherwise)."""
    try:
        return {key.decode(): [v.decode() for v in values] for key, values in request.args.items()}
    except UnicodeDecodeError:
        raise InvalidQuery("the query string is not valid UTF-8") from None


@implementer(IPushProducer)
class _Pacer:
    """Lets a streaming response wait while the client's socket buffer is full."""

    def __init__(self) -> None:
        self._resumed: defer.Deferred[None] | None = None

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted's interface)
        if self._resumed is None:
            self._resumed = defer.Deferred()

    def resumeProducing(self) -> None:  # noqa: N802
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.callback(None)

    def stopProducing(self) -> None:  # noqa: N802
        self.resumeProducing()

    async def ready(self) -> None:
        if self._resumed is not None:
            await self._resumed


class ApiVersions(resource.Resource):
    """``/api``: lists the API versions mounted under it (``v2`` here, others from plugins)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def getChildWithDefault(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802
        """A version's root without its slash (``/api/v2``) is served as ``/api/v2/``, not redirected."""
        if path in self.children and not request.postpath:
            request.postpath.append(b"")
        child: resource.Resource = super().getChildWithDefault(path, request)  # Twisted's has no annotations
        return child

    def getChild(self, path: bytes, request: IRequest) -> resource.Resource:  # noqa: N802 (Twisted's name)
        """Unknown versions get a JSON 404."""
        return NotFoundResource()

    def render_GET(self, request: IRequest) -> bytes:  # noqa: N802
        """The versions served and where."""
        versions = {name.decode(): f"{self.base_url}api/{name.decode()}" for name in sorted(self.children)}
        return json_conditional(request, {"api_versions": versions})

    render_HEAD = render_GET  # noqa: N815


class RestApi:
    """The REST and JSON-RPC routes over one DataAPI."""

    app = json_routing_errors(Klein())

    def __init__(
        self, data: DataAPI, base_url: str = "http://127.0.0.1:8010/", auth: Authenticator | None = None
    ) -> None:
        self.data = data
        self.auth = auth
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"

    def resource(self) -> Any:
        """The twisted.web resource to mount at ``/api``: the version list, with these routes at ``v2``."""
        api = ApiVersions(self.base_url)
        api.putChild(b"v2", _ReadFirst(self, self.app.resource()))
        return api

    @app.route("/", methods=["GET", "HEAD"])
    def root(self, request: IRequest) -> bytes:
        """The root collections and every endpoint pattern, so the API can be explored."""
        links = [{"name": name} for name in self.data.root_links()]
        endpoints = [
            {"path": e.pattern, "kind": e.kind.value, "type": e.rtype.plural, "actions": sorted(e.actions)}
            for e in self.data.endpoints()
        ]
        return json_conditional(request, {"rootlinks": links, "endpoints": endpoints, "meta": {"total": len(links)}})

    @app.route("/openapi.json", methods=["GET", "HEAD"])
    def openapi(self, request: IRequest) -> bytes:
        """The OpenAPI 3 document generated from the registry."""
        return json_conditional(request, openapi_document(self.data, f"{self.base_url}api/v2"))

    @app.route("/application.spec", methods=["GET", "HEAD"])
    def spec(self, request: IRequest) -> bytes:
        """Every endpoint with its fields, in the shape Buildbot's web UI shows on its About page."""
        return json_conditional(request, application_spec(self.data))

    @app.route("/<path:path>", methods=None)
    def dispatch(self, request: IRequest, path: str) -> Any:
        """GET/HEAD read, POST controls, OPTIONS answers what is allowed; anything else is 405."""
        method = request.method
        if method in (b"GET", b"HEAD"):
            # split the path as received, so that an encoded slash (%2F) stays in its segment
            segments = path_segments(request.path, API_PREFIX)
            return defer.ensureDeferred(self._get(request, path, path if segments is None else segments))
        allow = self._allow(path)
        if method == b"POST":
            if allow is READ_ONLY_ALLOW:
                request.setHeader(b"Allow", allow)
                return jsonrpc.read_only(request, path)
            return defer.ensureDeferred(jsonrpc.handle(self.data, request, path, self.auth))
        if method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"Allow", allow)
            return b""
        request.setHeader(b"Allow", allow)
        return json_error(request, 405, f"method {method.decode(errors='replace')} is not allowed; use GET or POST")

    def _allow(self, path: str) -> bytes:
        """The methods *path* takes: POST only where its endpoint has actions (all, for unknown paths)."""
        try:
            endpoint, _ = self.data.resolve(path)
        except DataError:
            return ALLOW  # a POST gets JSON-RPC's 404, other methods a 405
        return ALLOW if endpoint.actions else READ_ONLY_ALLOW

    async def _get(self, request: IRequest, path: str, segments: str | tuple[str, ...]) -> bytes | None:
        """Answer a read of *path* (as routed), given as *segments* (as received); None once streamed."""
        if not database_available(self.data.storage):
            return unavailable_error(request)  # at once: not after the storage's retry window
        try:
            endpoint, args = self.data.resolve(segments)
            note_route(request, endpoint.pattern)
            if self.auth is not None and self.auth.restricts_reads:
                self.auth.authorize_read(self.auth.authenticate(request), endpoint.rtype.plural)
            query = query_args(request)
            spec = self.data.parse_spec(endpoint, query)
            result = await self.data.get_resolved(endpoint, args, spec, segments)
        except (InvalidPath, NotFound) as e:
            return json_error(request, 404, e.message)
        except DataError as e:
            return json_error(request, 400, e.message)
        except AuthError as e:
            if e.status == 401:
                request.setHeader(b"WWW-Authenticate", b'Bearer realm="ci-master"')
            return json_error(request, e.status, e.message)
        except DatabaseUnavailable:
            return unavailable_error(request)
        except defer.CancelledError:
            raise  # the client went away: nothing to answer, nothing to log
        except Exception:
            if not database_available(self.data.storage):
                return unavailable_error(request)  # it went away during the request
            log.failure("GET /api/v2/{path} failed", path=path)
            return json_error(request, 500, "internal error (logged on the master)")
        rtype = endpoint.rtype
        if endpoint.kind is Kind.RAW:
            return await self._stream(request, result)
        if isinstance(result, Collection):
            meta: dict[str, Any] = {"total": result.total}
            if result.total_is_lower_bound:
                meta["total_is_lower_bound"] = True
            if result.last_id is not None and len(result.items) == spec.limit:
                link = next_link(f"{self.base_url}api/v2/", path, query, rtype.id_field, spec.order, result.last_id)
                if link is not None:
                    request.setHeader(b"Link", f'<{link}>; rel="next"'.encode())
            return json_conditional(request, {rtype.plural: result.items, "meta": meta})
        if result is None:
            return json_error(request, 404, f"not found: {path.strip('/')}")
        return json_conditional(request, {rtype.plural: [result], "meta": {}})

    async def _stream(self, request: IRequest, raw: RawContent) -> bytes | None:
        chunks, length = raw.chunks, raw.length
        if raw.read_range is not None and length is not None:
            request.setHeader(b"Accept-Ranges", b"bytes")
            etag = f'"{raw.etag}"' if raw.etag else None
            if etag:
                request.setHeader(b"ETag", etag.encode())
            wanted, if_range = (
                (value or b"").decode("latin-1") or None for value in (request.getHeader(b"range"),
                                                                       request.getHeader(b"if-range"))
            )
            if wanted is not None and (if_range is None or if_range.strip() == etag):
                asked = parse_range(wanted, length)
                if isinstance(asked, str):  # UNSATISFIABLE, the only text parse_range returns
                    request.setHeader(b"Content-Range", f"bytes */{length}".encode())
                    return json_error(request, 416, f"range {wanted!r} is outside the content ({length} bytes)")
                if asked is not None:
                    start, end = asked
                    request.setResponseCode(206)
                    request.setHeader(b"Content-Range", f"bytes {start}-{end - 1}/{length}".encode())
                    chunks, length = raw.read_range(start, end), end - start
        request.setHeader(b"Content-Type", raw.content_type.encode())
        if raw.filename:
            # filename= for clients that read only it (curl -J), filename*= for names beyond ASCII
            plain = raw.filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
            name = quote(raw.filename)
            request.setHeader(
                b"Content-Disposition", f"attachment; filename=\"{plain}\"; filename*=UTF-8''{name}".encode()
            )
        if length is not None:
            request.setHeader(b"Content-Length", str(length).encode())
        if request.method == b"HEAD":
            return None
        gone: list[object] = []
        streamed = streaming(request)
        streamed.notifyFinish().addBoth(gone.append)
        pacer = _Pacer()
        streamed.registerProducer(pacer, True)
        try:
            async for chunk in chunks:
                if gone:
                    break
                request.write(chunk)
                await pacer.ready()
        except Exception:
            # headers are gone already: all we can do is cut the response short
            log.failure("streaming {uri} failed", uri=request.uri)
        finally:
            streamed.unregisterProducer()
        return None  # Klein finishes the request


class _ReadFirst(resource.Resource):
    """``/api/v2``: a GET or HEAD of a plain path goes straight to :meth:`RestApi._get`, the rest through Klein.

    Klein's router (werkzeug) costs about as much CPU as a whole read of a single build: a
    read of a path it would route to :meth:`RestApi.dispatch` as it is (``_PLAIN_PATH``) is
    answered here with the same code, the same cancellation when the client hangs up, and the
    same fault handling; every other request (POST, OPTIONS, the root, the OpenAPI document,
    paths with escapes or empty segments) keeps the Klein routes.
    """

    isLeaf = True

    def __init__(self, api: RestApi, routes: resource.Resource) -> None:
        super().__init__()
        self.api = api
        self.routes = routes

    def render(self, request: server.Request) -> Any:
        """Serve a plain read here, anything else through the Klein routes."""
        raw = request.path
        if (
            request.method not in (b"GET", b"HEAD")
            or not raw.startswith(API_PREFIX)
            or _PLAIN_PATH.fullmatch(raw, len(API_PREFIX)) is None
            or raw[len(API_PREFIX):] in _KLEIN_ROUTES
        ):
            return self.routes.render(request)
        path = raw[len(API_PREFIX):].decode("ascii")
        answer = defer.ensureDeferred(self.api._get(request, path, tuple(path.split("/"))))
        finished: list[bool] = []

        def write(body: bytes | None) -> None:
            if body is not None:
                request.write(body)
            if not finished:
                request.finish()

        if answer.called and not isinstance(answer.result, Failure):
            # answered at once (a SQLite read on the reactor thread): written now, no hang-up to watch for
            answer.addCallback(write)
            return server.NOT_DONE_YET

        def gone(result: object) -> object:
            finished.append(True)
            if isinstance(result, Failure):
                answer.cancel()  # the client hung up: stop the read, as Klein does
            return None

        def failed(failure: Failure) -> None:
            if not finished:
                request.processingFailed(failure)  # a JSON 500, logged (CorsRequest)
            elif not failure.check(defer.CancelledError):
                log.failure("GET {uri} failed after the client went away", failure=failure, uri=request.uri)

        request.notifyFinish().addBoth(gone)
        answer.addCallbacks(write, failed)
        return server.NOT_DONE_YET
