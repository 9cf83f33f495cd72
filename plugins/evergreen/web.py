"""Evergreen's REST v1 routes (Klein, mounted at ``/rest/v1``), answered from the data API.

Replies are indented JSON with ``Content-Type: application/json; charset=utf-8``, as
Evergreen writes them; errors are ``{"message": ...}``: 404 for an unknown version, build
or task (and unknown paths), 400 for a bad ``groupby``, ``limit``, ``start``, ``project``
or PATCH body, 401 for a PATCH without a valid ``Api-User`` and ``Api-Key``, 405 for
another method.  Reads go through :class:`plugins.evergreen.reads.Reader`; the PATCH runs
the ``set_activation`` action of ``evergreen_versions``.

Under the master's ``Auth.read_rules`` a GET reads as its caller (``Api-User``/``Api-Key``,
or a Bearer token, Basic password or session cookie): every resource type it reads
(``projects``, ``builders``, ``evergreen_versions``, ``evergreen_tasks``,
``evergreen_test_results``) needs a read rule, as on ``/api/v2``; else 401 or 403.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import orjson
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from master.data.errors import DataError, InvalidQuery
from master.www.auth import AuthError, scope_plugin_reads
from plugins.evergreen import documents as docs
from plugins.evergreen.reads import Reader

log = Logger()

JSON = b"application/json; charset=utf-8"
DEFAULT_LIMIT = 10
"""Versions per page of ``projects/{id}/versions`` when no ``limit`` is given (Evergreen's NumRecentVersions)."""
HISTORY_REVISIONS = 10
"""Revisions in a task history (Evergreen's MaxNumRevisions)."""
GROUP_BY = ("tasks", "builds")


class ApiError(Exception):
    """An error reply: *status* and the message of ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def reply(request: IRequest, body: Any, status: int = 200) -> bytes:
    """Indented JSON and a trailing newline, as Evergreen's ``json.MarshalIndent`` replies look."""
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", JSON)
    encoded = orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n"
    request.setHeader(b"Content-Length", b"%d" % len(encoded))
    return encoded


def _arg(request: IRequest, name: str) -> str | None:
    values = request.args.get(name.encode())
    if not values:
        return None
    try:
        return values[-1].decode()
    except UnicodeDecodeError:
        raise ApiError(400, f"'{name}' is not valid UTF-8") from None


def _site_url(request: IRequest) -> str:
    """``scheme://host`` the client used to reach us."""
    host = (request.getHeader(b"host") or b"").decode("latin-1") or f"{request.getHost().host}:{request.getHost().port}"
    return f"{'https' if request.isSecure() else 'http'}://{host}"


class EvergreenApi:
    """The routes over one DataAPI; ``resource()`` is what the plugin mounts."""

    app = Klein()

    def __init__(self, data: Any) -> None:
        self.data = data
        self.reader = Reader(data)

    def resource(self) -> Any:
        """The twisted.web resource serving the routes."""
        return self.app.resource()

    def _run(self, request: IRequest, work: Any) -> defer.Deferred:
        """Answer with what *work* returns, or its ApiError; anything else is logged and a 500."""

        async def answer() -> bytes:
            try:
                if request.method in (b"GET", b"HEAD"):
                    try:
                        scope_plugin_reads(self.data, request, self._reader_user(request))
                    except BaseException:
                        work.close()  # never started: say so, or Python warns it was never awaited
                        raise
                return reply(request, await work)
            except ApiError as e:
                return reply(request, {"message": e.message}, e.status)
            except AuthError as e:
                if e.status == 401:
                    request.setHeader(b"WWW-Authenticate", b'Basic realm="ci-master"')
                return reply(request, {"message": f"unauthorized: {e.message}"}, e.status)
            except InvalidQuery as e:  # a value no field can hold (beyond 64 bits, a NUL), refused by the data API
                return reply(request, {"message": e.message}, 400)
            except defer.CancelledError:
                raise
            except Exception:
                log.failure("Evergreen REST {method} {uri} failed", method=request.method, uri=request.uri)
                return reply(request, {"message": "internal error (logged on the master)"}, 500)

        return defer.ensureDeferred(answer())

    # -- projects -------------------------------------------------------------------------------

    @app.route("/projects/<project>/versions", methods=["GET"])
    def project_versions(self, request: IRequest, project: str) -> defer.Deferred:
        """The newest versions of a project, ``limit`` per page from ``start`` (an ``order``) down."""
        return self._run(request, self._project_versions(request, project))

    async def _project_versions(self, request: IRequest, project: str) -> dict[str, Any]:
        limit = self._limit(request)
        start = self._start(request)
        projectid = await self.reader.project_id(project)
        if projectid is None:
            return {"project": project, "versions": []}  # as Evergreen: an unknown project has no versions
        versions, total = await self.reader.project_versions(projectid, limit, start)
        views = await self.reader.views(project, projectid, versions)
        if total > len(versions):
            # the next page starts below the last version shown: none is skipped
            query = urlencode({"limit": limit, "start": versions[-1]["bsid"]})
            request.setHeader(b"Link", f'<{_site_url(request)}{request.path.decode()}?{query}>; rel="next"'.encode())
        return {"project": project, "versions": [docs.versions_list_item(view) for view in views]}

    def _limit(self, request: IRequest) -> int:
        raw = _arg(request, "limit")
        if raw is None:
            return DEFAULT_LIMIT
        maximum = self.data.limits.maximum
        try:
            limit = int(raw)
        except ValueError:
            raise ApiError(400, f"Error parsing '{raw}' as an integer for 'limit'") from None
        if not 1 <= limit <= maximum:
            raise ApiError(400, f"'limit' must be between 1 and {maximum}, not {limit}")
        return limit

    @staticmethod
    def _start(request: IRequest) -> int | None:
        raw = _arg(request, "start")
        if raw is None:
            return None
        try:
            start = int(raw)
        except ValueError:
            raise ApiError(400, "'start' query parameter must be a valid integer") from None
        if start < 0:
            raise ApiError(400, "'start' must be a non-negative integer")
        return start

    @app.route("/projects/<project>/revisions/<revision>", methods=["GET"])
    def project_revision(self, request: IRequest, project: str, revision: str) -> defer.Deferred:
        """The newest version of a project at a revision."""
        return self._run(request, self._project_revision(project, revision))

    async def _project_revision(self, project: str, revision: str) -> dict[str, Any]:
        projectid = await self.reader.project_id(project)
        if projectid is None:
            raise ApiError(400, "project doesn't exist")
        versions, _ = await self.reader.project_versions(projectid, 1, None, revision)
        views = await self.reader.views(project, projectid, versions)
        if not views:
            raise ApiError(404, f"Error finding revision '{revision}' for project '{project}'")
        return docs.version_document(views[0])

    # -- versions -------------------------------------------------------------------------------

    async def _version(self, version_id: str) -> docs.VersionView:
        view = await self.reader.version(version_id)
        if view is None:
            raise ApiError(404, "error finding version")
        return view

    @app.route("/versions/<version_id>", methods=["GET"])
    def version(self, request: IRequest, version_id: str) -> defer.Deferred:
        """A version."""

        async def work() -> dict[str, Any]:
            return docs.version_document(await self._version(version_id))

        return self._run(request, work())

    @app.route("/versions/<version_id>", methods=["PATCH"])
    def patch_version(self, request: IRequest, version_id: str) -> defer.Deferred:
        """Activate or deactivate a version: ``{"activated": bool}``; replies with the version."""
        return self._run(request, self._patch_version(request, version_id))

    async def _patch_version(self, request: IRequest, version_id: str) -> dict[str, Any]:
        user = self._api_user(request)
        try:
            body = json.loads(request.content.read() or b"{}")
        except ValueError as e:
            raise ApiError(400, f"problem parsing input: {e}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "problem parsing input: expected a JSON object")
        activated = body.get("activated")
        if activated is not None and not isinstance(activated, bool):
            raise ApiError(400, "'activated' must be true or false")
        view = await self._version(version_id)
        if activated is not None:
            projectid = view.tasks[0]["projectid"]
            try:
                await self.data.control(("evergreen_versions", str(view.bsid)), "set_activation",
                                        {"activated": activated, "projectid": projectid}, user)
            except DataError as e:
                raise ApiError(400, e.message) from None
            view = await self._version(version_id)
        return docs.version_document(view)

    def _reader_user(self, request: IRequest) -> Any:
        """Who reads: the ``Api-User`` whose token is ``Api-Key``, else the master's credentials' user, else None.

        Evergreen's clients send ``Api-User``/``Api-Key`` on every call; others may log in as on
        ``/api/v2`` (Bearer token, Basic password, session cookie).
        """
        auth = getattr(self.data, "auth", None)
        if auth is None or not auth.restricts_reads:
            return None
        name = (request.getHeader(b"api-user") or b"").decode("latin-1").strip()
        key = (request.getHeader(b"api-key") or b"").decode("latin-1").strip()
        if name or key:
            user = auth.users.by_token(key) if key else None
            if user is None or user.name != name:
                raise AuthError(401, "unknown Api-User or wrong Api-Key")
            return user
        return auth.authenticate(request)

    def _api_user(self, request: IRequest) -> Any:
        """The ci-master user named by ``Api-User`` whose API token is ``Api-Key``, allowed to activate; else 401."""
        name = (request.getHeader(b"api-user") or b"").decode("latin-1").strip()
        key = (request.getHeader(b"api-key") or b"").decode("latin-1").strip()
        auth = getattr(self.data, "auth", None)
        if not name or not key:
            raise ApiError(401, "unauthorized: send the Api-User and Api-Key headers")
        if auth is None or not auth.enabled:
            raise ApiError(401, "unauthorized: this master has no users (auth is off in master.cfg)")
        user = auth.users.by_token(key)
        if user is None or user.name != name:
            raise ApiError(401, "unauthorized: unknown Api-User or wrong Api-Key")
        try:
            auth.authorize(user, "evergreen_versions", "set_activation")
        except AuthError:
            raise ApiError(401, "not authorized to modify this version") from None
        return user

    @app.route("/versions/<version_id>/status", methods=["GET"])
    def version_status(self, request: IRequest, version_id: str) -> defer.Deferred:
        """The statuses of a version's tasks, by task (``groupby=tasks``) or by build variant (``builds``)."""

        async def work() -> dict[str, Any]:
            group_by = _arg(request, "groupby") or "tasks"
            if group_by not in GROUP_BY:
                raise ApiError(400, f"Invalid groupby parameter '{group_by}'")
            return docs.version_status(await self._version(version_id), group_by)

        return self._run(request, work())

    # -- builds ---------------------------------------------------------------------------------

    async def _build(self, build_id: str) -> tuple[docs.VersionView, str]:
        found = await self.reader.build(build_id)
        if found is None:
            raise ApiError(404, "error finding build")
        return found

    @app.route("/builds/<build_id>", methods=["GET"])
    def build(self, request: IRequest, build_id: str) -> defer.Deferred:
        """A build: one variant's tasks in a version."""

        async def work() -> dict[str, Any]:
            return docs.build_document(*await self._build(build_id))

        return self._run(request, work())

    @app.route("/builds/<build_id>/status", methods=["GET"])
    def build_status(self, request: IRequest, build_id: str) -> defer.Deferred:
        """The statuses of a build's tasks."""

        async def work() -> dict[str, Any]:
            return docs.build_status(*await self._build(build_id))

        return self._run(request, work())

    # -- tasks ----------------------------------------------------------------------------------

    async def _task(self, request: IRequest, task_id: str) -> tuple[docs.VersionView, dict[str, Any], dict]:
        found = await self.reader.task(task_id)
        if found is None:
            raise ApiError(404, "error finding task")
        view, task = found
        tests = await self.reader.test_results([task["buildid"]])
        site = _site_url(request)

        def log_url(logid: int | None) -> str:
            return f"{site}/api/v2/logs/{logid}/raw_inline" if logid is not None else ""

        return view, task, docs.test_results_map(tests, log_url)

    @app.route("/tasks/<task_id>", methods=["GET"])
    def task(self, request: IRequest, task_id: str) -> defer.Deferred:
        """A task, with its test results."""

        async def work() -> dict[str, Any]:
            return docs.task_document(*await self._task(request, task_id))

        return self._run(request, work())

    @app.route("/tasks/<task_id>/status", methods=["GET"])
    def task_status(self, request: IRequest, task_id: str) -> defer.Deferred:
        """A task's status and test results."""

        async def work() -> dict[str, Any]:
            return docs.task_status_document(*await self._task(request, task_id))

        return self._run(request, work())

    @app.route("/tasks/<task_name>/history", methods=["GET"])
    def task_history(self, request: IRequest, task_name: str) -> defer.Deferred:
        """The task *task_name* in the newest versions of a project (``project=``, or ``project_id=``)."""
        return self._run(request, self._history(request, task_name))

    async def _history(self, request: IRequest, task_name: str) -> dict[str, Any]:
        # the documentation says project=, Evergreen's code read project_id=: both are accepted
        project = _arg(request, "project") or _arg(request, "project_id")
        if not project:
            raise ApiError(400, "project id must not be empty: give ?project=<id>")
        projectid = await self.reader.project_id(project)
        if projectid is None:
            raise ApiError(404, f"error loading project '{project}'")
        bsids, exhausted = await self.reader.history(projectid, task_name, HISTORY_REVISIONS)
        versions = [await self.data.get(("evergreen_versions", str(bsid))) for bsid in bsids]
        views = await self.reader.views(project, projectid, [v for v in versions if v is not None])
        named = [task for view in views for task in view.tasks if task["task_name"] == task_name]
        failed: dict[int, list[str]] = {}
        build_tasks = {task["buildid"]: task["taskid"] for task in named if task["buildid"] is not None}
        for test in await self.reader.test_results(list(build_tasks), status="fail"):
            failed.setdefault(build_tasks[test["buildid"]], []).append(test["name"])
        return docs.history_document(views, task_name, failed, exhausted)

    # -- anything else --------------------------------------------------------------------------

    @app.handle_errors
    def errors(self, request: IRequest, failure: Any) -> bytes:
        """Routing errors as JSON: 404 for a path that is no route, 405 for a route's other methods."""
        if failure.check(NotFound):
            return reply(request, {"message": f"no such route: {request.path.decode(errors='replace')}"}, 404)
        if failure.check(MethodNotAllowed):
            allowed = ", ".join(failure.value.valid_methods or ())
            request.setHeader(b"Allow", allowed.encode())
            return reply(request, {"message": f"method {request.method.decode(errors='replace')} is not allowed; "
                                              f"use {allowed}"}, 405)
        log.failure("Evergreen REST {uri} failed", failure, uri=request.uri)
        return reply(request, {"message": "internal error (logged on the master)"}, 500)
