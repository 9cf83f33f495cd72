"""The DCI API v1 routes (a Klein app mounted at ``/api/v1``) over the data API.

Reads go through ``data.get`` with a ResultSpec made from DCI's list parameters; writes go
through the ``data.updates.dci_*`` update methods.  Replies have DCI's shapes: lists as
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
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from master.data.base import Collection
from master.data.errors import DataError, InvalidPath, NotFound
from master.data.resultspec import Filter
from master.www.auth import AuthError, UserStore, scope_plugin_reads
from master.www.responses import json_routing_errors
from plugins.dci.auth import Identity, authenticate, reader
from plugins.dci.embed import embed_jobs, parse_embed
from plugins.dci.errors import DciError, malformed, not_found, unauthorized
from plugins.dci.junit import parse_junit
from plugins.dci.query import list_spec
from plugins.dci.resources import JOB_STATUSES

log = Logger()

IDENTITY_KEYS = ("email", "etag", "fullname", "id", "name", "teams", "timezone")
TOPIC_KEYS = ("component_types", "created_at", "data", "etag", "export_control", "id", "name", "next_topic_id",
              "product_id", "state", "updated_at")
COMPONENT_KEYS = ("canonical_project_name", "created_at", "data", "etag", "id", "message", "name", "state", "title",
                  "topic_id", "type", "updated_at", "url")
JOB_CREATED_KEYS = ("client_version", "comment", "created_at", "duration", "etag", "id", "previous_job_id",
                    "product_id", "remoteci_id", "state", "status", "team_id", "topic_id", "topic_id_secondary",
                    "update_previous_job_id", "updated_at", "user_agent")
JOB_KEYS = (*JOB_CREATED_KEYS, "name", "configuration", "url", "tags", "data", "status_reason")
JOBSTATE_KEYS = ("comment", "created_at", "id", "job_id", "status")
FILE_KEYS = ("created_at", "etag", "id", "job_id", "jobstate_id", "md5", "mime", "name", "size", "state", "team_id",
             "updated_at")
RESULT_KEYS = ("created_at", "errors", "failures", "file_id", "id", "job_id", "name", "regressions", "skips",
               "success", "successfixes", "time", "total", "updated_at")
TEAM_KEYS = ("created_at", "etag", "has_pre_release_access", "id", "name", "state", "updated_at")
CLIENT_KEYS = ("created_at", "data", "etag", "id", "name", "state", "team_id", "updated_at")
KV_KEYS = ("job_id", "key", "value")

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

    def json(self) -> Any:
        """The body as JSON (400 if it is not)."""
        try:
            return orjson.loads(self.body or b"{}")
        except orjson.JSONDecodeError as e:
            raise malformed(f"the body is not valid JSON: {e}") from None


@dataclass
class Reply:
    """What to answer: status, JSON body (None for no body) and an etag."""

    status: int
    body: Any = None
    etag: str | None = None
    raw: bytes | None = None
    content_type: str | None = None


Handler = Callable[["DciApi", Call], Awaitable[Reply]]


def _only(entity: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: entity[key] for key in keys}


def _file_json(entity: dict[str, Any]) -> dict[str, Any]:
    # the DCI server's file replies give the size as a string
    return {**_only(entity, FILE_KEYS), "size": str(entity["size"])}


class DciApi:
    """The routes of DCI API v1 over *data*; Basic auth users come from *users* (ci-master's users file)."""

    app = json_routing_errors(Klein())
    routes: list[tuple[bytes, tuple[str, ...], Handler]] = []

    def __init__(self, data: Any, users: UserStore | None) -> None:
        self.data = data
        self.users = users

    def resource(self) -> Any:
        """The twisted.web resource to mount at ``/api/v1``; file uploads may pass the site's body limit."""
        mounted = self.app.resource()
        mounted.max_body_bytes = _body_limit
        return mounted

    @classmethod
    def route(cls, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Register a handler for *method* on *pattern* (``{name}`` segments are UUID arguments)."""

        def register(handler: Handler) -> Handler:
            cls.routes.append((method.encode(), tuple(p for p in pattern.strip("/").split("/") if p), handler))
            return handler

        return register

    @app.route("/", methods=None)
    def dispatch_root(self, request: IRequest) -> Any:
        """``/api/v1/`` itself."""
        return defer.ensureDeferred(self._dispatch(request, ""))

    @app.route("/<path:path>", methods=None)
    def dispatch(self, request: IRequest, path: str) -> Any:
        """Every request: find its route, authenticate, run the handler, render the reply."""
        return defer.ensureDeferred(self._dispatch(request, path))

    def _match(self, method: bytes, segments: list[str]) -> tuple[Handler | None, dict[str, str], list[bytes]]:
        allowed: list[bytes] = []
        for route_method, pattern, handler in self.routes:
            if len(pattern) != len(segments):
                continue
            args = {}
            for part, segment in zip(pattern, segments, strict=True):
                if part.startswith("{"):
                    if not _is_uuid(segment):
                        break
                    args[part.strip("{}")] = segment.lower()
                elif part != segment:
                    break
            else:
                if route_method == method:
                    return handler, args, allowed
                allowed.append(route_method)
        return None, {}, allowed

    async def _dispatch(self, request: IRequest, path: str) -> bytes:
        segments = [s for s in path.split("/") if s]
        try:
            handler, args, allowed = self._match(request.method, segments)
            if handler is None:
                if allowed:
                    request.setHeader(b"Allow", b", ".join(sorted(set(allowed))))
                    raise DciError(405, f"method {request.method.decode(errors='replace')} is not allowed here")
                if segments and segments[0] in ("jobs", "topics", "components", "files", "jobstates", "remotecis",
                                                "teams", "feeders"):
                    raise not_found(segments[0].removesuffix("s"))
                raise DciError(404, f"no such DCI API path: /{'/'.join(segments)}")
            body = request.content.read(MAX_FILE_BYTES + 1) if request.content is not None else b""
            if len(body) > MAX_FILE_BYTES:
                raise DciError(413, f"the body is larger than {MAX_FILE_BYTES} bytes")
            try:
                query = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
            except UnicodeDecodeError:
                raise malformed("the query string is not valid UTF-8") from None
            identity = None
            if handler is not _root:
                identity = await authenticate(request, body, self.data, self.users)
                if request.method in (b"GET", b"HEAD"):
                    scope_plugin_reads(self.data, request, reader(identity, self.users))
            reply = await handler(self, Call(request, identity, args, query, body))
        except DciError as e:
            reply = Reply(e.status, e.to_json())
        except AuthError as e:
            # a read the master's read rules refuse: DCI answers permission failures with 401
            reply = Reply(401, DciError(401, f"Operation not authorized: {e.message}").to_json())
        except (InvalidPath, NotFound) as e:
            reply = Reply(404, DciError(404, e.message).to_json())
        except DataError as e:
            reply = Reply(400, DciError(400, e.message).to_json())
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("DCI {method} {uri} failed", method=request.method, uri=request.uri)
            reply = Reply(500, DciError(500, "internal error (logged on the master)").to_json())
        return self._render(request, reply)

    @staticmethod
    def _render(request: IRequest, reply: Reply) -> bytes:
        request.setResponseCode(reply.status)
        if reply.etag:
            request.setHeader(b"ETag", reply.etag.encode())
        if reply.raw is not None:
            request.setHeader(b"Content-Type", (reply.content_type or "application/octet-stream").encode())
            return reply.raw
        if reply.body is None:
            return b""
        request.setHeader(b"Content-Type", b"application/json")
        return orjson.dumps(reply.body)

    # -- helpers used by the handlers --------------------------------------------------------

    async def list_of(
        self, path: tuple[str, ...], call: Call, plural: str, keys: tuple[str, ...], default_sort: str = "-created_at",
        extra: tuple[Filter, ...] = (),
    ) -> Reply:
        """A DCI list of the collection at *path*, filtered, sorted and paged in SQL."""
        endpoint, _ = self.data.resolve(path)
        spec = list_spec(endpoint.rtype, call.query, keys, default_sort, extra)
        found: Collection = await self.data.get(path, spec)
        return Reply(200, {plural: found.items, "_meta": {"count": found.total}})

    async def one(self, plural: str, entity_id: str, singular: str) -> dict[str, Any]:
        """The entity *entity_id* of type *plural*; 404 ``<singular> not found`` if missing or archived."""
        entity = await self.data.get((plural, entity_id))
        if entity is None or entity.get("state") == "archived":
            raise not_found(singular)
        return entity

    async def job_of(self, call: Call, job_id: str) -> dict[str, Any]:
        """The job, if the caller may see it (404 if missing, 401 if another team's)."""
        job = await self.one("dci_jobs", job_id, "job")
        if not call.identity.in_team(job["team_id"]):
            raise unauthorized()
        return job

    @staticmethod
    def team_filter(call: Call, nullable: bool = False) -> tuple[Filter, ...]:
        """Restrict a list to the caller's teams (and to no team at all if *nullable*); none for admins."""
        if call.identity.is_admin:
            return ()
        values = (*call.identity.teams, *((None,) if nullable else ()))
        return (Filter("team_id", "in", values or ("",)),)

    @staticmethod
    def require_admin(call: Call, *kinds: str) -> None:
        """401 unless the caller is an administrator or one of *kinds*."""
        if not (call.identity.is_admin or call.identity.kind in kinds):
            raise unauthorized()


route = DciApi.route


@route("GET", "/")
async def _root(api: DciApi, call: Call) -> Reply:
    return Reply(200, {"_status": "OK", "message": "Distributed CI."})


@route("GET", "/identity")
async def _identity(api: DciApi, call: Call) -> Reply:
    who = call.identity
    teams = {team_id: {"team_name": team["name"]} for team_id, team in who.teams.items()}
    body = {"email": None, "etag": None, "fullname": None, "id": who.id, "name": None, "teams": teams,
            "timezone": None}
    if who.kind == "user":
        body["name"] = who.name
    return Reply(200, {"identity": body})


# -- topics and components -----------------------------------------------------------------


@route("GET", "/topics")
async def _topics(api: DciApi, call: Call) -> Reply:
    return await api.list_of(("dci_topics",), call, "topics", TOPIC_KEYS)


@route("GET", "/topics/{id}")
async def _topic(api: DciApi, call: Call) -> Reply:
    topic = await api.one("dci_topics", call.args["id"], "topic")
    return Reply(200, {"topic": _only(topic, TOPIC_KEYS)}, topic["etag"])


@route("POST", "/topics")
async def _create_topic(api: DciApi, call: Call) -> Reply:
    api.require_admin(call)
    body = check_body(call.json(), {
        "name": "string", "component_types": "strings?", "product_id": "uuid?", "export_control": "boolean?",
        "data": "object?", "state": "state?", "next_topic_id": "uuid?", "next_topic": "string?",
    }, ("name",))
    body.pop("next_topic", None)
    body = {key: value for key, value in body.items() if value is not None}
    topic = await api.data.updates.dci_create_topic(
        body.pop("name"), body.pop("component_types", []), **body
    )
    return Reply(201, {"topic": _only(topic, TOPIC_KEYS)}, topic["etag"])


@route("GET", "/topics/{id}/components")
async def _topic_components(api: DciApi, call: Call) -> Reply:
    await api.one("dci_topics", call.args["id"], "topic")
    path = ("dci_topics", call.args["id"], "dci_components")
    return await api.list_of(path, call, "components", COMPONENT_KEYS, "-released_at", api.team_filter(call, True))


@route("GET", "/components")
async def _components(api: DciApi, call: Call) -> Reply:
    return await api.list_of(("dci_components",), call, "components", COMPONENT_KEYS, "-released_at",
                             api.team_filter(call, True))


@route("GET", "/components/{id}")
async def _component(api: DciApi, call: Call) -> Reply:
    component = await api.one("dci_components", call.args["id"], "component")
    if component["team_id"] is not None and not call.identity.in_team(component["team_id"]):
        raise unauthorized()
    return Reply(200, {"component": _only(component, COMPONENT_KEYS)}, component["etag"])


@route("POST", "/components")
async def _create_component(api: DciApi, call: Call) -> Reply:
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
    if body.get("team_id") and not call.identity.in_team(body["team_id"]):
        raise unauthorized()
    values = {key: value for key, value in body.items() if value is not None}
    component = await api.data.updates.dci_create_component(values.pop("topic_id"), name, values.pop("type"), **values)
    return Reply(201, {"component": _only(component, COMPONENT_KEYS)}, component["etag"])


# -- jobs ------------------------------------------------------------------------------------


def _job_values(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in _IGNORED_JOB_FIELDS}


def _created_job(job: dict[str, Any], body: dict[str, Any]) -> Reply:
    # the DCI server answers with the values it inserted: its own keys plus those the client sent
    keys = JOB_CREATED_KEYS + tuple(k for k in JOB_KEYS if k in body and k not in JOB_CREATED_KEYS)
    return Reply(201, {"job": _only(job, keys)}, job["etag"])


def _headers(call: Call) -> tuple[str | None, str | None]:
    agent = call.request.getHeader(b"user-agent")
    version = call.request.getHeader(b"client-version")
    return (agent.decode("latin-1") if agent else None, version.decode("latin-1") if version else None)


@route("POST", "/jobs")
async def _create_job(api: DciApi, call: Call) -> Reply:
    body = check_body(call.json(), JOB_FIELDS, ("components",))
    if call.identity.kind != "remoteci":
        raise DciError(400, "Only remoteci can create job")
    agent, version = _headers(call)
    job = await api.data.updates.dci_create_job(
        call.identity.entity, body.get("topic_id"), body["components"], _job_values(body), agent, version
    )
    return _created_job(job, body)


@route("POST", "/jobs/schedule")
async def _schedule_job(api: DciApi, call: Call) -> Reply:
    body = check_body(call.json(), SCHEDULE_FIELDS, ("topic_id",))
    if call.identity.kind != "remoteci":
        raise DciError(400, "Only remoteci can create job")
    agent, version = _headers(call)
    job = await api.data.updates.dci_schedule_job(
        call.identity.entity, body["topic_id"], body.get("components_ids", []), _job_values(body), agent, version
    )
    return _created_job(job, body)


_EMBED_KEYS = {"topic": TOPIC_KEYS, "remoteci": CLIENT_KEYS, "team": TEAM_KEYS, "components": COMPONENT_KEYS,
               "results": RESULT_KEYS, "jobstates": JOBSTATE_KEYS}


def _embedded(name: str, entity: dict[str, Any]) -> dict[str, Any]:
    """An embedded object with the keys its own route shows (a remoteci's secret never)."""
    return _file_json(entity) if name == "files" else _only(entity, _EMBED_KEYS[name])


@route("GET", "/jobs")
async def _jobs(api: DciApi, call: Call) -> Reply:
    names = parse_embed(call.query)
    reply = await api.list_of(("dci_jobs",), call, "jobs", JOB_KEYS, extra=api.team_filter(call))
    await embed_jobs(api.data, reply.body["jobs"], names, _embedded)
    return reply


@route("GET", "/jobs/{id}")
async def _job(api: DciApi, call: Call) -> Reply:
    names = parse_embed(call.query)
    job = await api.job_of(call, call.args["id"])
    body = _only(job, JOB_KEYS)
    everything = {"field": [], "limit": ["200"]}
    components = await api.data.get(("dci_jobs", job["id"], "dci_components"), query={**everything, "order": ["type"]})
    results = await api.data.get(("dci_jobs", job["id"], "dci_results"), query={**everything, "order": ["created_at"]})
    kvs = await api.data.get(("dci_jobs", job["id"], "dci_kv"), query={**everything, "order": ["key"]})
    body["components"] = [_only(c, COMPONENT_KEYS) for c in components.items]
    body["results"] = [_only(r, RESULT_KEYS) for r in results.items]
    body["keys_values"] = [_only(kv, KV_KEYS) for kv in kvs.items]
    await embed_jobs(api.data, [body], [name for name in names if name not in body], _embedded)
    return Reply(200, {"job": body}, job["etag"])


def _if_match(call: Call) -> str:
    etag = call.request.getHeader(b"if-match")
    if not etag:
        raise DciError(412, "'If-match' header must be provided")
    return etag.decode("latin-1").strip().strip('"')


@route("PUT", "/jobs/{id}")
async def _update_job(api: DciApi, call: Call) -> Reply:
    etag = _if_match(call)
    body = check_body(call.json(), JOB_UPDATE_FIELDS)
    await api.job_of(call, call.args["id"])
    job = await api.data.updates.dci_update_job(call.args["id"], etag, body)
    return Reply(200, {"job": _only(job, JOB_KEYS)}, job["etag"])


@route("DELETE", "/jobs/{id}")
async def _delete_job(api: DciApi, call: Call) -> Reply:
    etag = _if_match(call)
    await api.job_of(call, call.args["id"])
    await api.data.updates.dci_archive_job(call.args["id"], etag)
    return Reply(204)


@route("GET", "/jobs/{id}/components")
async def _job_components(api: DciApi, call: Call) -> Reply:
    await api.job_of(call, call.args["id"])
    return await api.list_of(("dci_jobs", call.args["id"], "dci_components"), call, "components", COMPONENT_KEYS)


@route("GET", "/jobs/{id}/jobstates")
async def _job_jobstates(api: DciApi, call: Call) -> Reply:
    await api.job_of(call, call.args["id"])
    return await api.list_of(("dci_jobs", call.args["id"], "dci_jobstates"), call, "jobstates", JOBSTATE_KEYS)


@route("GET", "/jobs/{id}/files")
async def _job_files(api: DciApi, call: Call) -> Reply:
    await api.job_of(call, call.args["id"])
    reply = await api.list_of(("dci_jobs", call.args["id"], "dci_files"), call, "files", FILE_KEYS)
    reply.body["files"] = [_file_json(f) for f in reply.body["files"]]
    return reply


@route("GET", "/jobs/{id}/results")
async def _job_results(api: DciApi, call: Call) -> Reply:
    await api.job_of(call, call.args["id"])
    return await api.list_of(("dci_jobs", call.args["id"], "dci_results"), call, "results", RESULT_KEYS)


@route("POST", "/jobs/{id}/kv")
async def _add_kv(api: DciApi, call: Call) -> Reply:
    body = check_body(call.json(), {"key": "string", "value": "number"}, ("key", "value"))
    await api.job_of(call, call.args["id"])
    kv = await api.data.updates.dci_set_job_kv(call.args["id"], body["key"], float(body["value"]))
    return Reply(201, {"kv": _only(kv, KV_KEYS)})


@route("GET", "/jobs/{id}/kv")
async def _job_kv(api: DciApi, call: Call) -> Reply:
    await api.job_of(call, call.args["id"])
    return await api.list_of(("dci_jobs", call.args["id"], "dci_kv"), call, "kvs", KV_KEYS, "key")


# -- jobstates and files ---------------------------------------------------------------------


@route("POST", "/jobstates")
async def _create_jobstate(api: DciApi, call: Call) -> Reply:
    body = check_body(call.json(), {"job_id": "uuid", "status": "status", "comment": "string?"}, ("job_id", "status"))
    job = await api.job_of(call, body["job_id"].lower())
    jobstate = await api.data.updates.dci_add_jobstate(job["id"], body["status"], body.get("comment"))
    return Reply(201, {"jobstate": _only(jobstate, JOBSTATE_KEYS)})


@route("GET", "/jobstates/{id}")
async def _jobstate(api: DciApi, call: Call) -> Reply:
    jobstate = await api.data.get(("dci_jobstates", call.args["id"]))
    if jobstate is None:
        raise not_found("jobstate")
    await api.job_of(call, jobstate["job_id"])
    return Reply(200, {"jobstate": _only(jobstate, JOBSTATE_KEYS)})


def _dci_headers(call: Call) -> dict[str, str]:
    """The request's ``DCI-*`` headers, named as the DCI server names them (``DCI-JOB-ID`` -> ``job_id``)."""
    found = {}
    for name, values in call.request.requestHeaders.getAllRawHeaders():
        lowered = name.decode("latin-1").lower()
        if lowered.startswith("dci-"):
            found[lowered.removeprefix("dci-").replace("-", "_")] = values[-1].decode("utf-8", "replace")
    return found


@route("POST", "/files")
async def _create_file(api: DciApi, call: Call) -> Reply:
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
    job = await api.job_of(call, job_id.lower())
    mime = headers.get("mime")
    # the body is the file, whatever the Content-Type says: never decoded as JSON
    junit = parse_junit(call.body) if mime == "application/junit" else None
    entity = await api.data.updates.dci_add_file(
        job, jobstate_id.lower() if jobstate_id else None, headers["name"], mime, call.body, junit
    )
    return Reply(201, {"file": _file_json(entity)})


@route("GET", "/files/{id}")
async def _file(api: DciApi, call: Call) -> Reply:
    entity = await api.one("dci_files", call.args["id"], "file")
    await api.job_of(call, entity["job_id"])
    return Reply(200, {"file": _file_json(entity)}, entity["etag"])


@route("GET", "/files/{id}/content")
async def _file_content(api: DciApi, call: Call) -> Reply:
    entity = await api.one("dci_files", call.args["id"], "file")
    await api.job_of(call, entity["job_id"])
    raw = await api.data.get(("dci_files", entity["id"], "content"))
    body = b"".join([chunk async for chunk in raw.chunks])
    return Reply(200, raw=body, content_type=raw.content_type)


# -- teams, remotecis, feeders ---------------------------------------------------------------


@route("GET", "/teams")
async def _teams(api: DciApi, call: Call) -> Reply:
    extra = () if call.identity.is_admin else (Filter("id", "in", tuple(call.identity.teams) or ("",)),)
    return await api.list_of(("dci_teams",), call, "teams", TEAM_KEYS, extra=extra)


@route("POST", "/teams")
async def _create_team(api: DciApi, call: Call) -> Reply:
    api.require_admin(call)
    body = check_body(call.json(), {"name": "string", "country": "string?", "state": "state?",
                                    "has_pre_release_access": "boolean?", "external": "boolean?"}, ("name",))
    existing = await api.data.get("dci_teams", query={"name": [body["name"]]})
    if existing.items:
        raise DciError(409, "We are unable to create this resource. A similar resource already exists.")
    team = await api.data.updates.dci_find_or_create_team(body["name"])
    return Reply(201, {"team": _only(team, TEAM_KEYS)}, team["etag"])


def _client_routes(kind: str, plural: str) -> None:
    rtype = f"dci_{plural}"

    async def listing(api: DciApi, call: Call) -> Reply:
        return await api.list_of((rtype,), call, plural, CLIENT_KEYS, extra=api.team_filter(call))

    async def show(api: DciApi, call: Call) -> Reply:
        entity = await api.one(rtype, call.args["id"], kind)
        if not call.identity.in_team(entity["team_id"]):
            raise unauthorized()
        return Reply(200, {kind: _only(entity, CLIENT_KEYS)}, entity["etag"])

    async def create(api: DciApi, call: Call) -> Reply:
        api.require_admin(call)
        body = check_body(call.json(), {"name": "string", "team_id": "uuid", "data": "object?", "state": "state?"},
                          ("name", "team_id"))
        if await api.data.get(("dci_teams", body["team_id"].lower())) is None:
            raise not_found("team")
        entity, secret = await getattr(api.data.updates, f"dci_create_{kind}")(body["name"], body["team_id"].lower())
        # the secret is shown once, to whoever made the client
        return Reply(201, {kind: {**_only(entity, CLIENT_KEYS), "api_secret": secret}}, entity["etag"])

    route("GET", f"/{plural}")(listing)
    route("GET", f"/{plural}/{{id}}")(show)
    route("POST", f"/{plural}")(create)


_client_routes("remoteci", "remotecis")
_client_routes("feeder", "feeders")
