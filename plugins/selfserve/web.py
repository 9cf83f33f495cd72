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

import base64
import calendar
import datetime
import functools
import html
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import resource
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from master.data.errors import DataError
from master.data.resources.common import RETRY, SUCCESS, now
from master.db.interfaces import StorageError
from master.www.auth import AuthError
from plugins.selfserve import queries

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


class Failed(Exception):
    """A request cannot be served: answered ``{"status": "FAILED", "msg": msg}`` with *status*."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


# -- parameters and formats -------------------------------------------------------------------------


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


def page(title: str, body_html: str) -> bytes:
    """A small HTML page."""
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>\n{body_html}\n</body></html>\n"
    ).encode()


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
    """*value* as an integer (or *default* when absent); Failed(400, message) when it is not one."""
    if value is None or value == "":
        if default is None:
            raise Failed(400, message)
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise Failed(400, message) from None
    if minimum is not None and number < minimum:
        raise Failed(400, message)
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

    def __init__(self, routes: resource.Resource) -> None:
        super().__init__()
        self.routes = routes

    def render(self, request: IRequest) -> Any:
        """Dispatch *request*."""
        if request.postpath and request.postpath[-1] == b"" and request.path.endswith(b"/"):
            target = request.path.rstrip(b"/") or b"/"
            query = urlsplit(request.uri).query
            request.setResponseCode(301)
            request.setHeader(b"Location", target + (b"?" + query if query else b""))
            return b""
        args = form_args(request)
        request.selfserve_args = args
        # _method only on a POST, as BuildAPI's HTML forms use it: on a GET it would let a
        # cross-site link (which carries the session cookie) change state
        override = query_args(request).get("_method") or args.get("_method")
        if override and request.method != b"POST":
            if override[-1].upper() != request.method.decode("latin-1").upper():
                return failed(request, 405, f"_method={override[-1]} is only honoured on a POST: a "
                                            f"{request.method.decode('latin-1')} changes nothing")
            override = None
        if override and override[-1].upper() in ("GET", "POST", "PUT", "DELETE"):
            request.method = override[-1].upper().encode()
        if not request.postpath:
            request.postpath = [b""]  # Klein routes "/self-serve" itself as "/"
        return self.routes.render(request)


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async route; Failed becomes its FAILED answer, anything else a 500 (logged)."""

    @functools.wraps(fn)
    def route(self: SelfServeWeb, request: IRequest, **kwargs: Any) -> defer.Deferred:
        async def run() -> bytes:
            try:
                return await fn(self, request, **kwargs)
            except Failed as e:
                return failed(request, e.status, e.msg)
            except AuthError as e:  # a read the read scope refused
                return failed(request, 403, f"ACCESS DENIED! {e.message}")
            except DataError as e:  # a value no field can hold, refused by the data API: the caller's
                return failed(request, 400, e.message)
            except Exception:
                log.failure("self-serve {path} failed", path=request.path)
                return failed(request, 500, "internal error (see the master's log)")

        return defer.ensureDeferred(run())

    return route


def failed(request: IRequest, status: int, msg: str) -> bytes:
    """The FAILED answer."""
    return respond(request, {"status": "FAILED", "msg": msg}, status, title=f"{status}: {msg}")


# -- the routes -------------------------------------------------------------------------------------


class SelfServeWeb:
    """The self-serve routes over one DataAPI; *plugin* gives the agent, the authenticator and the proxies."""

    app = Klein()

    def __init__(self, data: Any, plugin: Any) -> None:
        self.data = data
        self.plugin = plugin

    def resource(self) -> resource.Resource:
        """The twisted.web resource to mount at ``/self-serve``."""
        return SelfServeFront(self.app.resource())

    # -- checks shared by the routes --

    def user(self, request: IRequest, action: str) -> str:
        """Who asks for job *action*: a trusted proxy's X-Remote-User, else the ci-master user; else 403."""
        remote = request.getHeader(b"x-remote-user")
        host = getattr(request.getClientAddress(), "host", None)
        if remote and host in self.plugin.trusted_proxies:
            return remote.decode("utf-8", "replace")
        authenticator = self.plugin.authenticator(self.data)
        if authenticator is not None and authenticator.enabled:
            try:
                user = authenticator.authenticate(request)
                if user is None:
                    raise Failed(403, "ACCESS DENIED! Log in with the user name and password of a ci-master user "
                                      "(HTTP Basic auth)")
                authenticator.authorize(user, "selfservejobs", action)
            except AuthError as e:
                raise Failed(403, f"ACCESS DENIED! {e.message}") from None
            return user.name
        # the master has no users (auth unset): every control is open, the name is taken as given
        header = (request.getHeader(b"authorization") or b"").decode("latin-1")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                name = base64.b64decode(credentials.strip()).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                name = ""
            if name:
                return name
        raise Failed(403, "ACCESS DENIED! Give a user name (HTTP Basic auth)")

    def check_read(self, request: IRequest, resource_type: str) -> None:
        """Refuse (403) a read the master's read rules forbid; reads are public unless it has some.

        *resource_type* is what the route mainly reads; every other type it reads on the way
        (branches, requests, builders...) is checked too, by the read scope opened here.
        """
        authenticator = self.plugin.authenticator(self.data)
        restricts = getattr(authenticator, "restricts_reads", False)
        if not (restricts() if callable(restricts) else restricts):
            return
        try:
            user = authenticator.authenticate(request)
            authenticator.authorize_read(user, resource_type)
        except AuthError as e:
            raise Failed(403, f"ACCESS DENIED! {e.message}") from None
        authenticator.scope_reads(user)

    async def branch(self, name: str) -> dict[str, Any]:
        """The branch *name*, or Failed(404)."""
        found = await queries.find_branch(self.data, name)
        if found is None:
            raise Failed(404, f"Branch {name} not found")
        return found

    async def build_on(self, branch: str, build_id: int) -> dict[str, Any]:
        """Build *build_id* if it is on *branch*, else Failed(404)."""
        found = await queries.first(self.data, "selfservebuilds", build_id=str(build_id), branch=branch)
        if found is None:
            raise Failed(404, f"Build {build_id} not found on branch {branch}")
        return found

    async def request_on(self, branch: str, request_id: int, detailed: bool = False) -> dict[str, Any]:
        """Request *request_id* if it is on *branch*, else Failed(404)."""
        query = {"request_id": [str(request_id)], "branch": [branch], "limit": ["1"]}
        if not detailed:
            query["field"] = [f for f in ("request_id", "complete", "claimed", "buildername", "branch",
                                          "revision", "submittime", "complete_at", "priority", "claimed_at",
                                          "reason")]
        found = (await self.data.get("selfserverequests", query=query)).items
        if not found:
            raise Failed(404, f"Request {request_id} not found on branch {branch}")
        return found[0]

    async def submit(self, request: IRequest, action: str, who: str, what: dict[str, Any]) -> bytes:
        """Queue a job: 202 OK with its id (HTML: 302 to its page), or 503 FAILED."""
        agent = self.plugin.agent
        if agent is None or not agent.accepting:
            raise Failed(503, "Couldn't send the job to the self-serve agent: it is not running; try again later")
        try:
            jobid = await self.data.updates.add_selfserve_job(action, who, what)
        except StorageError as e:
            log.warn("self-serve: cannot record a job: {e}", e=e)
            raise Failed(503, "Couldn't create the job record; try again later") from None
        if not wants_json(request):
            request.setResponseCode(302)
            request.setHeader(b"Location", f"/{PREFIX}/jobs/{jobid}".encode())
            return b""
        return respond(request, {"status": "OK", "msg": f"{action} queued as job {jobid}", "request_id": jobid}, 202)

    # -- informational routes --

    @app.route("/", methods=None)
    @handled
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
    @handled
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
    @handled
    async def jobs(self, request: IRequest) -> bytes:
        """Past job requests, newest first."""
        self.check_read(request, "selfservejobs")
        args = request.selfserve_args
        num = integer(one(args, "num"), "Bad num", default=100, minimum=0)
        offset = integer(one(args, "offset"), "Bad offset", default=0, minimum=0)
        query = {"order": ["-when", "-jobid"], "limit": [str(min(num, self.data.limits.maximum))],
                 "offset": [str(offset)]}
        found = await self.data.get("selfservejobs", query=query)
        return respond(request, [job_object(job) for job in found.items], title="jobs")

    @app.route("/jobs/<job_id>", methods=None)
    @handled
    async def job(self, request: IRequest, job_id: str) -> bytes:
        """One job request and, once done, its outcome."""
        self.check_read(request, "selfservejobs")
        found = None
        if job_id.isdigit():
            found = await queries.first(self.data, "selfservejobs", jobid=job_id)
        if found is None:
            raise Failed(404, f"Job {job_id} not found")
        return respond(request, job_object(found), title=f"job {job_id}")

    @app.route("/<branch>", methods=None)
    @handled
    async def branch_builds(self, request: IRequest, branch: str) -> bytes:
        """The builds started on the branch on one day (UTC)."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        date = one(request.selfserve_args, "date")
        try:
            day = datetime.date.fromisoformat(date) if date else datetime.datetime.now(datetime.UTC).date()
        except ValueError:
            raise Failed(400, "Bad date") from None
        start = calendar.timegm(day.timetuple())
        query = {"branch": [branch], "starttime__ge": [str(start)], "starttime__lt": [str(start + 86400)],
                 "order": ["build_id"]}
        builds = [build async for build in queries.all_pages(self.data, "selfservebuilds", query)]
        return respond(request, await queries.build_objects(self.data, builds, branch), title=f"builds on {branch}")

    @app.route("/<branch>/builders", methods=None)
    @handled
    async def builders(self, request: IRequest, branch: str) -> bytes:
        """The names of the branch's builders."""
        self.check_read(request, "builders")
        found = await self.branch(branch)
        names = [builder["name"] for builder in await queries.branch_builders(self.data, found)]
        return respond(request, names, title=f"builders of {branch}")

    @app.route("/<branch>/user/<user>", methods=None)
    @handled
    async def user_builds(self, request: IRequest, branch: str, user: str) -> bytes:
        """``{"builds", "running", "pending"}`` that *user* asked for on the branch."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        num = integer(one(request.selfserve_args, "num"), "Bad num", default=100, minimum=0)
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
    @handled
    async def rebuild_build(self, request: IRequest, branch: str) -> bytes:
        """Queue a rebuild of ``build_id``."""
        who = self.user(request, "rebuild_build")
        await self.branch(branch)
        args = request.selfserve_args
        build_id = integer(one(args, "build_id"), "Bad build_id")
        priority = integer(one(args, "priority"), "Bad priority", default=0)
        count = integer(one(args, "count"), "Bad count", default=1, minimum=1)
        await self.build_on(branch, build_id)
        return await self.submit(request, "rebuild_build", who, {"bid": build_id, "priority": priority,
                                                                 "count": count})

    @app.route("/<branch>/build/<build_id>", methods=["DELETE"])
    @handled
    async def cancel_build(self, request: IRequest, branch: str, build_id: str) -> bytes:
        """Queue the cancelling of a build."""
        who = self.user(request, "cancel_build")
        await self.branch(branch)
        bid = integer(build_id, "Non-integer build_id")
        build = await self.build_on(branch, bid)
        if build["complete"]:
            raise Failed(400, "Build already complete")
        return await self.submit(request, "cancel_build", who, {"bid": bid})

    @app.route("/<branch>/build/<build_id>", methods=None)
    @handled
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
    @handled
    async def rebuild_request(self, request: IRequest, branch: str) -> bytes:
        """Queue a rebuild of ``request_id``."""
        who = self.user(request, "rebuild_request")
        await self.branch(branch)
        args = request.selfserve_args
        request_id = integer(one(args, "request_id"), "Bad request_id")
        priority = integer(one(args, "priority"), "Bad priority", default=0)
        count = integer(one(args, "count"), "Bad count", default=1, minimum=1)
        await self.request_on(branch, request_id)
        return await self.submit(request, "rebuild_request", who, {"brid": request_id, "priority": priority,
                                                                   "count": count})

    @app.route("/<branch>/request/<request_id>", methods=["DELETE"])
    @handled
    async def cancel_request(self, request: IRequest, branch: str, request_id: str) -> bytes:
        """Queue the cancelling of a request (a running one's build is stopped)."""
        who = self.user(request, "cancel_request")
        await self.branch(branch)
        brid = integer(request_id, "Non-integer request_id")
        found = await self.request_on(branch, brid)
        if found["complete"]:
            raise Failed(400, "Request already complete")
        return await self.submit(request, "cancel_request", who, {"brid": brid})

    @app.route("/<branch>/request/<request_id>", methods=["PUT"])
    @handled
    async def reprioritize(self, request: IRequest, branch: str, request_id: str) -> bytes:
        """Queue a new priority for a pending request."""
        who = self.user(request, "reprioritize")
        await self.branch(branch)
        brid = integer(request_id, "Bad request_id")
        priority = integer(one(request.selfserve_args, "priority"), "Bad priority")
        found = await self.request_on(branch, brid)
        if found["complete"]:
            raise Failed(400, "Request already complete")
        if found["claimed"]:
            raise Failed(400, "Request is already running")
        return await self.submit(request, "reprioritize", who, {"brid": brid, "priority": priority})

    @app.route("/<branch>/request/<request_id>", methods=None)
    @handled
    async def request_info(self, request: IRequest, branch: str, request_id: str) -> bytes:
        """One request, with its properties and builds."""
        self.check_read(request, "selfserverequests")
        await self.branch(branch)
        found = await self.request_on(branch, integer(request_id, "Bad request_id"), detailed=True)
        return respond(request, queries.request_object(found, branch, detailed=True), title=f"request {request_id}")

    # -- revisions --

    @app.route("/<branch>/rev/<revision>", methods=["DELETE"])
    @handled
    async def cancel_revision(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue the cancelling of every pending request and running build at the revision."""
        who = self.user(request, "cancel_revision")
        await self.branch(branch)
        if not await self._revision_known(branch, revision):
            raise Failed(404, f"Revision {revision} not found on branch {branch}")
        return await self.submit(request, "cancel_revision", who, {"branch": branch, "revision": revision[:12]})

    @app.route("/<branch>/rev/<revision>", methods=["POST"])
    @handled
    async def new_build_at_revision(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue new builds of the branch's builders at the revision."""
        who = self.user(request, "new_build_at_revision")
        await self.branch(branch)
        return await self.submit(request, "new_build_at_revision", who, {"branch": branch, "revision": revision})

    @app.route("/<branch>/rev/<revision>", methods=None)
    @handled
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
    @handled
    async def is_done(self, request: IRequest, branch: str, revision: str) -> bytes:
        """``{"job_complete", "job_passed", "stableDelay"}`` of the builds at the revision."""
        self.check_read(request, "selfservebuilds")
        await self.branch(branch)
        try:
            delay = int(one(request.selfserve_args, "stableDelay") or STABLE_DELAY)
        except ValueError:
            delay = STABLE_DELAY
        builds = await queries.builds_at_revision(self.data, branch, revision)
        waiting = await queries.requests_at_revision(self.data, branch, revision, complete="false")
        if not builds and not waiting:
            raise Failed(404, f"Revision {revision} not found on branch {branch}")
        moment = now()
        complete = not waiting and all(b["endtime"] is not None and moment - b["endtime"] >= delay for b in builds)
        passed = complete and all(b["status"] in (SUCCESS, RETRY) for b in builds)
        return respond(request, {"stableDelay": delay, "job_complete": complete, "job_passed": passed},
                       title=f"is {branch} at {revision} done?")

    @app.route("/<branch>/rev/<revision>/nightly", methods=["POST"])
    @handled
    async def new_nightly(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue nightly builds at the revision."""
        return await self._new_kind(request, branch, revision, "new_nightly_at_revision")

    @app.route("/<branch>/rev/<revision>/pgo", methods=["POST"])
    @handled
    async def new_pgo(self, request: IRequest, branch: str, revision: str) -> bytes:
        """Queue PGO builds at the revision."""
        return await self._new_kind(request, branch, revision, "new_pgobuild_at_revision")

    async def _new_kind(self, request: IRequest, branch: str, revision: str, action: str) -> bytes:
        who = self.user(request, action)
        await self.branch(branch)
        priority = integer(one(request.selfserve_args, "priority"), "Bad priority", default=0)
        return await self.submit(request, action, who, {"branch": branch, "revision": revision, "priority": priority})

    @app.route("/<branch>/builders/<builder_name>/<revision>", methods=["POST"])
    @handled
    async def new_build_for_builder(self, request: IRequest, branch: str, builder_name: str, revision: str) -> bytes:
        """Queue a build of one builder at the revision."""
        who = self.user(request, "new_build_for_builder")
        found = await self.branch(branch)
        args = request.selfserve_args
        priority = integer(one(args, "priority"), "Bad priority", default=0)
        properties = json_param(one(args, "properties"), dict, {})
        files = json_param(one(args, "files"), list, [])
        if builder_name not in {b["name"] for b in await queries.branch_builders(self.data, found)}:
            raise Failed(404, f"Builder {builder_name} not found on branch {branch}")
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

    # -- no route --

    @app.handle_errors(NotFound)
    def not_found(self, request: IRequest, failure: Any) -> bytes:
        """No route has this path."""
        return failed(request, 404, f"No such self-serve path: {request.path.decode('utf-8', 'replace')}")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request: IRequest, failure: Any) -> bytes:
        """The path takes other methods."""
        return failed(request, 405, f"Method {request.method.decode('latin-1')} is not allowed here")


def job_object(job: dict[str, Any]) -> dict[str, Any]:
    """BuildAPI's job object (plus ``request_id``, the job's id, to link to it)."""
    return {
        "request_id": job["jobid"],
        "action": job["action"],
        "who": job["who"],
        "when": job["when"],
        "what": job["what"],
        "completed_at": job["completed_at"],
        "complete_data": job["complete_data"],
    }
