"""The reads behind the routes, every one through ``data.get`` with its result spec pushed into SQL.

Ids are resolved by their trailing number (buildset or build request id), then checked
whole against the id the entities make, so that a wrong prefix is not found rather than
aliased to another version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from master.sdk import DataAPI, Filter, ResultSpec
from plugins.evergreen import mapping as m
from plugins.evergreen.documents import VersionView

PAGE = 1000
TASK_FIELDS = (
    "taskid", "buildsetid", "builderid", "projectid", "variant", "variant_name", "task_name", "priority",
    "submitted_at", "claimed", "claimed_at", "held", "complete", "results", "complete_at", "buildid",
    "build_started_at", "build_complete_at", "build_results", "workername", "started_at", "last_heartbeat",
    "executions", "timeout_stage",
)
"""Every task field but ``expected_duration``, which only a single task's document needs."""
TASK_ORDER = ("buildsetid", "variant", "task_name", "taskid")


class Reader:
    """Evergreen's objects read from a DataAPI."""

    def __init__(self, data: DataAPI) -> None:
        self.data = data

    async def _all(self, path: tuple[str, ...], filters: list[Filter], order: Sequence[str],
                   fields: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every entity of a collection, a page of :data:`PAGE` at a time (bounded by the total)."""
        items: list[dict[str, Any]] = []
        while True:
            spec = ResultSpec(fields=tuple(fields) if fields else None, filters=list(filters), order=tuple(order),
                              limit=PAGE, offset=len(items))
            found = await self.data.get(path, spec=spec)
            items.extend(found.items)
            if not found.items or len(items) >= found.total:
                return items

    # -- projects ----------------------------------------------------------------------------

    async def project_id(self, name: str) -> int | None:
        """The id of the ci-master project named *name*, or None."""
        spec = ResultSpec(fields=("projectid",), filters=[Filter("name", "eq", (name,))], limit=1)
        found = (await self.data.get(("projects",), spec=spec)).items
        return found[0]["projectid"] if found else None

    async def project_names(self, ids: Sequence[int]) -> dict[int, str]:
        """``{projectid: name}`` of *ids*."""
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        found = await self._all(("projects",), [Filter("projectid", "in", tuple(wanted))], ("projectid",),
                                ("projectid", "name"))
        return {project["projectid"]: project["name"] for project in found}

    async def builder_count(self, projectid: int) -> int:
        """How many builders the project has (a bound on the variants of one task name)."""
        spec = ResultSpec(fields=("builderid",), limit=1)
        return (await self.data.get(("projects", str(projectid), "builders"), spec=spec)).total

    # -- tasks and versions --------------------------------------------------------------------

    async def tasks(self, bsids: Sequence[int], projectid: int | None) -> list[dict[str, Any]]:
        """The tasks of buildsets *bsids*, of *projectid*'s builders (of any project's, when None)."""
        if not bsids:
            return []
        filters = [Filter("buildsetid", "in", tuple(sorted(set(bsids))))]
        if projectid is not None:
            filters.append(Filter("projectid", "eq", (projectid,)))
        return await self._all(("evergreen_tasks",), filters, TASK_ORDER, TASK_FIELDS)

    async def views(self, project: str, projectid: int, versions: list[dict[str, Any]]) -> list[VersionView]:
        """A view of each of *versions* in *project*, with its tasks, in the order given."""
        tasks = await self.tasks([v["bsid"] for v in versions], projectid)
        by_bsid: dict[int, list[Mapping[str, Any]]] = {}
        for task in tasks:
            by_bsid.setdefault(task["buildsetid"], []).append(task)
        return [VersionView(project, version, by_bsid.get(version["bsid"], [])) for version in versions]

    async def project_versions(
        self, projectid: int, limit: int, before: int | None, revision: str | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The newest *limit* versions of a project (their bsid below *before*), and how many match in all.

        Buildsets that a Trigger step submitted belong to their parent's work and are left out,
        as Evergreen lists only versions made from commits.
        """
        filters = [Filter("triggered", "eq", (False,))]
        if before is not None:
            filters.append(Filter("bsid", "lt", (before,)))
        if revision is not None:
            filters.append(Filter("revision", "eq", (revision,)))
        spec = ResultSpec(filters=filters, order=("-bsid",), limit=limit)
        found = await self.data.get(("projects", str(projectid), "evergreen_versions"), spec=spec)
        return found.items, found.total

    async def version(self, version_id: str) -> VersionView | None:
        """The version of id *version_id*, or None."""
        bsid = m.trailing_number(version_id)
        if bsid is None:
            return None
        version = await self.data.get(("evergreen_versions", str(bsid)))
        if version is None:
            return None
        suffix = f"_{m.revision_part(version['revision'])}_{bsid}"
        if not version_id.endswith(suffix):
            return None
        project = version_id[: -len(suffix)]
        projectid = await self.project_id(project)
        if projectid is None:
            return None
        view = (await self.views(project, projectid, [version]))[0]
        return view if view.tasks else None

    async def build(self, build_id: str) -> tuple[VersionView, str] | None:
        """The version and variant of the Evergreen build *build_id*, or None."""
        bsid = m.trailing_number(build_id)
        if bsid is None:
            return None
        version = await self.data.get(("evergreen_versions", str(bsid)))
        if version is None:
            return None
        tasks = [task for task in await self.tasks([bsid], None) if task["projectid"] is not None]
        names = await self.project_names([task["projectid"] for task in tasks])
        for projectid, name in names.items():
            view = VersionView(name, version, [task for task in tasks if task["projectid"] == projectid])
            for variant in view.variants():
                if view.build_id(variant) == build_id:
                    return view, variant
        return None

    async def task(self, task_id: str) -> tuple[VersionView, dict[str, Any]] | None:
        """The task *task_id* (with ``expected_duration``) and its version, or None."""
        brid = m.trailing_number(task_id)
        if brid is None:
            return None
        task = await self.data.get(("evergreen_tasks", str(brid)))
        if task is None or task["projectid"] is None:
            return None
        version = await self.data.get(("evergreen_versions", str(task["buildsetid"])))
        names = await self.project_names([task["projectid"]])
        view = VersionView(names[task["projectid"]], version, [task])
        if view.task_id(task) != task_id:
            return None
        return view, task

    async def test_results(self, buildids: Sequence[int | None], status: str | None = None) -> list[dict[str, Any]]:
        """The test results of builds *buildids* (only those of *status*, if given), in file order."""
        wanted = tuple(sorted({i for i in buildids if i is not None}))
        if not wanted:
            return []
        filters = [Filter("buildid", "in", wanted)]
        if status is not None:
            filters.append(Filter("status", "eq", (status,)))
        return await self._all(("evergreen_test_results",), filters, ("buildid", "testresultid"))

    async def history(self, projectid: int, task_name: str, revisions: int) -> tuple[list[int], bool]:
        """The newest *revisions* buildsets running task *task_name* in a project, and whether no older one exists.

        One request per builder and buildset, so ``(revisions + 1) x builders`` tasks cover
        one more buildset than asked, which tells whether the history goes further back.
        """
        builders = await self.builder_count(projectid)
        if builders == 0:
            return [], True
        filters = [Filter("projectid", "eq", (projectid,)), Filter("task_name", "eq", (task_name,))]
        spec = ResultSpec(fields=("taskid", "buildsetid"), filters=filters, order=("-buildsetid", "taskid"),
                          limit=min((revisions + 1) * builders, self.data.limits.maximum))
        found = await self.data.get(("evergreen_tasks",), spec=spec)
        bsids = list(dict.fromkeys(task["buildsetid"] for task in found.items))
        exhausted = len(bsids) <= revisions and found.total <= len(found.items)
        return bsids[:revisions], exhausted
