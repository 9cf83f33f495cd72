"""The plugin's resource types: Evergreen's tasks, versions and test results over ci-master's tables.

``evergreen_tasks`` and ``evergreen_versions`` are views: their SQL sources read the core
tables (build requests with their builder and latest build; buildsets with their source
stamp and change), so result specs are pushed into SQL like any core getter, and nothing
is copied.  ``evergreen_test_results`` reads the plugin's own table.  Writes go through
update methods: activation holds and releases build requests with the core's
``claim_buildrequests`` / ``unclaim_buildrequests``, and test results are inserted here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa

from master.sdk import (
    SUCCESS,
    Action,
    ActionCall,
    Boolean,
    DataAPI,
    DateTime,
    Endpoint,
    Field,
    FieldType,
    Filter,
    Integer,
    IntegrityError,
    InvalidParams,
    Kind,
    NoneOk,
    Param,
    Prepared,
    ResourceType,
    ResultSpec,
    String,
    boolean_filter,
    core_tables,
    update_method,
)
from plugins.evergreen.tables import test_results

HOLDER = "evergreen: deactivated tasks"
"""The name of the master row that holds the build requests of deactivated versions.

It never runs: the engine distributes only requests nobody has claimed, so a request
claimed in this name stays queued until activation gives it back (``unclaim``).
"""

TIMEOUT_PROPERTY = "evergreen_timeout_stage"
"""The build property naming the step whose command timed out (set by ``steps.TaskCommand``)."""

EXPECTED_SAMPLE = 10
"""How many recent successful builds of a builder its tasks' ``expected_duration`` averages."""

PAGE = 1000

br, b, bs = core_tables.buildrequests, core_tables.builders, core_tables.buildsets
latest = core_tables.builds.alias("latest_build")


class JsonText(FieldType):
    """A value stored as JSON text (build property values), decoded when read."""

    sql_comparable = False

    def from_db(self, value: Any) -> Any:
        """Decode the JSON text."""
        return orjson.loads(value) if isinstance(value, str | bytes) else value


def _tag_value(prefix: str) -> Any:
    """The rest of the builder's first tag starting with *prefix* (e.g. ``variant:``), or NULL."""
    tags = core_tables.builder_tags
    return (
        sa.select(sa.func.substr(tags.c.tag, len(prefix) + 1))
        .where(tags.c.builderid == b.c.id, tags.c.tag.startswith(prefix, autoescape=True))
        .order_by(tags.c.tag)
        .limit(1)
        .correlate(b)
        .scalar_subquery()
    )


VARIANT = sa.func.coalesce(_tag_value("variant:"), b.c.name)
"""A builder's build variant: its ``variant:<id>`` tag, else its name."""
VARIANT_NAME = sa.func.coalesce(_tag_value("variant_name:"), VARIANT)
"""The variant's display name: the ``variant_name:<text>`` tag, else the variant."""
TASK_NAME = sa.func.coalesce(_tag_value("task:"), b.c.name)
"""A builder's task name: its ``task:<name>`` tag, else its name."""


def _held() -> Any:
    holder = sa.select(core_tables.masters.c.id).where(core_tables.masters.c.name == HOLDER)
    return sa.and_(br.c.claimed_by_masterid.is_not(None), br.c.claimed_by_masterid.in_(holder))


def _of_latest_build(column: Any, aggregate: Any) -> Any:
    """An aggregate over the steps of the task's latest build (NULL without one)."""
    steps = core_tables.steps
    return sa.select(aggregate(column)).where(steps.c.buildid == latest.c.id).correlate(latest).scalar_subquery()


def _tasks_source() -> Any:
    builds = core_tables.builds
    newest = sa.select(sa.func.max(builds.c.id)).where(builds.c.buildrequestid == br.c.id).correlate(br)
    return br.join(b, b.c.id == br.c.builderid).outerjoin(latest, latest.c.id == newest.scalar_subquery())


async def _expected_durations(data: DataAPI, ids: list[Any], spec: Any) -> Mapping[Any, int]:
    """Per task: the mean duration (ns) of its builder's last successful builds, 0 without any."""
    rows = await data.storage.fetch_all(_BUILDER_OF, {"ids": ids})
    builder_of = {row["id"]: row["builderid"] for row in rows}
    builderids = sorted(set(builder_of.values()))
    results = await data.storage.fetch_many([(_RECENT_DURATIONS, {"builderid": i}) for i in builderids])
    means = {}
    for builderid, durations in zip(builderids, results, strict=True):
        values = [row["duration"] for row in durations]
        means[builderid] = int(sum(values) * 1_000_000_000 / len(values)) if values else 0
    return {task: means.get(builder_of.get(task), 0) for task in ids}


_BUILDER_OF = Prepared(
    ("evergreen", "builder-of"),
    lambda: sa.select(br.c.id, br.c.builderid).where(br.c.id.in_(sa.bindparam("ids", expanding=True))),
)


def _recent_durations() -> sa.Select:
    builds = core_tables.builds
    return (
        sa.select((builds.c.complete_at - builds.c.started_at).label("duration"))
        .where(builds.c.builderid == sa.bindparam("builderid"), builds.c.results == SUCCESS,
               builds.c.complete_at.is_not(None))
        .order_by(builds.c.id.desc())
        .limit(EXPECTED_SAMPLE)
    )


_RECENT_DURATIONS = Prepared(("evergreen", "recent-durations"), _recent_durations)


class EvergreenTasks(ResourceType):
    """``/evergreen_tasks``: build requests as Evergreen tasks, with their builder's variant and latest build."""

    name = "evergreen_task"
    plural = "evergreen_tasks"
    id_field = "taskid"
    event_paths = ("evergreen_tasks/:taskid",)

    def declare(self):
        """Fields (build request, builder naming, latest build and its steps) and endpoints."""
        steps_started = _of_latest_build(core_tables.steps.c.started_at, sa.func.min)
        heartbeat = _of_latest_build(sa.func.coalesce(core_tables.steps.c.complete_at, core_tables.steps.c.started_at),
                                     sa.func.max)
        builds, bp, workers = core_tables.builds, core_tables.build_properties, core_tables.workers
        executions = sa.select(sa.func.count()).where(builds.c.buildrequestid == br.c.id).correlate(br)
        timeout_stage = (
            sa.select(bp.c.value).where(bp.c.buildid == latest.c.id, bp.c.name == TIMEOUT_PROPERTY)
            .correlate(latest).scalar_subquery()
        )
        workername = sa.select(workers.c.name).where(workers.c.id == latest.c.workerid).correlate(latest)
        fields = {
            "taskid": Field(Integer(), br.c.id, "the build request's id"),
            "buildsetid": Field(Integer(), br.c.buildsetid, "the buildset (version) it belongs to"),
            "builderid": Field(Integer(), br.c.builderid, "its builder"),
            "buildername": Field(String(), b.c.name, "its builder's name"),
            "projectid": Field(NoneOk(Integer()), b.c.projectid, "its builder's project"),
            "variant": Field(String(), VARIANT, "the build variant: the builder's variant: tag, else its name"),
            "variant_name": Field(String(), VARIANT_NAME, "the variant's display name (variant_name: tag)"),
            "task_name": Field(String(), TASK_NAME, "the task's name: the builder's task: tag, else its name"),
            "priority": Field(Integer(), br.c.priority, "the request's priority"),
            "submitted_at": Field(DateTime(), br.c.submitted_at, "when the request was submitted"),
            "claimed": Field(Boolean(), br.c.claimed_by_masterid.is_not(None), "whether a master holds it"),
            "claimed_at": Field(NoneOk(DateTime()), br.c.claimed_at, "when it was claimed"),
            "held": Field(Boolean(), _held(), "whether a deactivation holds it back",
                          filter_sql=boolean_filter(_held)),
            "complete": Field(Boolean(), br.c.complete, "whether the request is complete"),
            "results": Field(NoneOk(Integer()), br.c.results, "the request's result code, null until complete"),
            "complete_at": Field(NoneOk(DateTime()), br.c.complete_at, "when the request completed"),
            "buildid": Field(NoneOk(Integer()), latest.c.id, "its latest build"),
            "build_number": Field(NoneOk(Integer()), latest.c.number, "that build's number"),
            "build_started_at": Field(NoneOk(DateTime()), latest.c.started_at, "when that build started"),
            "build_complete_at": Field(NoneOk(DateTime()), latest.c.complete_at, "when that build finished"),
            "build_results": Field(NoneOk(Integer()), latest.c.results, "that build's result code"),
            "workername": Field(NoneOk(String()), workername.scalar_subquery(), "the worker that ran that build"),
            "started_at": Field(NoneOk(DateTime()), steps_started, "when that build's first step started"),
            "last_heartbeat": Field(NoneOk(DateTime()), heartbeat, "the last time a step of it started or ended"),
            "executions": Field(Integer(), executions.scalar_subquery(), "how many builds the request had"),
            "timeout_stage": Field(NoneOk(JsonText()), timeout_stage, "the step that timed out, if one did"),
            "expected_duration": Field(Integer(), None, "mean ns of the builder's recent successful builds"),
        }
        endpoints = [Endpoint("/evergreen_tasks", Kind.COLLECTION), Endpoint("/evergreen_tasks/n:taskid")]
        return _tasks_source(), fields, endpoints, {"expected_duration": _expected_durations}


def _version_source() -> Any:
    bss, ss, changes = core_tables.buildset_sourcestamps, core_tables.sourcestamps, core_tables.changes
    first_stamp = sa.select(sa.func.min(bss.c.sourcestampid)).where(bss.c.buildsetid == bs.c.id).correlate(bs)
    change = changes.alias("version_change")
    newest_change = sa.select(sa.func.max(changes.c.id)).where(changes.c.sourcestampid == ss.c.id).correlate(ss)
    source = bs.outerjoin(ss, ss.c.id == first_stamp.scalar_subquery()).outerjoin(
        change, change.c.id == newest_change.scalar_subquery()
    )
    return source, ss, change


def _in_project(bind: Any) -> Any:
    """Buildsets with a request to a builder of project *bind*."""
    requests = core_tables.buildrequests.alias("project_request")
    builders = core_tables.builders.alias("project_builder")
    found = (
        sa.select(requests.c.id)
        .select_from(requests.join(builders, builders.c.id == requests.c.builderid))
        .where(requests.c.buildsetid == bs.c.id, builders.c.projectid == bind)
    )
    return found.exists()


async def _set_activation(call: ActionCall) -> list[int]:
    return await call.data.resource_type(EvergreenVersions).set_evergreen_activation(
        call.args["bsid"], call.params["activated"], call.params["projectid"]
    )


class EvergreenVersions(ResourceType):
    """``/evergreen_versions``: buildsets with the revision, branch and change Evergreen's versions show."""

    name = "evergreen_version"
    plural = "evergreen_versions"
    id_field = "bsid"
    event_paths = ("evergreen_versions/:bsid",)

    def __init__(self) -> None:
        super().__init__()
        self._holder: int | None = None

    def declare(self):
        """Fields (buildset, its first source stamp, the newest change of it) and endpoints."""
        source, ss, change = _version_source()
        fields = {
            "bsid": Field(Integer(), bs.c.id, "the buildset's id (the version's order)"),
            "submitted_at": Field(DateTime(), bs.c.submitted_at, "when it was submitted"),
            "complete": Field(Boolean(), bs.c.complete, "whether all its requests are complete"),
            "complete_at": Field(NoneOk(DateTime()), bs.c.complete_at, "when it completed"),
            "results": Field(NoneOk(Integer()), bs.c.results, "its result code, null until complete"),
            "reason": Field(NoneOk(String()), bs.c.reason, "why it was submitted"),
            "triggered": Field(Boolean(), bs.c.parent_buildid.is_not(None), "whether a Trigger step submitted it",
                               filter_sql=boolean_filter(lambda: bs.c.parent_buildid.is_not(None))),
            "revision": Field(NoneOk(String()), ss.c.revision, "the revision of its first source stamp"),
            "branch": Field(NoneOk(String()), ss.c.branch, "the branch of its first source stamp"),
            "repository": Field(NoneOk(String()), ss.c.repository, "the repository of its first source stamp"),
            "changeid": Field(NoneOk(Integer()), change.c.id, "the newest change of that source stamp"),
            "author": Field(NoneOk(String()), change.c.author, "that change's author"),
            "comments": Field(NoneOk(String()), change.c.comments, "that change's message"),
        }
        activation = Action(
            "set_activation", _set_activation,
            {"activated": Param(Boolean(), required=True, doc="true schedules the held tasks, false holds "
                                                               "the tasks not yet dispatched"),
             "projectid": Param(NoneOk(Integer()), doc="only the tasks of this project's builders")},
            doc="activate or deactivate a version; returns the ids of the build requests changed",
        )
        endpoints = [
            Endpoint("/evergreen_versions", Kind.COLLECTION),
            Endpoint("/evergreen_versions/n:bsid", actions=[activation]),
            Endpoint("/projects/n:projectid/evergreen_versions", Kind.COLLECTION,
                     arg_columns={"projectid": _in_project}),
        ]
        return source, fields, endpoints, {}

    async def holder_masterid(self) -> int:
        """The id of the :data:`HOLDER` master row, made (and marked stopped) on first use."""
        if self._holder is not None:
            return self._holder
        query = {"name": [HOLDER], "field": ["masterid", "active"]}
        found = (await self.data.get("masters", query=query)).items
        if found and not found[0]["active"]:
            self._holder = found[0]["masterid"]
            return self._holder
        for attempt in range(3):
            try:
                masterid = await self.data.updates.master_active(HOLDER)
                break
            except IntegrityError:
                # another master made the row at the same moment: the next try finds it
                if attempt == 2:
                    raise
        await self.data.updates.master_stopped(masterid)
        self._holder = masterid
        return masterid

    async def _task_ids(self, bsid: int, projectid: int | None, filters: Sequence[Filter]) -> list[int]:
        wanted = [Filter("buildsetid", "eq", (bsid,)), *filters]
        if projectid is not None:
            wanted.append(Filter("projectid", "eq", (projectid,)))
        ids: list[int] = []
        while True:
            page = [*wanted, Filter("taskid", "gt", (ids[-1],))] if ids else wanted
            spec = ResultSpec(fields=("taskid",), filters=page, order=("taskid",), limit=PAGE)
            found = (await self.data.get(("evergreen_tasks",), spec=spec)).items
            ids.extend(task["taskid"] for task in found)
            if len(found) < PAGE:
                return ids

    @update_method
    async def set_evergreen_activation(self, bsid: int, activated: bool, projectid: int | None = None) -> list[int]:
        """Activate or deactivate buildset *bsid* (only *projectid*'s builders, if given); return the requests changed.

        Deactivating holds the requests no master has claimed yet (claimed in the name of
        :data:`HOLDER`, so no engine starts them); requests already dispatched run on, as in
        Evergreen.  Activating gives the held requests back to the queue, which starts them.
        """
        holder = await self.holder_masterid()
        if activated:
            held = await self._task_ids(bsid, projectid, [Filter("held", "eq", (True,))])
            changed = await self.data.updates.unclaim_buildrequests(held, holder)
        else:
            pending = [Filter("complete", "eq", (False,)), Filter("claimed", "eq", (False,))]
            changed = await self.data.updates.claim_buildrequests(await self._task_ids(bsid, projectid, pending),
                                                                  holder)
        entity = await self.get_entity(bsid)
        if entity is not None:
            await self.produce_event(entity, "update")
        return changed


TEST_STATUSES = ("pass", "fail", "skip")


class EvergreenTestResults(ResourceType):
    """``/evergreen_test_results``: test results parsed from the JUnit files of tasks, per build."""

    name = "evergreen_test_result"
    plural = "evergreen_test_results"
    id_field = "testresultid"
    event_paths = ("evergreen_test_results/:testresultid", "builds/:buildid/evergreen_test_results/:testresultid")

    def declare(self):
        """Fields and endpoints of test results."""
        t = test_results
        fields = {
            "testresultid": Field(Integer(), t.c.id, "the result's id"),
            "buildid": Field(Integer(), t.c.buildid, "the build whose task ran the test"),
            "stepid": Field(Integer(), t.c.stepid, "the step that read the JUnit file"),
            "logid": Field(NoneOk(Integer()), t.c.logid, "the log holding the JUnit file"),
            "name": Field(String(), t.c.name, "the test's name (classname.name)"),
            "status": Field(String(), t.c.status, "pass, fail or skip"),
            "duration_ns": Field(Integer(), t.c.duration_ns, "how long it took, in nanoseconds"),
        }
        endpoints = [
            Endpoint("/evergreen_test_results", Kind.COLLECTION),
            Endpoint("/evergreen_test_results/n:testresultid"),
            Endpoint("/builds/n:buildid/evergreen_test_results", Kind.COLLECTION),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def add_evergreen_test_results(
        self, buildid: int, stepid: int, logid: int | None, results: Iterable[Mapping[str, Any]]
    ) -> list[int]:
        """Record a step's test results ``{name, status, duration_ns}`` in one transaction; return their ids."""
        rows = []
        for result in results:
            if result["status"] not in TEST_STATUSES:
                raise InvalidParams({"status": f"{result['status']!r} is not one of {', '.join(TEST_STATUSES)}"})
            rows.append({"buildid": buildid, "stepid": stepid, "logid": logid, "name": str(result["name"])[:1024],
                         "status": result["status"], "duration_ns": max(int(result["duration_ns"]), 0)})
        if not rows:
            return []

        async def work(txn: Any) -> list[int]:
            ids: list[int] = []
            for start in range(0, len(rows), 500):
                inserted = await txn.fetch_all(
                    sa.insert(test_results).values(rows[start:start + 500]).returning(test_results.c.id)
                )
                ids.extend(row["id"] for row in inserted)
            return sorted(ids)

        ids = await self.data.storage.transaction(work)
        for start in range(0, len(ids), PAGE):
            chunk = tuple(ids[start:start + PAGE])
            spec = ResultSpec(filters=[Filter("testresultid", "in", chunk)], order=("testresultid",), limit=PAGE)
            for entity in (await self.data.get(("evergreen_test_results",), spec=spec)).items:
                await self.produce_event(entity, "new")
        return ids
