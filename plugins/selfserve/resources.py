"""The self-serve plugin's resource types: its job records, and read-only views of the engine's data.

* ``selfservejobs`` (the plugin's table): one record per job request, ``{action, who,
  when, what}``, completed by the agent with ``completed_at`` and ``complete_data``.
  Written only through the update methods here, each publishing an event.
* ``selfservebranches``, ``selfservebuilds`` and ``selfserverequests``: what BuildAPI
  calls branches, builds and requests, read from ci-master's own tables (projects,
  source stamps, builds, build requests, buildsets, builders, workers) by the data API's
  query machinery, so that every filter, order and page runs in SQL.  They hold no copy
  of anything and have no writers: rebuilding or cancelling goes through the core's
  actions and update methods.

A *branch* is a project (a project of ci-master, or the project of a change's source
stamp) or a branch of a source stamp.  A build or request is on branch ``B`` when the
first source stamp of its buildset has project ``B``, branch ``B``, or a branch ending
in ``/B`` (``refs/heads/main`` is on ``main``): the ``branch`` filter of the views.
"""

from __future__ import annotations

from typing import Any

import orjson
import sqlalchemy as sa

from master.sdk import (
    Boolean,
    DateTime,
    Endpoint,
    Field,
    Integer,
    InvalidQuery,
    JsonObject,
    Kind,
    List,
    NoneOk,
    ResourceType,
    String,
    boolean_filter,
    core_tables,
    dumps,
    list_loader,
    now,
    properties_loader,
    update_method,
)
from plugins.selfserve.tables import jobs

REVISION_PREFIX = 12
"""Revisions match on their first 12 characters, as in BuildAPI."""


class JsonText(String):
    """A string stored JSON-encoded (a property value): filters encode, reads decode."""

    def from_string(self, text: str) -> str:
        """The stored form of *text*, to compare with the column."""
        return dumps(text)

    def from_db(self, value: Any) -> Any:
        """The decoded value."""
        return None if value is None else orjson.loads(value)


# -- job records ------------------------------------------------------------------------------------


class SelfServeJobs(ResourceType):
    """``/selfservejobs``: self-serve job requests, and what the agent made of them."""

    name = "selfservejob"
    plural = "selfservejobs"
    id_field = "jobid"
    event_paths = ("selfservejobs/:jobid",)

    def declare(self):
        """Fields and endpoints of job records."""
        fields = {
            "jobid": Field(Integer(), jobs.c.id, "the job's id (BuildAPI's request_id of a job request)"),
            "action": Field(String(), jobs.c.action, "what was asked: rebuild_build, cancel_request, ..."),
            "who": Field(String(), jobs.c.who, "the user who asked"),
            "when": Field(DateTime(), jobs.c.when, "when it was asked"),
            "what": Field(JsonObject(), jobs.c.what, "the action's arguments"),
            "claimed_by": Field(NoneOk(String()), jobs.c.claimed_by, "the agent running it"),
            "completed_at": Field(NoneOk(DateTime()), jobs.c.completed_at, "when the agent finished it"),
            "complete": Field(Boolean(), jobs.c.completed_at.is_not(None), "whether the agent finished it",
                              filter_sql=boolean_filter(lambda: jobs.c.completed_at.is_not(None))),
            "complete_data": Field(NoneOk(JsonObject()), jobs.c.complete_data,
                                   '{"body": {"errors", "msg", ...}, "request_id"} once complete'),
        }
        endpoints = [Endpoint("/selfservejobs", Kind.COLLECTION), Endpoint("/selfservejobs/n:jobid")]
        return jobs, fields, endpoints, {}

    @update_method
    async def add_selfserve_job(self, action: str, who: str, what: dict[str, Any]) -> int:
        """Queue a job request; return its id."""
        rows = await self.data.storage.transaction(
            lambda txn: txn.fetch_all(
                sa.insert(jobs).values(action=action, who=who, when=now(), what=dumps(what)).returning(jobs.c.id)
            )
        )
        jobid = rows[0]["id"]
        await self.produce_event(await self.get_entity(jobid), "new")
        return jobid

    @update_method
    async def claim_selfserve_job(self, jobid: int, agent: str, stale_before: int) -> bool:
        """Claim job *jobid* for *agent* unless it is complete or another agent claimed it after *stale_before*."""
        changed = await self.data.storage.transaction(
            lambda txn: txn.execute(
                sa.update(jobs)
                .where(
                    jobs.c.id == jobid,
                    jobs.c.completed_at.is_(None),
                    sa.or_(jobs.c.claimed_by.is_(None), jobs.c.claimed_at < stale_before),
                )
                .values(claimed_by=agent, claimed_at=now())
            )
        )
        if changed:
            await self.produce_event(await self.get_entity(jobid), "update")
        return bool(changed)

    @update_method
    async def complete_selfserve_job(self, jobid: int, errors: bool, msg: str, **details: Any) -> None:
        """Record the outcome of job *jobid*: ``{"body": {errors, msg, **details}, "request_id": jobid}``."""
        data = {"body": {"errors": errors, "msg": msg, **details}, "request_id": jobid}
        await self.data.storage.transaction(
            lambda txn: txn.execute(
                sa.update(jobs)
                .where(jobs.c.id == jobid, jobs.c.completed_at.is_(None))
                .values(completed_at=now(), complete_data=dumps(data))
            )
        )
        await self.produce_event(await self.get_entity(jobid), "update")


# -- branches ---------------------------------------------------------------------------------------


def _branches_source() -> Any:
    """Every branch name once: projects, source stamp projects and source stamp branches."""
    p, ss = core_tables.projects, core_tables.sourcestamps
    repo_of_project = sa.select(sa.func.max(ss.c.repository)).where(ss.c.project == p.c.name).scalar_subquery()
    named = sa.union_all(
        sa.select(p.c.name.label("name"), sa.literal("project").label("kind"), repo_of_project.label("repository")),
        sa.select(ss.c.project.label("name"), sa.literal("project").label("kind"),
                  sa.func.max(ss.c.repository).label("repository"))
        .where(ss.c.project != "").group_by(ss.c.project),
        sa.select(ss.c.branch.label("name"), sa.literal("branch").label("kind"),
                  sa.func.max(ss.c.repository).label("repository"))
        .where(ss.c.branch.is_not(None), ss.c.branch != "").group_by(ss.c.branch),
    ).subquery("selfserve_branch_names")
    return (
        sa.select(named.c.name, sa.func.max(named.c.kind).label("kind"),
                  sa.func.max(named.c.repository).label("repository"))
        .group_by(named.c.name)
        .subquery("selfserve_branches")
    )


class SelfServeBranches(ResourceType):
    """``/selfservebranches``: the branches self-serve knows (see the module's documentation)."""

    name = "selfservebranch"
    plural = "selfservebranches"
    id_field = "name"
    event_paths = ()

    def declare(self):
        """Fields and endpoints of branches."""
        source = _branches_source()
        fields = {
            "name": Field(String(), source.c.name, "the branch's name"),
            "kind": Field(String(), source.c.kind, "'project' when a project has this name, else 'branch'"),
            "repository": Field(NoneOk(String()), source.c.repository, "a repository it was built from"),
        }
        endpoints = [Endpoint("/selfservebranches", Kind.COLLECTION)]
        return source, fields, endpoints, {}


# -- builds and requests ----------------------------------------------------------------------------

ss = core_tables.sourcestamps
br = core_tables.buildrequests
bs = core_tables.buildsets


def _first_sourcestamp() -> Any:
    """The first source stamp of the request's buildset (BuildAPI shows one revision per build)."""
    bss = core_tables.buildset_sourcestamps
    return (
        sa.select(sa.func.min(bss.c.sourcestampid)).where(bss.c.buildsetid == br.c.buildsetid).scalar_subquery()
    )


def _on_branch(op: str, values: tuple[Any, ...]) -> Any:
    """``branch=B``: on branch B, i.e. source stamp project B, branch B, or a branch ending in /B."""
    if op not in ("eq", "in"):
        raise InvalidQuery(f"'branch__{op}': the branch filter takes only eq and in", f"branch__{op}")
    clauses = []
    for value in values:
        escaped = value.replace("/", "//").replace("%", "/%").replace("_", "/_")
        clauses += [ss.c.project == value, ss.c.branch == value, ss.c.branch.like(f"%//{escaped}", escape="/")]
    return sa.or_(*clauses)


def _owner() -> Any:
    """The buildset's ``owner`` property (JSON text): who asked for it, by self-serve or a force form."""
    bsp = core_tables.buildset_properties
    return (
        sa.select(bsp.c.value).where(bsp.c.buildsetid == br.c.buildsetid, bsp.c.name == "owner").scalar_subquery()
    )


def _source_fields() -> dict[str, Field]:
    """The fields both views take from the buildset and its first source stamp."""
    return {
        "branch": Field(NoneOk(String()), ss.c.branch, "the source stamp's branch; the filter matches branches "
                        "and projects (see the plugin)", filter_sql=_on_branch),
        "project": Field(NoneOk(String()), ss.c.project, "the source stamp's project"),
        "repository": Field(NoneOk(String()), ss.c.repository, "the source stamp's repository"),
        "codebase": Field(NoneOk(String()), ss.c.codebase, "the source stamp's codebase"),
        "revision": Field(NoneOk(String()), ss.c.revision, "the source stamp's revision"),
        "short_revision": Field(NoneOk(String()), sa.func.substr(ss.c.revision, 1, REVISION_PREFIX),
                                "the revision's first 12 characters (what self-serve matches on)"),
        "ssid": Field(NoneOk(Integer()), ss.c.id, "the source stamp's id"),
        "buildsetid": Field(Integer(), br.c.buildsetid, "the buildset"),
        "reason": Field(NoneOk(String()), bs.c.reason, "why the buildset was submitted"),
        "owner": Field(NoneOk(JsonText()), _owner(), "who asked for it (the buildset's owner property)"),
    }


class SelfServeRequests(ResourceType):
    """``/selfserverequests``: build requests as BuildAPI shows them (times are epoch seconds)."""

    name = "selfserverequest"
    plural = "selfserverequests"
    id_field = "request_id"
    event_paths = ()

    def declare(self):
        """Fields, endpoints and loaders of requests."""
        builders = core_tables.builders
        source = (
            br.join(builders, builders.c.id == br.c.builderid)
            .join(bs, bs.c.id == br.c.buildsetid)
            .outerjoin(ss, ss.c.id == _first_sourcestamp())
        )
        fields = {
            "request_id": Field(Integer(), br.c.id, "the build request's id"),
            "buildername": Field(String(), builders.c.name, "its builder"),
            "builderid": Field(Integer(), br.c.builderid, "its builder's id"),
            **_source_fields(),
            "submittime": Field(DateTime(), br.c.submitted_at, "when it was submitted"),
            "priority": Field(Integer(), br.c.priority, "higher is built first"),
            "claimed": Field(Boolean(), br.c.claimed_by_masterid.is_not(None), "whether a master took it",
                             filter_sql=boolean_filter(lambda: br.c.claimed_by_masterid.is_not(None))),
            "claimed_at": Field(NoneOk(DateTime()), br.c.claimed_at, "when a master took it"),
            "complete": Field(Boolean(), br.c.complete, "whether it is done"),
            "complete_at": Field(NoneOk(DateTime()), br.c.complete_at, "when it was done"),
            "results": Field(NoneOk(Integer()), br.c.results, "its result code, null until complete"),
            "properties": Field(JsonObject(), None, "{name: [value, source]} of its buildset"),
            "build_ids": Field(List(Integer()), None, "the builds that ran it"),
        }
        endpoints = [
            Endpoint("/selfserverequests", Kind.COLLECTION),
            Endpoint("/selfserverequests/n:request_id"),
        ]
        builds = core_tables.builds
        loaders = {
            "properties": _request_properties_loader(),
            "build_ids": list_loader("selfserve-build-ids", builds.c.buildrequestid, builds.c.id),
        }
        return source, fields, endpoints, loaders


def _request_properties_loader() -> Any:
    """The properties of each request's buildset."""
    bsp = core_tables.buildset_properties
    joined = (
        sa.select(br.c.id.label("request_id"), bsp.c.name, bsp.c.value, bsp.c.source)
        .select_from(br.join(bsp, bsp.c.buildsetid == br.c.buildsetid))
        .subquery("selfserve_request_properties")
    )
    return properties_loader("selfserve-requests", joined, "request_id", option=None)


class SelfServeBuilds(ResourceType):
    """``/selfservebuilds``: builds as BuildAPI shows them (times are epoch seconds)."""

    name = "selfservebuild"
    plural = "selfservebuilds"
    id_field = "build_id"
    event_paths = ()

    def declare(self):
        """Fields and endpoints of builds."""
        b, builders, workers = core_tables.builds, core_tables.builders, core_tables.workers
        source = (
            b.join(br, br.c.id == b.c.buildrequestid)
            .join(builders, builders.c.id == b.c.builderid)
            .join(bs, bs.c.id == br.c.buildsetid)
            .outerjoin(ss, ss.c.id == _first_sourcestamp())
            .outerjoin(workers, workers.c.id == b.c.workerid)
        )
        fields = {
            "build_id": Field(Integer(), b.c.id, "the build's id"),
            "buildnumber": Field(Integer(), b.c.number, "its number within its builder"),
            "buildername": Field(String(), builders.c.name, "its builder"),
            "builderid": Field(Integer(), b.c.builderid, "its builder's id"),
            "request_id": Field(Integer(), b.c.buildrequestid, "the request it ran"),
            **_source_fields(),
            "starttime": Field(DateTime(), b.c.started_at, "when it started"),
            "endtime": Field(NoneOk(DateTime()), b.c.complete_at, "when it ended, null while running"),
            "complete": Field(Boolean(), b.c.complete_at.is_not(None), "whether it ended",
                              filter_sql=boolean_filter(lambda: b.c.complete_at.is_not(None))),
            "status": Field(NoneOk(Integer()), b.c.results, "its result code (0 success ... 6 cancelled)"),
            "claimed_by_name": Field(NoneOk(String()), workers.c.name, "the worker it ran on"),
            "masterid": Field(NoneOk(Integer()), b.c.masterid, "the master that ran it"),
        }
        endpoints = [Endpoint("/selfservebuilds", Kind.COLLECTION), Endpoint("/selfservebuilds/n:build_id")]
        return source, fields, endpoints, {}


def resource_types() -> list[ResourceType]:
    """The plugin's resource types."""
    return [SelfServeJobs(), SelfServeBranches(), SelfServeRequests(), SelfServeBuilds()]
