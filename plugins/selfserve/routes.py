"""The routes of BuildAPI self-serve, mounted at ``/self-serve``.

Reads go through ``data.get`` (see :mod:`plugins.selfserve.queries`); job requests are
checked (user, branch, parameters, object, state, in BuildAPI's order), then queued as
job records through the ``add_selfserve_job`` update method for the agent to do.

HTTP behaviour, as BuildAPI's: ``?format=json|html`` wins, else JSON when ``Accept``
contains ``application/json``, else an HTML page (the JSON, escaped).  ``_method=PUT|DELETE``
in the query string or in the form body of a POST selects the route; on any other method it is
ignored, so a GET never changes state.  Parameters come from
the query string and from a form-encoded body on any method.  A trailing slash redirects
(301) to the path without it.  Failures answer ``{"status": "FAILED", "msg": ...}``: 403 with
no (or a refused) user, 404 unknown branch or object, 400 bad parameter or state, 503 when the
job cannot be queued.  An accepted job answers 202 ``{"status": "OK", "msg", "request_id"}``,
or in HTML a 302 to its job page.
"""

from __future__ import annotations

import calendar
import datetime
import html
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit
from weakref import WeakKeyDictionary

from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from master.sdk import RETRY, SUCCESS, AuthError, HttpError, JsonApi, PluginContext, StorageError, handler, now
from plugins.selfserve import queries
from plugins.selfserve.access import check_read, requester
from plugins.selfserve.documents import job_object, page
from plugins.selfserve.resources import SelfServeJobs

log = Logger()

PREFIX = "self-serve"
"""Where the plugin is mounted."""

STABLE_DELAY = 180
"""is_done's default stableDelay: seconds a build must have ended for the revision to count as done."""

ROUTES = [
    ("GET", "/self-serve", "Root of the API: this list"),
    ("GET", "/self-serve/branches", "Return a list of all the branches"),
    ("GET", "/self-serve/jobs", "Return a list of past self-serve requests (num=100, offset=0)"),
    ("GET", "/self-serve/jobs/{job_id}", "Return information about a job request"),
    ("GET", "/self-serve/{branch}", "Return a list of builds started on this branch on date=YYYY-MM-DD (UTC; today)"),
    ("POST", "/self-serve/{branch}/build", "Rebuild build_id (a parameter); priority and count are optional"),
    ("DELETE", "/self-serve/{branch}/build/{build_id}", "Cancel the given build"),
    ("GET", "/self-serve/{branch}/build/{build_id}", "Return information about a build"),
    ("GET", "/self-serve/{branch}/builders", "Return a list of valid builders for this branch"),
    ("POST", "/self-serve/{branch}/builders/{builder_name}/{revision}",
     "Create a new build for this builder at this revision; properties (a JSON object), files (a JSON list) "
     "and priority are optional"),
    ("POST", "/self-serve/{branch}/request", "Rebuild request_id (a parameter); priority and count are optional"),
    ("DELETE", "/self-serve/{branch}/request/{request_id}", "Cancel the given request"),
    ("GET", "/self-serve/{branch}/request/{request_id}", "Return information about a request"),
    ("PUT", "/self-serve/{branch}/request/{request_id}",
     "Reprioritize the given pending request: priority is required; higher runs first, the default is 0"),
    ("DELETE", "/self-serve/{branch}/rev/{revision}", "Cancel all running or pending builds at this revision"),
    ("GET", "/self-serve/{branch}/rev/{revision}", "Return the builds and pending requests at this revision"),
    ("POST", "/self-serve/{branch}/rev/{revision}", "Create new builds at this revision"),
    ("GET", "/self-serve/{branch}/rev/{revision}/is_done",
     "Whether the builds at this revision are done (ended stableDelay=180 seconds ago) and passed"),
    ("POST", "/self-serve/{branch}/rev/{revision}/nightly",
     "Create nightly builds at this revision; priority optional"),
    ("POST", "/self-serve/{branch}/rev/{revision}/pgo", "Create PGO builds at this revision; priority optional"),
    ("GET", "/self-serve/{branch}/user/{user}", "Return the finished (newest num=100), running and pending builds "
     "this user asked for on this branch"),
]


# -- parameters and formats -------------------------------------------------------------------------


_FORM_ARGS: WeakKeyDictionary[IRequest, dict[str, list[str]]] = WeakKeyDictionary()
"""The form arguments of each request being answered, parsed once by the dispatcher."""


def query_args(request: IRequest) -> dict[str, list[str]]:
    """The query string's parameters."""
    return parse_qs(urlsplit(request.uri.decode("latin-1")).query, keep_blank_values=True)


def form_args(request: IRequest) -> dict[str, list[str]]:
    """The parameters of the query string and of a form-encoded body (any method), the body's last."""
    args = query_args(request)
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
    body: dict[str, list[str]] = {}
    if content_type == b"application/x-www-form-urlencoded" and request.content is not None:
        request.content.seek(0)
        body = parse_qs(request.content.read().decode("utf-8", "replace"), keep_blank_values=True)
        request.content.seek(0)
    elif content_type == b"multipart/form-data" and request.method == b"POST":
        # Twisted parses multipart bodies of POSTs (with the query string) into request.args
        body = {k.decode(): [v.decode("utf-8", "replace") for v in vs] for k, vs in (request.args or {}).items()}
    for name, values in body.items():
        args[name] = values
    return args


def wants_json(request: IRequest) -> bool:
    """``?format=`` wins; else JSON when Accept contains application/json."""
    fmt = query_args(request).get("format")
    if fmt:
        return fmt[-1] == "json"
    return b"application/json" in (request.getHeader(b"accept") or b"")


def respond(request: IRequest, body: Any, status: int = 200, title: str = "self-serve") -> bytes:
    """*body* as JSON, or as an HTML page showing it."""
    request.setResponseCode(status)
    if wants_json(request):
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    return page(title, f"<pre>{html.escape(json.dumps(body, indent=2))}</pre>")


def one(args: dict[str, list[str]], name: str) -> str | None:
    """The last value of parameter *name*, or None."""
    values = args.get(name)
    return values[-1] if values else None


def integer(value: str | None, message: str, default: int | None = None, minimum: int | None = None) -> int:
    """*value* as an integer (or *default* when absent); HttpError(400, message) when it is not one."""
    if value is None or value == "":
        if default is None:
            raise HttpError(400, message)
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise HttpError(400, message) from None
    if minimum is not None and number < minimum:
        raise HttpError(400, message)
    return number


def json_param(value: str | None, kind: type, default: Any) -> Any:
    """A JSON parameter of the expected *kind*; anything else is silently the default, as in BuildAPI."""
    if not value:
        return default
    try:
        parsed = json.loads(value)
    except ValueError:
        return default
    return parsed if isinstance(parsed, kind) else default


# -- the front: redirects and _method ---------------------------------------------------------------


class SelfServeFront(resource.Resource):
    """Redirects trailing slashes, applies ``_method`` and parses parameters, then routes (Klein)."""

    isLeaf = True

    def __init__(self, api: SelfServeWeb) -> None:
        super().__init__()
        self.api = api
        self.routes = api.app.resource()

    def render(self, request: IRequest) -> Any:
        """Dispatch *request*."""
        if request.postpath and request.postpath[-1] == b"" and request.path.endswith(b"/"):
            target = request.path.rstrip(b"/") or b"/"
            query = urlsplit(request.uri).query
            request.setResponseCode(301)
            request.setHeader(b"Location", target + (b"?" + query if query else b""))
            return b""
        args = form_args(request)
        _FORM_ARGS[request] = args
        # _method only on a POST, as BuildAPI's HTML forms use it: on a GET it would let a
        # cross-site link (which carries the session cookie) change state
        override = query_args(request).get("_method") or args.get("_method")
        if override and request.method != b"POST":
            if override[-1].upper() != request.method.decode("latin-1").upper():
                return self.api.render_error(request, HttpError(
                    405, f"_method={override[-1]} is only honoured on a POST: a "
                         f"{request.method.decode('latin-1')} changes nothing"))
            override = None
        if override and override[-1].upper() in ("GET", "POST", "PUT", "DELETE"):
            request.method = override[-1].upper().encode()
        if not request.postpath:
            request.postpath = [b""]  # Klein routes "/self-serve" itself as "/"
        return self.routes.render(request)


# -- the routes -------------------------------------------------------------------------------------


class SelfServeWeb(JsonApi):
    """The self-serve routes over one plugin context; *plugin* gives the agent and the trusted proxies."""

    app = JsonApi.klein()
    internal_error = "internal error (see the master's log)"

    def __init__(self, ctx: PluginContext | Any, plugin: Any) -> None:
        super().__init__(ctx)
        self.plugin = plugin

    def resource(self) -> resource.Resource:
        """The twisted.web resource to mount at ``/self-serve``."""
        return SelfServeFront(self)

    # -- BuildAPI's wire format --

    def error_body(self, status: int, message: str) -> Any:
        """``{"status": "FAILED", "msg": message}``."""
        return {"status": "FAILED", "msg": message}

    def render(self, request: IRequest, body: Any, status: int = 200) -> bytes:
        """JSON or an HTML page showing it (see :func:`respond`); a failure's page is titled with it."""
        failure = status >= 400 and isinstance(body, dict) and body.get("status") == "FAILED"
        return respond(request, body, status, title=f"{status}: {body['msg']}" if failure else "self-serve")

    def auth_error(self, request: IRequest, error: AuthError) -> HttpError:
        """A read the read scope refused: 403 ``ACCESS DENIED!``, as BuildAPI answers every refusal."""
        return HttpError(403, f"ACCESS DENIED! {error.message}")

    def routing_error(self, request: IRequest, error: HTTPException) -> HttpError:
        """No route has this path (404), or the path takes other methods (405)."""
        if error.code == 405:
            return HttpError(405, f"Method {request.method.decode('latin-1')} is not allowed here")
        return HttpError(404, f"No such self-serve path: {request.path.decode('utf-8', 'replace')}")

    def before(self, request: IRequest) -> None:
        """Nothing: each read route checks its caller against the resource type it reads (:meth:`check_read`)."""

    # -- checks shared by the routes --

    def user(self, request: IRequest, action: str) -> str:
        """Who asks for job *action* (see :func:`plugins.selfserve.access.requester`)."""
        return requester(request, self.auth, self.plugin.trusted_proxies, action)

    def check_read(self, request: IRequest, resource_type: str) -> None:
        """Refuse (403) a read the master's read rules forbid (see :func:`plugins.selfserve.access.check_read`)."""
        check_read(request, self.auth, resource_type)

    async def branch(self, name: str) -> dict[str, Any]:
        """The branch *name*, or HttpError(404)."""
        found = await queries.find_branch(self.data, name)
        if found is None:
            raise HttpError(404, f"Branch {name} not found")
        return found

    async def build_on(self, branch: str, build_id: int) -> dict[str, Any]:
        """Build *build_id* if it is on *branch*, else HttpError(404)."""
        found = await queries.first(self.data, "selfservebuilds", build_id=str(build_id), branch=branch)
        if found is None:
            raise HttpError(404, f"Build {build_id} not found on branch {branch}")
        return found

    async def request_on(self, branch: str, request_id: int, detailed: bool = False) -> dict[str, Any]:
        """Request *request_id* if it is on *branch*, else HttpError(404)."""
        query = {"request_id": [str(request_id)], "branch": [branch], "limit": ["1"]}
        if not detailed:
            query["field"] = [f for f in ("request_id", "complete", "claimed", "buildername", "branch",
                                          "revision", "submittime", "complete_at", "priority", "claimed_at",
                                          "reason")]
        found = (await self.data.get("selfserverequests", query=query)).items
        if not found:
            raise HttpError(404, f"Request {request_id} not found on branch {branch}")
        return found[0]

    async def submit(self, request: IRequest, action: str, who: str, what: dict[str, Any]) -> bytes:
        """Queue a job: 202 OK with its id (HTML: 302 to its page), or 503 FAILED."""
        agent = self.plugin.agent
        if agent is None or not agent.accepting:
            raise HttpError(503, "Couldn't send the job to the self-serve agent: it is not running; try again later")
        try:
            jobid = await self.data.resource_type(SelfServeJobs).add_selfserve_job(action, who, what)
        except StorageError as e:
            log.warn("self-serve: cannot record a job: {e}", e=e)
            raise HttpError(503, "Couldn't create the job record; try again later") from None
        if not wants_json(request):
            request.setResponseCode(302)
            request.setHeader(b"Location", f"/{PREFIX}/jobs/{jobid}".encode())
            return b""
        return respond(request, {"status": "OK", "msg": f"{action} queued as job {jobid}", "request_id": jobid}, 202)

    # -- informational routes --

    @app.route("/", methods=None)
    @handler
    async def root(self, request: IRequest) -> bytes:
        """The list of routes."""
        if wants_json(request):
            return respond(request, {"routes": [{"method": m, "path": p, "doc": d} for m, p, d in ROUTES]})
        rows = "".join(
            f"<tr><td>{m}</td><td>{html.escape(p)}</td><td>{html.escape(d)}</td></tr>" for m, p, d in ROUTES
        )
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return page("ci-master self-serve", f"<table><tr><th>HTTP method</th><th>Path</th><th>Docs</th></tr>"
                                            f"{rows}</table>")

    @app.route("/branches", methods=None)
    @handler
    async def branches(self, request: IRequest) -> bytes:
        """``{name: {repo, graph_branches, repo_type}}``."""
        self.check_read(request, "selfservebranches")
        result = {}
        async for branch in queries.all_pages(self.data, "selfservebranches", {"order": ["name"]}):
            result[branch["name"]] = {
                "repo": branch["repository"] or "", "graph_branches": [branch["name"]],
                "repo_type": branch["kind"],
            }
        return respond(request, result, title="branches")

    @app.route("/jobs", methods=None)
    @handler
    async def jobs(self, request: IRequest) -> bytes:
        """Past job requests, newest first."""
        self.check_read(request, "selfservejobs")
        args = _FORM_ARGS[request]
        num = integer(one(args, "num"), "Bad num", default=100, minimum=0)
        offset = integer(one(args, "offset"), "Bad offset", default=0, minimum=0)
        query = {"order": ["-when", "-jobid"], "limit": [str(min(num, self.data.limits.maximum))],
                 "offset": [str(offset)]}
        found = await self.data.get("selfservejobs", query=query)
        return respond(request, [job_object(job) for job in found.items], title="jobs")

    @app.route("/jobs/<job_id>", methods=None)
    @handler
    async def job(self, request: IRequest, job_id: str) -> bytes:
        """One job request and, once done, its outcome."""
        self.check_read(request, "selfservejobs")
        found = None
        if job_id.isdigit():
            found = await queries.first(self.data, "selfservejobs", jobid=job_id)
        if found is None:
            raise HttpError(404, f"Job {job_id} not found")
        return respond(request, job_object(found), title=f"job {job_id}")

    @app.route("/<branch>", methods=None)
    @handler
    async def branch_builds(self, request: IRequest, branch: str) -> bytes:
        """The builds started on the branch on one day (UTC)."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        date = one(_FORM_ARGS[request], "date")
        try:
            day = datetime.date.fromisoformat(date) if date else datetime.datetime.now(datetime.UTC).date()
        except ValueError:
            raise HttpError(400, "Bad date") from None
        start = calendar.timegm(day.timetuple())
        query = {"branch": [branch], "starttime__ge": [str(start)], "starttime__lt": [str(start + 86400)],
                 "order": ["build_id"]}
        builds = [build async for build in queries.all_pages(self.data, "selfservebuilds", query)]
        return respond(request, await queries.build_objects(self.data, builds, branch), title=f"builds on {branch}")

    @app.route("/<branch>/builders", methods=None)
    @handler
    async def builders(self, request: IRequest, branch: str) -> bytes:
        """The names of the branch's builders."""
        self.check_read(request, "builders")
        found = await self.branch(branch)
        names = [builder["name"] for builder in await queries.branch_builders(self.data, found)]
        return respond(request, names, title=f"builders of {branch}")

    @app.route("/<branch>/user/<user>", methods=None)
    @handler
    async def user_builds(self, request: IRequest, branch: str, user: str) -> bytes:
        """``{"builds", "running", "pending"}`` that *user* asked for on the branch."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        num = integer(one(_FORM_ARGS[request], "num"), "Bad num", default=100, minimum=0)
        owned = {"branch": [branch], "owner": [user]}
        done = await self.data.get("selfservebuilds", query={
            **owned, "complete": ["true"], "order": ["-build_id"], "limit": [str(min(num, self.data.limits.maximum))],
        })
        running = [b async for b in queries.all_pages(self.data, "selfservebuilds",
                                                      {**owned, "complete": ["false"], "order": ["build_id"]})]
        pending = [r async for r in queries.all_pages(self.data, "selfserverequests", {
            **owned, "complete": ["false"], "claimed": ["false"], "order": ["request_id"],
        })]
        return respond(request, {
            "builds": await queries.build_objects(self.data, done.items, branch),
            "running": await queries.build_objects(self.data, running, branch),
            "pending": [queries.request_object(r, branch) for r in pending],
        }, title=f"builds of {user} on {branch}")

    # -- builds --

    @app.route("/<branch>/build", methods=["POST"])
    @handler
    async def rebuild_build(self, request: IRequest, branch: str) -> bytes:
        """Queue a rebuild of ``build_id``."""
        return await self._rebuild(request, branch, "rebuild_build", "build_id", "bid", self.build_on)

    @app.route("/<branch>/build/<build_id>", methods=["DELETE"])
    @handler
    async def cancel_build(self, request: IRequest, branch: str, build_id: str) -> bytes:
        """Queue the cancelling of a build."""
        return await self._cancel(request, branch, "cancel_build", build_id, "bid", self.build_on)

    @app.route("/<branch>/build/<build_id>", methods=None)
    @handler
    async def build(self, request: IRequest, branch: str, build_id: str) -> bytes:
        """One build, its request with properties."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        build = await self.build_on(branch, integer(build_id, "Bad build_id"))
        [obj] = await queries.build_objects(self.data, [build], branch, detailed=True)
        for req in obj["requests"]:
            req.pop("build_ids", None)  # BuildAPI adds only the properties here
        return respond(request, obj, title=f"build {build_id}")

    # -- requests --

    @app.route("/<branch>/request", methods=["POST"])
    @handler
    async def rebuild_request(self, request: IRequest, branch: str) -> bytes:
        """Queue a rebuild of ``request_id``."""
        return await self._rebuild(request, branch, "rebuild_request", "request_id", "brid", self.request_on)

    @app.route("/<branch>/request/<request_id>", methods=["DELETE"])
    @handler
    async def cancel_request(self, request: IRequest, branch: str, request_id: str) -> bytes:
        """Queue the cancelling of a request (a running one's build is stopped)."""
        return await self._cancel(request, branch, "cancel_request", request_id, "brid", self.request_on)

    async def _rebuild(self, request: IRequest, branch: str, action: str, param: str, key: str, find: Any) -> bytes:
        """Queue a rebuild of the build or request named by parameter *param* (``count`` times, at ``priority``)."""
        who = self.user(request, action)
        await self.branch(branch)
        args = _FORM_ARGS[request]
        number = integer(one(args, param), f"Bad {param}")
        priority = integer(one(args, "priority"), "Bad priority", default=0)
        count = integer(one(args, "count"), "Bad count", default=1, minimum=1)
        await find(branch, number)
        return await self.submit(request, action, who, {key: number, "priority": priority, "count": count})

    async def _cancel(self, request: IRequest, branch: str, action: str, given: str, key: str, find: Any) -> bytes:
        """Queue the cancelling of the build or request *given* (400 once it is complete)."""
        who = self.user(request, action)
        await self.branch(branch)
        kind = "build" if key == "bid" else "request"
        number = integer(given, f"Non-integer {kind}_id")
        found = await find(branch, number)
        if found["complete"]:
            raise HttpError(400, f"{kind.capitalize()} already complete")
        return await self.submit(request, action, who, {key: number})

    @app.route("/<branch>/request/<request_id>", methods=["PUT"])
    @handler
    async def reprioritize(self, request: IRequest, branch: str, request_id: str) -> bytes:
        """Queue a new priority for a pending request."""
        who = self.user(request, "reprioritize")
        await self.branch(branch)
        brid = integer(request_id, "Bad request_id")
        priority = integer(one(_FORM_ARGS[request], "priority"), "Bad priority")
        found = await self.request_on(branch, brid)
        if found["complete"]:
            raise HttpError(400, "Request already complete")
        if found["claimed"]:
            raise HttpError(400, "Request is already running")
        return await self.submit(request, "reprioritize", who, {"brid": brid, "priority": priority})

    @app.route("/<branch>/request/<request_id>", methods=None)
    @handler
    async def request_info(self, request: IRequest, branch: str, request_id: str) -> bytes:
        """One request, with its properties and builds."""
        self.check_read(request, "selfserverequests")
        await self.branch(branch)
        found = await self.request_on(branch, integer(request_id, "Bad request_id"), detailed=True)
        return respond(request, queries.request_object(found, branch, detailed=True), title=f"request {request_id}")

    # -- revisions --

    @app.route("/<branch>/rev/<revision>", methods=["DELETE"])
    @handler
    async def cancel_revision(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue the cancelling of every pending request and running build at the revision."""
        who = self.user(request, "cancel_revision")
        await self.branch(branch)
        if not await self._revision_known(branch, revision):
            raise HttpError(404, f"Revision {revision} not found on branch {branch}")
        return await self.submit(request, "cancel_revision", who, {"branch": branch, "revision": revision[:12]})

    @app.route("/<branch>/rev/<revision>", methods=["POST"])
    @handler
    async def new_build_at_revision(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue new builds of the branch's builders at the revision."""
        who = self.user(request, "new_build_at_revision")
        await self.branch(branch)
        return await self.submit(request, "new_build_at_revision", who, {"branch": branch, "revision": revision})

    @app.route("/<branch>/rev/<revision>", methods=None)
    @handler
    async def revision_builds(self, request: IRequest, branch: str, revision: str) -> bytes:
        """The builds and the pending requests at the revision, in one list."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        builds = await queries.builds_at_revision(self.data, branch, revision)
        pending = await queries.requests_at_revision(self.data, branch, revision, complete="false", claimed="false")
        items = await queries.build_objects(self.data, builds, branch)
        items += [queries.request_object(r, branch) for r in pending]
        return respond(request, items, title=f"{branch} at {revision}")

    @app.route("/<branch>/rev/<revision>/is_done", methods=None)
    @handler
    async def is_done(self, request: IRequest, branch: str, revision: str) -> bytes:
        """``{"job_complete", "job_passed", "stableDelay"}`` of the builds at the revision."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        try:
            delay = int(one(_FORM_ARGS[request], "stableDelay") or STABLE_DELAY)
        except ValueError:
            delay = STABLE_DELAY
        builds = await queries.builds_at_revision(self.data, branch, revision)
        waiting = await queries.requests_at_revision(self.data, branch, revision, complete="false")
        if not builds and not waiting:
            raise HttpError(404, f"Revision {revision} not found on branch {branch}")
        moment = now()
        complete = not waiting and all(b["endtime"] is not None and moment - b["endtime"] >= delay for b in builds)
        passed = complete and all(b["status"] in (SUCCESS, RETRY) for b in builds)
        return respond(request, {"stableDelay": delay, "job_complete": complete, "job_passed": passed},
                       title=f"is {branch} at {revision} done?")

    @app.route("/<branch>/rev/<revision>/nightly", methods=["POST"])
    @handler
    async def new_nightly(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue nightly builds at the revision."""
        return await self._new_kind(request, branch, revision, "new_nightly_at_revision")

    @app.route("/<branch>/rev/<revision>/pgo", methods=["POST"])
    @handler
    async def new_pgo(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue PGO builds at the revision."""
        return await self._new_kind(request, branch, revision, "new_pgobuild_at_revision")

    async def _new_kind(self, request: IRequest, branch: str, revision: str, action: str) -> bytes:
        who = self.user(request, action)
        await self.branch(branch)
        priority = integer(one(_FORM_ARGS[request], "priority"), "Bad priority", default=0)
        return await self.submit(request, action, who, {"branch": branch, "revision": revision, "priority": priority})

    @app.route("/<branch>/builders/<builder_name>/<revision>", methods=["POST"])
    @handler
    async def new_build_for_builder(self, request: IRequest, branch: str, builder_name: str, revision: str) -> bytes:
        """Queue a build of one builder at the revision."""
        who = self.user(request, "new_build_for_builder")
        found = await self.branch(branch)
        args = _FORM_ARGS[request]
        priority = integer(one(args, "priority"), "Bad priority", default=0)
        properties = json_param(one(args, "properties"), dict, {})
        files = json_param(one(args, "files"), list, [])
        if builder_name not in {b["name"] for b in await queries.branch_builders(self.data, found)}:
            raise HttpError(404, f"Builder {builder_name} not found on branch {branch}")
        return await self.submit(request, "new_build_for_builder", who, {
            "branch": branch, "revision": revision, "priority": priority, "builder_name": builder_name,
            "properties": properties, "files": files,
        })

    async def _revision_known(self, branch: str, revision: str) -> bool:
        query = {**queries.revision_query(branch, revision), "limit": ["1"], "field": ["build_id"]}
        if (await self.data.get("selfservebuilds", query=query)).items:
            return True
        query = {**queries.revision_query(branch, revision), "limit": ["1"], "field": ["request_id"]}
        return bool((await self.data.get("selfserverequests", query=query)).items)
