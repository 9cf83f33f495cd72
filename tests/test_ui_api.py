"""REST endpoints the web UI's pages read beyond the core collections, over real HTTP, on both backends.

``builds/B/properties`` (the build page's Properties tab, with its live ``update`` event),
``changes/C/builds`` (a change's page), ``workers/W/builders`` (a worker's page) and
``application.spec`` (the About page).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from apiclient import Api, serve

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db.interfaces import IStorage

SOURCE = {"branch": "main", "revision": "abc", "repository": "https://git.example.org/r", "codebase": "",
          "project": "p"}


def record(data: DataAPI, pattern: str) -> list[tuple[str, Any]]:
    """Collect ``('a/b/event', entity)`` for events matching *pattern*, in order."""
    seen: list[tuple[str, Any]] = []
    data.events.subscribe(pattern, lambda key, entity: seen.append(("/".join(key), entity)))
    return seen


@pytest_twisted.async_yield_fixture()
async def data(storage: IStorage) -> AsyncIterator[DataAPI]:
    """Builders a (1) and b (2), master m1 (1), workers w1 (1, on a and b) and w2 (2, on b)."""
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    a, b = await data.updates.update_builder("a"), await data.updates.update_builder("b")
    masterid = await data.updates.master_active("m1")
    w1, w2 = await data.updates.find_worker_id("w1"), await data.updates.find_worker_id("w2")
    await data.updates.worker_configured(w1, masterid, [a, b])
    await data.updates.worker_configured(w2, masterid, [b])
    yield data


@pytest_twisted.async_yield_fixture()
async def api(data: DataAPI) -> AsyncIterator[Api]:
    async with serve(data, in_memory=True) as api:
        yield api


async def a_build(data: DataAPI, builderid: int = 1, sourcestamp: dict[str, Any] | None = None) -> tuple[int, int]:
    """A buildset with properties on *builderid*, and a build of its request: ``(bsid, buildid)``."""
    bsid, brids = await data.updates.add_buildset(
        "force", [sourcestamp or SOURCE], "because", {"reason": ["because", "Force Build Form"]}, [builderid]
    )
    buildid, _ = await data.updates.add_build(builderid, brids[builderid], 1, 1)
    return bsid, buildid


@pytest_twisted.ensureDeferred
async def test_a_builds_properties_are_one_object_and_each_setting_is_published(data: DataAPI, api: Api) -> None:
    bsid, buildid = await a_build(data)
    events = record(data, f"builds/{buildid}/properties/*")
    await data.updates.set_build_properties(buildid, {"workername": ("w1", "Worker"), "got": ([1, 2], "step")})
    await data.updates.set_build_properties(buildid, {"workername": ("w2", "Worker")})

    code, body, _ = await api.get(f"/api/v2/builds/{buildid}/properties")
    assert code == 200
    assert body == {"properties": [{"workername": ["w2", "Worker"], "got": [[1, 2], "step"]}], "meta": {}}
    # the same object by builder and number, as the build page asks when it has only those
    code, by_number, _ = await api.get("/api/v2/builders/1/builds/1/properties")
    assert (code, by_number) == (200, body)
    # each setting is published with what it set, where the build page listens
    assert events == [
        (f"builds/{buildid}/properties/update", {"workername": ["w1", "Worker"], "got": [[1, 2], "step"]}),
        (f"builds/{buildid}/properties/update", {"workername": ["w2", "Worker"]}),
    ]
    # a build request's are its buildset's
    code, body, _ = await api.get(f"/api/v2/buildsets/{bsid}/properties")
    assert (code, body["properties"]) == (200, [{"reason": ["because", "Force Build Form"]}])
    brid = (await data.get(f"builds/{buildid}"))["buildrequestid"]
    code, same, _ = await api.get(f"/api/v2/buildrequests/{brid}/properties")
    assert (code, same) == (200, body)


@pytest_twisted.ensureDeferred
async def test_a_changes_properties(data: DataAPI, api: Api) -> None:
    changeid = await data.updates.add_change(
        author="ada", files=[], comments="c", revision="r1", properties={"ticket": 12}, repository="x"
    )
    code, body, _ = await api.get(f"/api/v2/changes/{changeid}/properties")
    assert (code, body) == (200, {"properties": [{"ticket": [12, "Change"]}], "meta": {}})
    code, body, _ = await api.get("/api/v2/changes/77/properties")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_properties_of_a_build_without_any_or_of_no_build(data: DataAPI, api: Api) -> None:
    _, buildid = await a_build(data)
    code, body, _ = await api.get(f"/api/v2/builds/{buildid}/properties")
    assert (code, body) == (200, {"properties": [{}], "meta": {}})
    code, body, _ = await api.get("/api/v2/builds/999/properties")
    assert code == 404 and "builds/999/properties" in body["error"]
    code, body, _ = await api.get("/api/v2/builders/1/builds/7/properties")
    assert code == 404
    code, body, _ = await api.get("/api/v2/builds/x/properties")
    assert code == 404 and "invalid path" in body["error"]


@pytest_twisted.ensureDeferred
async def test_a_changes_builds_are_those_of_buildsets_with_its_source_stamp(data: DataAPI, api: Api) -> None:
    changeid = await data.updates.add_change(
        author="ada", files=["a.py"], comments="fix", revision="abc", branch="main",
        repository=SOURCE["repository"], project="p",
    )
    _, first = await a_build(data, 1)
    _, second = await a_build(data, 2)
    await a_build(data, 1, {**SOURCE, "revision": "other"})  # another revision: not this change's
    code, body, _ = await api.get(f"/api/v2/changes/{changeid}/builds?order=buildid&property=reason")
    assert code == 200
    assert [b["buildid"] for b in body["builds"]] == [first, second] and body["meta"]["total"] == 2
    assert body["builds"][0]["properties"] == {}  # reason is a buildset property, not a build's
    code, body, _ = await api.get(f"/api/v2/changes/{changeid}/builds?limit=1&order=-buildid")
    assert [b["buildid"] for b in body["builds"]] == [second] and body["meta"]["total"] == 2
    code, body, _ = await api.get("/api/v2/changes/999/builds")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_a_workers_builders_are_those_it_is_configured_for(data: DataAPI, api: Api) -> None:
    code, body, _ = await api.get("/api/v2/workers/1/builders?order=name")
    assert code == 200 and [b["name"] for b in body["builders"]] == ["a", "b"]
    code, body, _ = await api.get("/api/v2/workers/2/builders?order=name")
    assert [b["name"] for b in body["builders"]] == ["b"]
    # a second master configuring w2 on b too lists b once
    other = await data.updates.master_active("m2")
    await data.updates.worker_configured(2, other, [2])
    code, body, _ = await api.get("/api/v2/workers/2/builders")
    assert [b["builderid"] for b in body["builders"]] == [2] and body["meta"]["total"] == 1
    code, body, _ = await api.get("/api/v2/workers/99/builders")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_application_spec_lists_every_endpoint_with_its_fields(data: DataAPI, api: Api) -> None:
    code, body, _ = await api.get("/api/v2/application.spec")
    assert code == 200
    specs = {spec["path"]: spec for spec in body["specs"]}
    assert body["meta"]["total"] == len(body["specs"]) == len(data.endpoints())
    builders = specs["builders/n:builderid"]
    assert builders["plural"] == "builders" and builders["type"] == "builder"
    fields = {f["name"]: f for f in builders["type_spec"]["fields"]}
    assert fields["builderid"]["type"] == "integer"
    assert fields["description"]["type"] == "string or None"
    assert fields["description"]["type_spec"] == {"name": "string", "can_be_null": True}
    assert fields["tags"]["type_spec"] == {"type": "list", "of": {"name": "string"}}
    assert "builds/n:buildid/properties" in specs and "workers/n:workerid/builders" in specs
