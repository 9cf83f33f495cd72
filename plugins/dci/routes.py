"""The DCI API v1 routes (a Klein app mounted at ``/api/v1``) over the data API.

Reads go through ``data.get`` with a ResultSpec made from DCI's list parameters; writes go
through the ``dci_*`` update methods, called on their resource types
(``data.resource_type(Jobs)``).  Replies have DCI's shapes: lists as
``{"<plural>": [...], "_meta": {"count": N}}``, single items as ``{"<singular>": {...}}`` with
an ``ETag`` header, errors as ``{"status_code", "message", "payload"}``.  The keys of each
entity are those of the DCI server's replies (see ``TOPIC_KEYS``...).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, ValidationError

from master.sdk import (
    AuthError,
    Collection,
    DataError,
    Filter,
    HttpError,
    JsonApi,
    PluginContext,
    Response,
    read_body,
)
from plugins.dci.access import Identity, authenticate, reader
from plugins.dci.documents import (
    CLIENT_KEYS,
    COMPONENT_KEYS,
    FILE_KEYS,
    JOB_KEYS,
    JOBSTATE_KEYS,
    KV_KEYS,
    RESULT_KEYS,
    TEAM_KEYS,
    TOPIC_KEYS,
    created_job,
    embedded,
    file_document,
    identity_document,
    only,
)
from plugins.dci.embed import embed_jobs, parse_embed
from plugins.dci.errors import DciError, error_document, malformed, not_found, unauthorized
from plugins.dci.junit import parse_junit
from plugins.dci.query import list_spec
from plugins.dci.resources import JOB_STATUSES, Components, Files, JobKeyValues, Jobs, Jobstates, Teams, Topics

MAX_FILE_BYTES = 64 * 1024 * 1024
"""The largest file upload accepted (413 above)."""


def _body_limit(method: bytes, segments: list[bytes]) -> int | None:
    """File uploads (``POST /files``) take up to MAX_FILE_BYTES; other routes the site's ``www.max_body_bytes``.

    The web server refuses a larger body before it arrives (:mod:`master.www.httplimits`), and keeps
    one within the limit in a temporary file while it arrives.
    """
    return MAX_FILE_BYTES if method == b"POST" and [s for s in segments if s] == [b"files"] else None

_URL = re.compile(r"^https?://\S+$")


# -- request bodies ------------------------------------------------------------------------


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _check(name: str, value: Any, kind: str) -> str | None:
    """Why *value* is not of *kind*, or None if it is."""
    nullable = kind.endswith("?")
    kind = kind.rstrip("?")
    if value is None:
        return None if nullable else f"{name}: None is not of type '{kind}'"
    ok = {
        "string": isinstance(value, str),
        "uuid": _is_uuid(value),
        "uuids": isinstance(value, list) and all(_is_uuid(v) for v in value),
        "strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
        "object": isinstance(value, dict),
        "boolean": isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "url": isinstance(value, str) and (value == "" or bool(_URL.match(value))),
        "status": value in JOB_STATUSES,
        "state": value in ("active", "inactive"),
    }[kind]
    if ok:
        return None
    if kind == "status":
        return f"{name}: {value!r} is not one of {list(JOB_STATUSES)}"
    return f"{name}: {value!r} is not a valid '{kind}'"


def _has_nul(value: Any) -> bool:
    """Whether a string, or a string of a list, holds a NUL character."""
    texts = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return any(isinstance(text, str) and "\x00" in text for text in texts)


def check_body(body: Any, schema: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """*body* if it is an object whose fields are all in *schema* with the right types, else 400."""
    if not isinstance(body, dict):
        raise malformed("the body must be a JSON object")
    errors = [f"'{name}' is a required property" for name in required if name not in body]
    errors += [
        f"Additional properties are not allowed ('{name}' was unexpected)" for name in body if name not in schema
    ]
    errors += [msg for name, kind in schema.items() if name in body and (msg := _check(name, body[name], kind))]
    # text columns hold no NUL on PostgreSQL: refused alike on both backends (objects are JSON text: they may)
    errors += [f"{name}: must not contain a NUL character (\\u0000)" for name, value in body.items() if _has_nul(value)]
    if errors:
        raise DciError(400, "Request malformed", {"errors": errors, "error": errors[0]})
    return body


JOB_FIELDS = {
    "components": "uuids", "topic_id": "uuid", "comment": "string?", "name": "string?", "configuration": "string?",
    "url": "url?", "tags": "strings?", "data": "object?", "previous_job_id": "uuid?",
    "update_previous_job_id": "uuid?", "state": "state?", "pipeline_id": "uuid?", "remoteci_id": "uuid?",
    "team_id": "uuid?",
}
SCHEDULE_FIELDS = {**{k: v for k, v in JOB_FIELDS.items() if k != "components"}, "components_ids": "uuids"}
JOB_UPDATE_FIELDS = {
    "comment": "string?", "status": "status", "state": "state", "tags": "strings", "status_reason": "string?",
    "configuration": "string?", "name": "string?", "url": "url?",
}
_IGNORED_JOB_FIELDS = ("components", "components_ids", "topic_id", "pipeline_id", "remoteci_id", "team_id")


# -- routing -------------------------------------------------------------------------------


@dataclass
class Call:
    """One request being answered: who, the path arguments, the query and the raw body."""

    request: IRequest
    identity: Identity | None
    args: dict[str, str]
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def caller(self) -> Identity:
        """Who makes the request, on a route that needs someone (401 when nobody is authenticated)."""
        if self.identity is None:
            raise unauthorized()
        return self.identity

    def json(self) -> Any:
        """The body as JSON (400 if it is not)."""
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError as e:
            raise malformed(f"the body is not valid JSON: {e}") from None


def reply(status: int, body: Any = None, etag: str | None = None) -> Response:
    """A DCI answer: *status*, a JSON *body* (None: no body) and the entity's ``ETag``."""
    return Response(body, status, {"ETag": etag} if etag else {})


Handler = Callable[["DciApi", Call], Awaitable[Response]]


class DciId(BaseConverter):
    """A path segment naming a DCI entity: a UUID in any spelling Python reads, passed on in lower case."""

    def to_python(self, value: str) -> str:
        """The id, or no match (so the path is another route's, or a 404)."""
        if not _is_uuid(value):
            raise ValidationError()
        return value.lower()


KINDS = ("jobs", "topics", "components", "files", "jobstates", "remotecis", "teams", "feeders")
"""The first segments of DCI's entity routes: an unknown path below one is that entity "not found"."""


class DciApi(JsonApi):
    """The routes of DCI API v1 over the plugin's context; Basic auth users come from *users*."""

    app = JsonApi.klein()
    app.url_map.converters["dci_id"] = DciId
    app.url_map.strict_slashes = False
    routes: list[tuple[bytes, tuple[str, ...], Handler]] = []
    """Every route as (method, path segments with ``{id}`` arguments, handler)."""
    max_body_bytes = staticmethod(_body_limit)

    def __init__(self, ctx: PluginContext | Any, users: Any = None) -> None:
        super().__init__(ctx)
        self.users = users

    @classmethod
    def route(cls, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register a handler for *method* on *pattern* (``{name}`` segments are UUID arguments)."""

        def register(handler: Handler) -> Handler:
            segments = tuple(p for p in pattern.strip("/").split("/") if p)
            cls.routes.append((method.encode(), segments, handler))
            rule = "/" + "/".join(f"<dci_id:{p.strip('{}')}>" if p.startswith("{") else p for p in segments)

            def endpoint(api: DciApi, request: IRequest, **args: str) -> Any:
                return api.call(handler, request, args)

            cls.app.route(rule, methods=[method], endpoint=f"{method} {rule}")(endpoint)
            return handler

        return register

    def call(self, handler: Handler, request: IRequest, args: dict[str, str]) -> Any:
        """Authenticate the caller (but for DCI's banner), then run *handler*, through the one error mapping."""
        from twisted.internet import defer

        async def work() -> Response:
            body = read_body(request, MAX_FILE_BYTES)
            try:
                query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
            except UnicodeDecodeError:
                raise malformed("the query string is not valid UTF-8") from None
            identity = None
            if handler is not _root:
                identity = await authenticate(request, body, self.data, self.users)
                if request.method in (b"GET", b"HEAD"):
                    self.auth.scope_reads(request, reader(identity, self.users))
            return await handler(self, Call(request, identity, args, query, body))

        return defer.ensureDeferred(self.answer(request, work))

    # -- DCI's wire format ---------------------------------------------------------------------

    def before(self, request: IRequest) -> None:
        """Nothing: :meth:`call` authenticates first, then opens the read scope as the caller."""

    def error_body(self, status: int, message: str) -> Any:
        """``{"status_code", "message", "payload"}``."""
        return error_document(status, message)

    def render(self, request: IRequest, body: Any, status: int = 200) -> bytes:
        """Compact JSON, ``Content-Type: application/json``, as the DCI server writes it."""
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return orjson.dumps(body)

    def auth_error(self, request: IRequest, error: AuthError) -> HttpError:
        """A read the master's read rules refuse: DCI answers permission failures with 401."""
        return DciError(401, f"Operation not authorized: {error.message}")

    def data_error(self, request: IRequest, error: DataError) -> HttpError:
        """404 for a missing entity, else 400, with DCI's body."""
        found = super().data_error(request, error)
        return DciError(found.status, error.message)

    def routing_error(self, request: IRequest, error: HTTPException) -> HttpError:
        """No route: ``<entity> not found`` below an entity's path, else a 404 naming the path; 405 with ``Allow``."""
        segments = [s for s in request.path.decode("utf-8", "replace").split("/") if s]
        segments = segments[2:] if segments[:2] == ["api", "v1"] else segments
        allowed = sorted(getattr(error, "valid_methods", None) or ())
        if error.code == 405 and allowed:
            raised = DciError(405, f"method {request.method.decode(errors='replace')} is not allowed here")
            raised.headers["Allow"] = ", ".join(allowed)
            return raised
        if segments and segments[0] in KINDS:
            return not_found(segments[0].removesuffix("s"))
        return DciError(404, f"no such DCI API path: /{'/'.join(segments)}")

    # -- helpers used by the handlers --------------------------------------------------------

    async def list_of(
        self, path: tuple[str, ...], call: Call, plural: str, keys: tuple[str, ...], default_sort: str = "-created_at",
        extra: tuple[Filter, ...] = (),
    ) -> Response:
        """A DCI list of the collection at *path*, filtered, sorted and paged in SQL."""
        endpoint, _ = self.data.resolve(path)
        spec = list_spec(endpoint.rtype, call.query, keys, default_sort, extra)
        found: Collection = await self.data.get(path, spec)
        return reply(200, {plural: found.items, "_meta": {"count": found.total}})

    async def one(self, plural: str, entity_id: str, singular: str) -> dict[str, Any]:
        """The entity *entity_id* of type *plural*; 404 ``<singular> not found`` if missing or archived."""
        entity = await self.data.get((plural, entity_id))
        if entity is None or entity.get("state") == "archived":
            raise not_found(singular)
        return entity

    async def job_of(self, call: Call, job_id: str) -> dict[str, Any]:
        """The job, if the caller may see it (404 if missing, 401 if another team's)."""
        job = await self.one("dci_jobs", job_id, "job")
        if not call.caller.in_team(job["team_id"]):
            raise unauthorized()
        return job

    @staticmethod
    def team_filter(call: Call, nullable: bool = False) -> tuple[Filter, ...]:
        """Restrict a list to the caller's teams (and to no team at all if *nullable*); none for admins."""
        if call.caller.is_admin:
            return ()
        values = (*call.caller.teams, *((None,) if nullable else ()))
        return (Filter("team_id", "in", values or ("",)),)

    @staticmethod
    def require_admin(call: Call, *kinds: str) -> None:
        """401 unless the caller is an administrator or one of *kinds*."""
        if not (call.caller.is_admin or call.caller.kind in kinds):
            raise unauthorized()


route = DciApi.route


@route("GET", "/")
async def _root(api: DciApi, call: Call) -> Response:
    return reply(200, {"_status": "OK", "message": "Distributed CI."})


@route("GET", "/identity")
async def _identity(api: DciApi, call: Call) -> Response:
    who = call.caller
    return reply(200, {"identity": identity_document(who.kind, who.id, who.name, who.teams)})


# -- topics and components -----------------------------------------------------------------


@route("GET", "/topics")
async def _topics(api: DciApi, call: Call) -> Response:
    return await api.list_of(("dci_topics",), call, "topics", TOPIC_KEYS)


@route("GET", "/topics/{id}")
async def _topic(api: DciApi, call: Call) -> Response:
    topic = await api.one("dci_topics", call.args["id"], "topic")
    return reply(200, {"topic": only(topic, TOPIC_KEYS)}, topic["etag"])


@route("POST", "/topics")
async def _create_topic(api: DciApi, call: Call) -> Response:
    api.require_admin(call)
    body = check_body(call.json(), {
        "name": "string", "component_types": "strings?", "product_id": "uuid?", "export_control": "boolean?",
        "data": "object?", "state": "state?", "next_topic_id": "uuid?", "next_topic": "string?",
    }, ("name",))
    body.pop("next_topic", None)
    body = {key: value for key, value in body.items() if value is not None}
    topic = await api.data.resource_type(Topics).dci_create_topic(
        body.pop("name"), body.pop("component_types", []), **body
    )
    return reply(201, {"topic": only(topic, TOPIC_KEYS)}, topic["etag"])


@route("GET", "/topics/{id}/components")
async def _topic_components(api: DciApi, call: Call) -> Response:
    await api.one("dci_topics", call.args["id"], "topic")
    path = ("dci_topics", call.args["id"], "dci_components")
    return await api.list_of(path, call, "components", COMPONENT_KEYS, "-released_at", api.team_filter(call, True))


@route("GET", "/components")
async def _components(api: DciApi, call: Call) -> Response:
    return await api.list_of(("dci_components",), call, "components", COMPONENT_KEYS, "-released_at",
                             api.team_filter(call, True))


@route("GET", "/components/{id}")
async def _component(api: DciApi, call: Call) -> Response:
    component = await api.one("dci_components", call.args["id"], "component")
    if component["team_id"] is not None and not call.caller.in_team(component["team_id"]):
        raise unauthorized()
    return reply(200, {"component": only(component, COMPONENT_KEYS)}, component["etag"])


@route("POST", "/components")
async def _create_component(api: DciApi, call: Call) -> Response:
    api.require_admin(call, "feeder")
    body = check_body(call.json(), {
        "name": "string", "display_name": "string", "version": "string?", "type": "string", "topic_id": "uuid",
        "canonical_project_name": "string?", "title": "string?", "message": "string?", "url": "string?",
        "data": "object?", "tags": "strings?", "team_id": "uuid?", "state": "state?", "released_at": "string?",
    }, ("type", "topic_id"))
    name = body.pop("name", None) or body.pop("display_name", None)
    body.pop("display_name", None)
    if not name:
        raise malformed("'name' is a required property")
    if body.get("team_id") and not call.caller.in_team(body["team_id"]):
        raise unauthorized()
    values = {key: value for key, value in body.items() if value is not None}
    components = api.data.resource_type(Components)
    component = await components.dci_create_component(values.pop("topic_id"), name, values.pop("type"), **values)
    return reply(201, {"component": only(component, COMPONENT_KEYS)}, component["etag"])


# -- jobs ------------------------------------------------------------------------------------


def _job_values(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in _IGNORED_JOB_FIELDS}


def _created_job(job: dict[str, Any], body: dict[str, Any]) -> Response:
    return reply(201, {"job": created_job(job, body)}, job["etag"])


def _new_job(
    call: Call, fields: dict[str, str], required: tuple[str, ...]
) -> tuple[dict[str, Any], str | None, str | None]:
    """The body of a job a remoteci creates, and the client's user agent and version headers."""
    body = check_body(call.json(), fields, required)
    if call.caller.kind != "remoteci":
        raise DciError(400, "Only remoteci can create job")
    agent = call.request.getHeader(b"user-agent")
    version = call.request.getHeader(b"client-version")
    return body, agent.decode("latin-1") if agent else None, version.decode("latin-1") if version else None


def _remoteci(call: Call) -> dict[str, Any]:
    """The remoteci entity of the caller, which :func:`_new_job` has checked is a remoteci."""
    entity = call.caller.entity
    if entity is None:
        raise DciError(400, "Only remoteci can create job")
    return entity


@route("POST", "/jobs")
async def _create_job(api: DciApi, call: Call) -> Response:
    body, agent, version = _new_job(call, JOB_FIELDS, ("components",))
    job = await api.data.resource_type(Jobs).dci_create_job(
        _remoteci(call), body.get("topic_id"), body["components"], _job_values(body), agent, version
    )
    return _created_job(job, body)


@route("POST", "/jobs/schedule")
async def _schedule_job(api: DciApi, call: Call) -> Response:
    body, agent, version = _new_job(call, SCHEDULE_FIELDS, ("topic_id",))
    job = await api.data.resource_type(Jobs).dci_schedule_job(
        _remoteci(call), body["topic_id"], body.get("components_ids", []), _job_values(body), agent, version
    )
    return _created_job(job, body)


@route("GET", "/jobs")
async def _jobs(api: DciApi, call: Call) -> Response:
    names = parse_embed(call.query)
    listing = await api.list_of(("dci_jobs",), call, "jobs", JOB_KEYS, extra=api.team_filter(call))
    await embed_jobs(api.data, listing.body["jobs"], names, embedded)
    return listing


@route("GET", "/jobs/{id}")
async def _job(api: DciApi, call: Call) -> Response:
    names = parse_embed(call.query)
    job = await api.job_of(call, call.args["id"])
    body = only(job, JOB_KEYS)
    everything = {"field": [], "limit": ["200"]}
    components = await api.data.get(("dci_jobs", job["id"], "dci_components"), query={**everything, "order": ["type"]})
    results = await api.data.get(("dci_jobs", job["id"], "dci_results"), query={**everything, "order": ["created_at"]})
    kvs = await api.data.get(("dci_jobs", job["id"], "dci_kv"), query={**everything, "order": ["key"]})
    body["components"] = [only(c, COMPONENT_KEYS) for c in components.items]
    body["results"] = [only(r, RESULT_KEYS) for r in results.items]
    body["keys_values"] = [only(kv, KV_KEYS) for kv in kvs.items]
    await embed_jobs(api.data, [body], [name for name in names if name not in body], embedded)
    return reply(200, {"job": body}, job["etag"])


def _if_match(call: Call) -> str:
    etag = call.request.getHeader(b"if-match")
    if not etag:
        raise DciError(412, "'If-match' header must be provided")
    return etag.decode("latin-1").strip().strip('"')


@route("PUT", "/jobs/{id}")
async def _update_job(api: DciApi, call: Call) -> Response:
    etag = _if_match(call)
    body = check_body(call.json(), JOB_UPDATE_FIELDS)
    await api.job_of(call, call.args["id"])
    job = await api.data.resource_type(Jobs).dci_update_job(call.args["id"], etag, body)
    return reply(200, {"job": only(job, JOB_KEYS)}, job["etag"])


@route("DELETE", "/jobs/{id}")
async def _delete_job(api: DciApi, call: Call) -> Response:
    etag = _if_match(call)
    await api.job_of(call, call.args["id"])
    await api.data.resource_type(Jobs).dci_archive_job(call.args["id"], etag)
    return reply(204)


def _job_list(plural: str, keys: tuple[str, ...]) -> None:
    """``GET /jobs/{id}/<plural>``: a job's *plural*, if the caller may see the job."""

    async def listing(api: DciApi, call: Call) -> Response:
        await api.job_of(call, call.args["id"])
        return await api.list_of(("dci_jobs", call.args["id"], f"dci_{plural}"), call, plural, keys)

    route("GET", f"/jobs/{{id}}/{plural}")(listing)


_job_list("components", COMPONENT_KEYS)
_job_list("jobstates", JOBSTATE_KEYS)
_job_list("results", RESULT_KEYS)


@route("GET", "/jobs/{id}/files")
async def _job_files(api: DciApi, call: Call) -> Response:
    await api.job_of(call, call.args["id"])
    listing = await api.list_of(("dci_jobs", call.args["id"], "dci_files"), call, "files", FILE_KEYS)
    listing.body["files"] = [file_document(f) for f in listing.body["files"]]
    return listing


@route("POST", "/jobs/{id}/kv")
async def _add_kv(api: DciApi, call: Call) -> Response:
    body = check_body(call.json(), {"key": "string", "value": "number"}, ("key", "value"))
    await api.job_of(call, call.args["id"])
    kv = await api.data.resource_type(JobKeyValues).dci_set_job_kv(call.args["id"], body["key"], float(body["value"]))
    return reply(201, {"kv": only(kv, KV_KEYS)})


@route("GET", "/jobs/{id}/kv")
async def _job_kv(api: DciApi, call: Call) -> Response:
    await api.job_of(call, call.args["id"])
    return await api.list_of(("dci_jobs", call.args["id"], "dci_kv"), call, "kvs", KV_KEYS, "key")


# -- jobstates and files ---------------------------------------------------------------------


@route("POST", "/jobstates")
async def _create_jobstate(api: DciApi, call: Call) -> Response:
    body = check_body(call.json(), {"job_id": "uuid", "status": "status", "comment": "string?"}, ("job_id", "status"))
    job = await api.job_of(call, body["job_id"].lower())
    jobstate = await api.data.resource_type(Jobstates).dci_add_jobstate(job["id"], body["status"], body.get("comment"))
    return reply(201, {"jobstate": only(jobstate, JOBSTATE_KEYS)})


@route("GET", "/jobstates/{id}")
async def _jobstate(api: DciApi, call: Call) -> Response:
    jobstate = await api.data.get(("dci_jobstates", call.args["id"]))
    if jobstate is None:
        raise not_found("jobstate")
    await api.job_of(call, jobstate["job_id"])
    return reply(200, {"jobstate": only(jobstate, JOBSTATE_KEYS)})


def _dci_headers(call: Call) -> dict[str, str]:
    """The request's ``DCI-*`` headers, named as the DCI server names them (``DCI-JOB-ID`` -> ``job_id``)."""
    found = {}
    for name, values in call.request.requestHeaders.getAllRawHeaders():
        lowered = name.decode("latin-1").lower()
        if lowered.startswith("dci-"):
            found[lowered.removeprefix("dci-").replace("-", "_")] = values[-1].decode("utf-8", "replace")
    return found


@route("POST", "/files")
async def _create_file(api: DciApi, call: Call) -> Response:
    headers = _dci_headers(call)
    job_id, jobstate_id = headers.get("job_id"), headers.get("jobstate_id")
    if not job_id and not jobstate_id:
        raise DciError(400, "HTTP headers DCI-JOBSTATE-ID or DCI-JOB-ID must be specified")
    if not headers.get("name"):
        raise DciError(400, "HTTP header DCI-NAME must be specified")
    for header, value in (("DCI-JOB-ID", job_id), ("DCI-JOBSTATE-ID", jobstate_id)):
        if value and not _is_uuid(value):
            raise DciError(400, f"HTTP header {header}: {value!r} is not a UUID")
    if jobstate_id:
        jobstate = await api.data.get(("dci_jobstates", jobstate_id.lower()))
        if jobstate is None:
            raise not_found("jobstate")
        job_id = jobstate["job_id"]
    assert job_id  # the header's (checked above), or the jobstate's
    job = await api.job_of(call, job_id.lower())
    mime = headers.get("mime")
    # the body is the file, whatever the Content-Type says: never decoded as JSON
    junit = parse_junit(call.body) if mime == "application/junit" else None
    entity = await api.data.resource_type(Files).dci_add_file(
        job, jobstate_id.lower() if jobstate_id else None, headers["name"], mime, call.body, junit
    )
    return reply(201, {"file": file_document(entity)})


@route("GET", "/files/{id}")
async def _file(api: DciApi, call: Call) -> Response:
    entity = await api.one("dci_files", call.args["id"], "file")
    await api.job_of(call, entity["job_id"])
    return reply(200, {"file": file_document(entity)}, entity["etag"])


@route("GET", "/files/{id}/content")
async def _file_content(api: DciApi, call: Call) -> Response:
    entity = await api.one("dci_files", call.args["id"], "file")
    await api.job_of(call, entity["job_id"])
    raw = await api.data.get(("dci_files", entity["id"], "content"))
    body = b"".join([chunk async for chunk in raw.chunks])
    return Response(body, 200, {"Content-Type": raw.content_type or "application/octet-stream"})


# -- teams, remotecis, feeders ---------------------------------------------------------------


@route("GET", "/teams")
async def _teams(api: DciApi, call: Call) -> Response:
    extra = () if call.caller.is_admin else (Filter("id", "in", tuple(call.caller.teams) or ("",)),)
    return await api.list_of(("dci_teams",), call, "teams", TEAM_KEYS, extra=extra)


@route("POST", "/teams")
async def _create_team(api: DciApi, call: Call) -> Response:
    api.require_admin(call)
    body = check_body(call.json(), {"name": "string", "country": "string?", "state": "state?",
                                    "has_pre_release_access": "boolean?", "external": "boolean?"}, ("name",))
    existing = await api.data.get("dci_teams", query={"name": [body["name"]]})
    if existing.items:
        raise DciError(409, "We are unable to create this resource. A similar resource already exists.")
    team = await api.data.resource_type(Teams).dci_find_or_create_team(body["name"])
    return reply(201, {"team": only(team, TEAM_KEYS)}, team["etag"])


def _client_routes(kind: str, plural: str) -> None:
    rtype = f"dci_{plural}"

    async def listing(api: DciApi, call: Call) -> Response:
        return await api.list_of((rtype,), call, plural, CLIENT_KEYS, extra=api.team_filter(call))

    async def show(api: DciApi, call: Call) -> Response:
        entity = await api.one(rtype, call.args["id"], kind)
        if not call.caller.in_team(entity["team_id"]):
            raise unauthorized()
        return reply(200, {kind: only(entity, CLIENT_KEYS)}, entity["etag"])

    async def create(api: DciApi, call: Call) -> Response:
        api.require_admin(call)
        body = check_body(call.json(), {"name": "string", "team_id": "uuid", "data": "object?", "state": "state?"},
                          ("name", "team_id"))
        if await api.data.get(("dci_teams", body["team_id"].lower())) is None:
            raise not_found("team")
        entity, secret = await getattr(api.data.updates, f"dci_create_{kind}")(body["name"], body["team_id"].lower())
        # the secret is shown once, to whoever made the client
        return reply(201, {kind: {**only(entity, CLIENT_KEYS), "api_secret": secret}}, entity["etag"])

    route("GET", f"/{plural}")(listing)
    route("GET", f"/{plural}/{{id}}")(show)
    route("POST", f"/{plural}")(create)


_client_routes("remoteci", "remotecis")
_client_routes("feeder", "feeders")
