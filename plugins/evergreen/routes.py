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
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException

from master.sdk import AuthError, DataError, HttpError, JsonApi, PluginContext, handler, read_body
from plugins.evergreen import documents as docs
from plugins.evergreen.access import api_user, reader_user
from plugins.evergreen.reads import Reader

JSON = b"application/json; charset=utf-8"
DEFAULT_LIMIT = 10
"""Versions per page of ``projects/{id}/versions`` when no ``limit`` is given (Evergreen's NumRecentVersions)."""
HISTORY_REVISIONS = 10
"""Revisions in a task history (Evergreen's MaxNumRevisions)."""
GROUP_BY = ("tasks", "builds")


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
        raise HttpError(400, f"'{name}' is not valid UTF-8") from None


def _site_url(request: IRequest) -> str:
    """``scheme://host`` the client used to reach us."""
    host = (request.getHeader(b"host") or b"").decode("latin-1") or f"{request.getHost().host}:{request.getHost().port}"
    return f"{'https' if request.isSecure() else 'http'}://{host}"


class EvergreenApi(JsonApi):
    """The routes over one plugin context; ``resource()`` is what the plugin mounts."""

    app = JsonApi.klein()
    auth_challenge = b'Basic realm="ci-master"'

    def __init__(self, ctx: PluginContext | Any) -> None:
        super().__init__(ctx)
        self.reader = Reader(self.data)

    # -- Evergreen's wire format ----------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        """``{"message": message}``."""
        return {"message": message}

    def render(self, request: IRequest, body: Any, status: int = 200) -> bytes:
        """Indented JSON and a trailing newline (:func:`reply`)."""
        return reply(request, body, status)

    def auth_error(self, request: IRequest, error: AuthError) -> HttpError:
        """``unauthorized: <why>`` with its 401 (and a Basic challenge) or 403."""
        refused = super().auth_error(request, error)
        return HttpError(refused.status, f"unauthorized: {error.message}", refused.headers)

    def routing_error(self, request: IRequest, error: HTTPException) -> HttpError:
        """404 for a path that is no route, 405 (with ``Allow``) for a route's other methods."""
        if error.code == 405:
            allowed = ", ".join(getattr(error, "valid_methods", None) or ())
            return HttpError(405, f"method {request.method.decode(errors='replace')} is not allowed; use {allowed}",
                             {"Allow": allowed})
        return HttpError(404, f"no such route: {request.path.decode(errors='replace')}")

    def before(self, request: IRequest) -> None:
        """A GET reads as its caller: ``Api-User``/``Api-Key``, or the master's own credentials."""
        if request.method in (b"GET", b"HEAD"):
            self.auth.scope_reads(request, reader_user(request, self.auth))

    # -- projects -------------------------------------------------------------------------------

    @app.route("/projects/<project>/versions", methods=["GET"])
    @handler
    async def project_versions(self, request: IRequest, project: str) -> Any:
        """The newest versions of a project, ``limit`` per page from ``start`` (an ``order``) down."""
        return await self._project_versions(request, project)

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
            raise HttpError(400, f"Error parsing '{raw}' as an integer for 'limit'") from None
        if not 1 <= limit <= maximum:
            raise HttpError(400, f"'limit' must be between 1 and {maximum}, not {limit}")
        return limit

    @staticmethod
    def _start(request: IRequest) -> int | None:
        raw = _arg(request, "start")
        if raw is None:
            return None
        try:
            start = int(raw)
        except ValueError:
            raise HttpError(400, "'start' query parameter must be a valid integer") from None
        if start < 0:
            raise HttpError(400, "'start' must be a non-negative integer")
        return start

    @app.route("/projects/<project>/revisions/<revision>", methods=["GET"])
    @handler
    async def project_revision(self, request: IRequest, project: str, revision: str) -> Any:
        """The newest version of a project at a revision."""
        return await self._project_revision(project, revision)

    async def _project_revision(self, project: str, revision: str) -> dict[str, Any]:
        projectid = await self.reader.project_id(project)
        if projectid is None:
            raise HttpError(400, "project doesn't exist")
        versions, _ = await self.reader.project_versions(projectid, 1, None, revision)
        views = await self.reader.views(project, projectid, versions)
        if not views:
            raise HttpError(404, f"Error finding revision '{revision}' for project '{project}'")
        return docs.version_document(views[0])

    # -- versions -------------------------------------------------------------------------------

    async def _version(self, version_id: str) -> docs.VersionView:
        view = await self.reader.version(version_id)
        if view is None:
            raise HttpError(404, "error finding version")
        return view

    @app.route("/versions/<version_id>", methods=["GET"])
    @handler
    async def version(self, request: IRequest, version_id: str) -> Any:
        """A version."""

        async def work() -> dict[str, Any]:
            return docs.version_document(await self._version(version_id))

        return await work()

    @app.route("/versions/<version_id>", methods=["PATCH"])
    @handler
    async def patch_version(self, request: IRequest, version_id: str) -> Any:
        """Activate or deactivate a version: ``{"activated": bool}``; replies with the version."""
        return await self._patch_version(request, version_id)

    async def _patch_version(self, request: IRequest, version_id: str) -> dict[str, Any]:
        user = api_user(request, self.auth)
        try:
            body = json.loads(read_body(request) or b"{}")
        except ValueError as e:
            raise HttpError(400, f"problem parsing input: {e}") from None
        if not isinstance(body, dict):
            raise HttpError(400, "problem parsing input: expected a JSON object")
        activated = body.get("activated")
        if activated is not None and not isinstance(activated, bool):
            raise HttpError(400, "'activated' must be true or false")
        view = await self._version(version_id)
        if activated is not None:
            projectid = view.tasks[0]["projectid"]
            try:
                await self.data.control(("evergreen_versions", str(view.bsid)), "set_activation",
                                        {"activated": activated, "projectid": projectid}, user)
            except DataError as e:
                raise HttpError(400, e.message) from None
            view = await self._version(version_id)
        return docs.version_document(view)

    @app.route("/versions/<version_id>/status", methods=["GET"])
    @handler
    async def version_status(self, request: IRequest, version_id: str) -> Any:
        """The statuses of a version's tasks, by task (``groupby=tasks``) or by build variant (``builds``)."""

        async def work() -> dict[str, Any]:
            group_by = _arg(request, "groupby") or "tasks"
            if group_by not in GROUP_BY:
                raise HttpError(400, f"Invalid groupby parameter '{group_by}'")
            return docs.version_status(await self._version(version_id), group_by)

        return await work()

    # -- builds ---------------------------------------------------------------------------------

    async def _build(self, build_id: str) -> tuple[docs.VersionView, str]:
        found = await self.reader.build(build_id)
        if found is None:
            raise HttpError(404, "error finding build")
        return found

    @app.route("/builds/<build_id>", methods=["GET"])
    @handler
    async def build(self, request: IRequest, build_id: str) -> Any:
        """A build: one variant's tasks in a version."""

        async def work() -> dict[str, Any]:
            return docs.build_document(*await self._build(build_id))

        return await work()

    @app.route("/builds/<build_id>/status", methods=["GET"])
    @handler
    async def build_status(self, request: IRequest, build_id: str) -> Any:
        """The statuses of a build's tasks."""

        async def work() -> dict[str, Any]:
            return docs.build_status(*await self._build(build_id))

        return await work()

    # -- tasks ----------------------------------------------------------------------------------

    async def _task(self, request: IRequest, task_id: str) -> tuple[docs.VersionView, dict[str, Any], dict]:
        found = await self.reader.task(task_id)
        if found is None:
            raise HttpError(404, "error finding task")
        view, task = found
        tests = await self.reader.test_results([task["buildid"]])
        site = _site_url(request)

        def log_url(logid: int | None) -> str:
            return f"{site}/api/v2/logs/{logid}/raw_inline" if logid is not None else ""

        return view, task, docs.test_results_map(tests, log_url)

    @app.route("/tasks/<task_id>", methods=["GET"])
    @handler
    async def task(self, request: IRequest, task_id: str) -> Any:
        """A task, with its test results."""

        async def work() -> dict[str, Any]:
            return docs.task_document(*await self._task(request, task_id))

        return await work()

    @app.route("/tasks/<task_id>/status", methods=["GET"])
    @handler
    async def task_status(self, request: IRequest, task_id: str) -> Any:
        """A task's status and test results."""

        async def work() -> dict[str, Any]:
            return docs.task_status_document(*await self._task(request, task_id))

        return await work()

    @app.route("/tasks/<task_name>/history", methods=["GET"])
    @handler
    async def task_history(self, request: IRequest, task_name: str) -> Any:
        """The task *task_name* in the newest versions of a project (``project=``, or ``project_id=``)."""
        return await self._history(request, task_name)

    async def _history(self, request: IRequest, task_name: str) -> dict[str, Any]:
        # the documentation says project=, Evergreen's code read project_id=: both are accepted
        project = _arg(request, "project") or _arg(request, "project_id")
        if not project:
            raise HttpError(400, "project id must not be empty: give ?project=<id>")
        projectid = await self.reader.project_id(project)
        if projectid is None:
            raise HttpError(404, f"error loading project '{project}'")
        bsids, exhausted = await self.reader.history(projectid, task_name, HISTORY_REVISIONS)
        versions = [await self.data.get(("evergreen_versions", str(bsid))) for bsid in bsids]
        views = await self.reader.views(project, projectid, [v for v in versions if v is not None])
        named = [task for view in views for task in view.tasks if task["task_name"] == task_name]
        failed: dict[int, list[str]] = {}
        build_tasks = {task["buildid"]: task["taskid"] for task in named if task["buildid"] is not None}
        for test in await self.reader.test_results(list(build_tasks), status="fail"):
            failed.setdefault(build_tasks[test["buildid"]], []).append(test["name"])
        return docs.history_document(views, task_name, failed, exhausted)
