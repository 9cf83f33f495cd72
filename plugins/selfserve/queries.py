"""Reading the engine's data as self-serve sees it: branches, builders, builds, requests, revisions.

Everything goes through ``data.get`` on the plugin's views (``selfservebuilds``,
``selfserverequests``, ``selfservebranches``) or the core's getters, with the filters,
order and page in the result spec, so that SQL does the work.  The functions here return
BuildAPI's objects: ``build_object`` and ``request_object`` give the fields and names
BuildAPI gave, with times as epoch integers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from master.sdk import Collection, DataAPI, InvalidQuery
from plugins.selfserve.resources import REVISION_PREFIX

PAGE = 500
"""Rows read per query when a route returns every match (one day of a branch, a revision)."""

REQUEST_FIELDS = (
    "request_id", "buildername", "branch", "revision", "submittime", "complete", "complete_at", "priority",
    "claimed_at", "reason",
)


async def find_branch(data: DataAPI, name: str) -> dict[str, Any] | None:
    """The branch *name* (``{name, kind, repository}``), or None."""
    return await first(data, "selfservebranches", name=name)


async def first(data: DataAPI, path: str | Sequence[str], **filters: str) -> dict[str, Any] | None:
    """The first entity of a collection with fields equal to *filters* (names need not be identifiers).

    None also when a value cannot be one of the field's (an id beyond 64 bits, a NUL in a name):
    no entity has it.
    """
    try:
        found = await data.get(path, query={**{k: [v] for k, v in filters.items()}, "limit": ["1"]})
    except InvalidQuery:
        return None
    return found.items[0] if found.items else None


async def all_pages(data: DataAPI, path: str | Sequence[str], query: Mapping[str, list[str]]) -> AsyncIterator[dict]:
    """Every entity of a collection matching *query*, read a page at a time."""
    offset = 0
    while True:
        page: Collection = await data.get(path, query={**query, "limit": [str(PAGE)], "offset": [str(offset)]})
        for item in page.items:
            yield item
        offset += len(page.items)
        if len(page.items) < PAGE or offset >= page.total:
            return


async def branch_builders(data: DataAPI, branch: dict[str, Any]) -> list[dict[str, Any]]:
    """The builders of a branch: a project's builders, else (a branch of changes) every builder."""
    path: tuple[str, ...] = ("builders",)
    if branch["kind"] == "project":
        project = await first(data, "projects", name=branch["name"])
        if project is not None:
            path = ("projects", str(project["projectid"]), "builders")
    query = {"field": ["builderid", "name"], "order": ["name"]}
    return [builder async for builder in all_pages(data, path, query)]


def _request(entity: Mapping[str, Any], branch: str, detailed: bool) -> dict[str, Any]:
    obj = {name: entity[name] for name in REQUEST_FIELDS}
    obj["branch"] = branch
    obj["complete"] = int(entity["complete"])
    obj["claimed_at"] = entity["claimed_at"] or 0
    if detailed:
        obj["properties"] = {name: value for name, (value, _source) in (entity["properties"] or {}).items()}
        obj["build_ids"] = entity["build_ids"]
    return obj


def request_object(entity: Mapping[str, Any], branch: str, detailed: bool = False) -> dict[str, Any]:
    """BuildAPI's request object; *detailed* adds ``properties`` and ``build_ids`` (as ``/request/{id}`` does)."""
    return _request(entity, branch, detailed)


async def build_objects(data: DataAPI, builds: list[dict[str, Any]], branch: str, detailed: bool = False) -> list[dict]:
    """BuildAPI's build objects for *builds* (entities of ``selfservebuilds``), their requests read in one query."""
    brids = sorted({build["request_id"] for build in builds})
    requests: dict[int, dict[str, Any]] = {}
    if brids:
        query = {"request_id__in": [",".join(map(str, brids))], "limit": [str(len(brids))]}
        if not detailed:
            query["field"] = list(set(REQUEST_FIELDS) | {"branch"})
        for entity in (await data.get("selfserverequests", query=query)).items:
            requests[entity["request_id"]] = request_object(entity, branch, detailed)
    return [
        {
            "build_id": build["build_id"],
            "buildnumber": build["buildnumber"],
            "buildername": build["buildername"],
            "branch": branch,
            "revision": build["revision"],
            "starttime": build["starttime"],
            "endtime": build["endtime"],
            "status": build["status"],
            "claimed_by_name": build["claimed_by_name"],
            "requests": [requests[build["request_id"]]] if build["request_id"] in requests else [],
        }
        for build in builds
    ]


def revision_query(branch: str, revision: str) -> dict[str, list[str]]:
    """The filters of the builds or requests on *branch* at *revision* (its first 12 characters)."""
    return {"branch": [branch], "short_revision": [revision[:REVISION_PREFIX]]}


async def builds_at_revision(data: DataAPI, branch: str, revision: str, **filters: str) -> list[dict[str, Any]]:
    """The builds on *branch* at *revision*, oldest first (extra *filters* such as ``complete="false"``)."""
    query = {**revision_query(branch, revision), "order": ["build_id"], **{k: [v] for k, v in filters.items()}}
    return [build async for build in all_pages(data, "selfservebuilds", query)]


async def requests_at_revision(data: DataAPI, branch: str, revision: str, **filters: str) -> list[dict[str, Any]]:
    """The requests on *branch* at *revision*, oldest first."""
    query = {**revision_query(branch, revision), "order": ["request_id"], **{k: [v] for k, v in filters.items()}}
    return [request async for request in all_pages(data, "selfserverequests", query)]


def on_branch(sourcestamp: Mapping[str, Any], branch: str) -> bool:
    """Whether a source stamp is on *branch* (the rule of the views' ``branch`` filter)."""
    name = sourcestamp.get("branch") or ""
    return sourcestamp.get("project") == branch or name == branch or name.endswith("/" + branch)


async def sourcestamp_for(data: DataAPI, branch: dict[str, Any], revision: str) -> dict[str, Any]:
    """The source stamp to build *revision* of *branch*: the newest known one, else one made from the branch.

    Known source stamps are found by a ``contains`` filter on the revision in SQL; the few
    that match are then checked for the prefix and the branch.
    """
    query = {"revision__contains": [revision[:REVISION_PREFIX]], "order": ["-ssid"], "limit": ["100"]}
    for stamp in (await data.get("sourcestamps", query=query)).items:
        if (stamp["revision"] or "").startswith(revision[:REVISION_PREFIX]) and on_branch(stamp, branch["name"]):
            if len(revision) > REVISION_PREFIX and stamp["revision"] != revision:
                continue  # a full revision given must match exactly
            return {key: stamp[key] for key in ("branch", "revision", "repository", "codebase", "project")}
    return {
        "branch": branch["name"] if branch["kind"] == "branch" else None,
        "revision": revision,
        "repository": branch["repository"] or "",
        "codebase": "",
        "project": branch["name"] if branch["kind"] == "project" else "",
    }
