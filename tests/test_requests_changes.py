"""Source stamps, changes, buildsets and build requests: endpoints, updates, actions and claims, on both backends."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from apiclient import Api, serve
from twisted.internet import defer

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import schema
from master.db.backends import make_storage
from master.db.interfaces import IStorage
from master.results import CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS, worst_result


def make_data(storage: IStorage) -> DataAPI:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    return data


async def gather(*coroutines: Any) -> list[Any]:
    """Run coroutines concurrently on the reactor; fail with the first error."""
    results = await defer.gatherResults([defer.ensureDeferred(c) for c in coroutines], consumeErrors=True)
    return list(results)


def record(data: DataAPI, *patterns: str) -> list[tuple[str, Any]]:
    """Collect ``('a/b/event', entity)`` for events matching any of *patterns*, in order."""
    seen: list[tuple[str, Any]] = []
    for pattern in patterns:
        data.events.subscribe(pattern, lambda key, entity: seen.append(("/".join(key), entity)))
    return seen


@pytest_twisted.async_yield_fixture()
async def data(storage: IStorage) -> AsyncIterator[DataAPI]:
    """A DataAPI with builders a (1), b (2), c (3) and master m1 (1)."""
    data = make_data(storage)
    for name in ("a", "b", "c"):
        await data.updates.update_builder(name)
    await data.updates.master_active("m1")
    yield data


@pytest_twisted.async_yield_fixture()
async def api(data: DataAPI) -> AsyncIterator[Api]:
    async with serve(data, in_memory=True) as api:
        yield api


SS1 = {"branch": "main", "revision": "abc", "repository": "https://git.example.org/r", "codebase": "", "project": "p"}


# -- source stamps and changes -------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_change_dedups_sourcestamps(data: DataAPI) -> None:
    changes = record(data, "changes/*/*")
    stamps = record(data, "sourcestamps/*/*")
    c1 = await data.updates.add_change(
        author="alice", files=["b.c", "a.c", "b.c"], comments="fix", revision="abc", when_timestamp=100,
        branch="main", category="bug", revlink="https://x/abc", properties={"ticket": 12},
        repository=SS1["repository"], codebase="", project="p", committer="bob",
    )
    c2 = await data.updates.add_change(
        author="carol", files=[], comments="same revision again", revision="abc", when_timestamp=101,
        branch="main", category=None, revlink=None, properties={}, repository=SS1["repository"], codebase="",
        project="p",
    )
    c3 = await data.updates.add_change(
        author="dave", files=["x"], comments="other branch", revision="def", when_timestamp=102, branch="dev",
        category=None, revlink=None, properties=None, repository=SS1["repository"], codebase="", project="p",
    )
    first = await data.get("changes/1")
    assert first == {
        "changeid": c1, "author": "alice", "committer": "bob", "comments": "fix", "branch": "main",
        "revision": "abc", "revlink": "https://x/abc", "when_timestamp": 100, "category": "bug",
        "repository": SS1["repository"], "codebase": "", "project": "p",
        "sourcestamp": {**SS1, "ssid": 1, "created_at": first["sourcestamp"]["created_at"], "patch": None},
        "files": ["a.c", "b.c"], "properties": {"ticket": [12, "Change"]}, "parent_changeids": [],
    }
    second = await data.get(f"changes/{c2}")
    assert second["sourcestamp"]["ssid"] == 1  # same fields, same source stamp
    assert second["parent_changeids"] == [c1]  # latest change of the same branch before it
    assert second["committer"] is None and second["files"] == [] and second["properties"] == {}
    third = await data.get(f"changes/{c3}")
    assert third["sourcestamp"]["ssid"] == 2 and third["parent_changeids"] == []
    # find_sourcestamp_id finds the same row; None and "" are different branches
    assert await data.updates.find_sourcestamp_id(**SS1) == 1
    nobranch = await data.updates.find_sourcestamp_id(branch=None, revision="abc", repository=SS1["repository"],
                                                      project="p")
    empty = await data.updates.find_sourcestamp_id(branch="", revision="abc", repository=SS1["repository"],
                                                   project="p")
    assert len({1, 2, nobranch, empty}) == 4
    assert [key for key, _ in changes] == [f"changes/{c}/new" for c in (c1, c2, c3)]
    assert [key for key, _ in stamps] == ["sourcestamps/1/new", "sourcestamps/2/new",
                                          f"sourcestamps/{nobranch}/new", f"sourcestamps/{empty}/new"]
    rows = await data.storage.fetch_all(sa.select(sa.func.count().label("n")).select_from(schema.sourcestamps))
    assert rows[0]["n"] == 4


@pytest_twisted.ensureDeferred
async def test_concurrent_find_sourcestamp_gets_one_row(data: DataAPI, migrated_url: str) -> None:
    other_storage = make_storage(migrated_url)
    await other_storage.start()
    try:
        other = make_data(other_storage)
        fields = [{"branch": "b", "revision": str(n % 3), "repository": "r", "codebase": "", "project": ""}
                  for n in range(24)]
        ids = await gather(*(
            (data if n % 2 else other).updates.find_sourcestamp_id(**f) for n, f in enumerate(fields)
        ))
    finally:
        await other_storage.stop()
    by_revision: dict[str, set[int]] = {}
    for f, ssid in zip(fields, ids, strict=True):
        by_revision.setdefault(f["revision"], set()).add(ssid)
    assert all(len(found) == 1 for found in by_revision.values())
    assert len({next(iter(found)) for found in by_revision.values()}) == 3
    sourcestamps = await data.get("sourcestamps")
    assert sourcestamps.total == 3


async def _build_for(data: DataAPI, builderid: int, brid: int) -> int:
    buildid, _ = await data.updates.add_build(builderid, brid, None, 1)
    return buildid


@pytest_twisted.ensureDeferred
async def test_change_and_sourcestamp_endpoints(api: Api) -> None:
    data = api.data
    for n, (branch, project) in enumerate([("main", "p"), ("main", "p"), ("dev", "q")]):
        await data.updates.add_change(
            author=f"a{n}", files=[f"f{n}"], comments="c", revision=f"r{n}", when_timestamp=n, branch=branch,
            category=None, revlink=None, properties={}, repository="repo", codebase="", project=project,
        )
    code, body, _ = await api.get("/api/v2/changes?limit=2&order=-changeid")
    assert code == 200 and [c["changeid"] for c in body["changes"]] == [3, 2] and body["meta"]["total"] == 3
    code, body, _ = await api.get("/api/v2/changes?project__eq=p&field=changeid&field=files")
    assert body["changes"] == [{"changeid": 1, "files": ["f0"]}, {"changeid": 2, "files": ["f1"]}]
    code, body, _ = await api.get("/api/v2/changes/3")
    assert code == 200 and body["changes"][0]["sourcestamp"]["revision"] == "r2"
    code, body, _ = await api.get("/api/v2/sourcestamps?order=-ssid&limit=1")
    assert code == 200 and body["sourcestamps"][0]["ssid"] == 3 and body["sourcestamps"][0]["patch"] is None
    assert set(body["sourcestamps"][0]) == {"ssid", "branch", "revision", "repository", "codebase", "project",
                                             "created_at", "patch"}
    code, body, _ = await api.get("/api/v2/sourcestamps/2/changes")
    assert code == 200 and [c["changeid"] for c in body["changes"]] == [2]
    # a buildset of source stamps 1 and 3, built by builder a
    bsid, brids = await data.updates.add_buildset(
        scheduler="s", sourcestamps=[1, 3], reason="r", properties={}, builderids=[1]
    )
    buildid = await _build_for(data, 1, brids[1])
    code, body, _ = await api.get(f"/api/v2/builds/{buildid}/changes")
    assert code == 200 and [c["changeid"] for c in body["changes"]] == [1, 3]
    code, body, _ = await api.get("/api/v2/builders/1/builds/1/changes")
    assert code == 200 and [c["changeid"] for c in body["changes"]] == [1, 3]
    code, body, _ = await api.get(f"/api/v2/buildsets/{bsid}/sourcestamps")
    assert code == 200 and [s["ssid"] for s in body["sourcestamps"]] == [1, 3]
    for path in ("/api/v2/changes/99", "/api/v2/sourcestamps/99", "/api/v2/sourcestamps/99/changes",
                 "/api/v2/builds/99/changes", "/api/v2/builders/1/builds/9/changes",
                 "/api/v2/buildsets/99/sourcestamps"):
        code, body, _ = await api.get(path)
        assert code == 404, (path, body)
    code, body, _ = await api.get("/api/v2/builders/2/builds/1/changes")
    assert code == 404


# -- buildsets and build requests ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_buildset_writes_requests_and_events(api: Api) -> None:
    data = api.data
    seen = record(data, "*/*/*", "builders/*/buildrequests/*/*")
    nested = record(data, "buildsets/*/builders/*/buildrequests/*/*")
    bsid, brids = await data.updates.add_buildset(
        scheduler="force", sourcestamps=[SS1, {"codebase": "lib", "repository": "lib.git"}], reason="because",
        properties={"owner": ("alice", "Force"), "n": ([1, 2], "Scheduler")}, builderids=[1, 2],
        external_idstring="ext-1", priority=5, waited_for=True,
    )
    assert bsid == 1 and brids == {1: 1, 2: 2}
    assert [key for key, _ in seen] == [
        "sourcestamps/1/new", "sourcestamps/2/new", "buildsets/1/new",
        "buildrequests/1/new", "builders/1/buildrequests/1/new",
        "buildrequests/2/new", "builders/2/buildrequests/2/new",
    ]
    assert [key for key, _ in nested] == ["buildsets/1/builders/1/buildrequests/1/new",
                                          "buildsets/1/builders/2/buildrequests/2/new"]
    code, body, _ = await api.get("/api/v2/buildsets/1")
    buildset = body["buildsets"][0]
    assert buildset == {
        "bsid": 1, "external_idstring": "ext-1", "reason": "because", "submitted_at": buildset["submitted_at"],
        "complete": False, "complete_at": None, "results": None, "parent_buildid": None,
        "parent_relationship": None, "rebuilt_buildid": None, "properties": {},
        "sourcestamps": [
            {**SS1, "ssid": 1, "created_at": buildset["sourcestamps"][0]["created_at"], "patch": None},
            {"ssid": 2, "branch": None, "revision": None, "repository": "lib.git", "codebase": "lib", "project": "",
             "created_at": buildset["sourcestamps"][1]["created_at"], "patch": None},
        ],
    }
    code, body, _ = await api.get("/api/v2/buildsets?property=owner&complete=false")
    assert body["buildsets"][0]["properties"] == {"owner": ["alice", "Force"]}
    code, body, _ = await api.get("/api/v2/buildrequests/2")
    request = body["buildrequests"][0]
    assert request == {
        "buildrequestid": 2, "buildsetid": 1, "builderid": 2, "priority": 5, "claimed": False,
        "claimed_at": None, "claimed_by_masterid": None, "complete": False, "results": -1,
        "submitted_at": buildset["submitted_at"], "complete_at": None, "waited_for": True, "properties": None,
    }
    code, body, _ = await api.get("/api/v2/buildrequests?property=*")
    assert [r["properties"] for r in body["buildrequests"]] == [
        {"owner": ["alice", "Force"], "n": [[1, 2], "Scheduler"]}] * 2
    code, body, _ = await api.get("/api/v2/buildrequests/1?property=n")
    assert body["buildrequests"][0]["properties"] == {"n": [[1, 2], "Scheduler"]}
    # the same source stamps again are found, not duplicated
    bsid2, _ = await data.updates.add_buildset(
        scheduler="force", sourcestamps=[SS1, 2], reason=None, properties={}, builderids=[3]
    )
    code, body, _ = await api.get(f"/api/v2/buildsets/{bsid2}")
    assert [s["ssid"] for s in body["buildsets"][0]["sourcestamps"]] == [1, 2]
    code, body, _ = await api.get("/api/v2/sourcestamps")
    assert body["meta"]["total"] == 2


@pytest_twisted.ensureDeferred
async def test_request_collections_and_ui_queue_query(api: Api) -> None:
    data = api.data
    brids = []
    for n in range(6):
        _, made = await data.updates.add_buildset(
            scheduler="s", sourcestamps=[SS1], reason=f"r{n}", properties={}, builderids=[1 + n % 2],
            priority=n % 3,
        )
        brids.append(made[1 + n % 2])
    # distinct submission times, oldest first
    for n, brid in enumerate(brids):
        await data.storage.execute(
            sa.update(schema.buildrequests).where(schema.buildrequests.c.id == brid).values(submitted_at=1000 + n)
        )
    assert await data.updates.claim_buildrequests([brids[0], brids[5]], 1) == [brids[0], brids[5]]
    queue = "/api/v2/buildrequests?claimed=false&order=-priority&order=-submitted_at"
    code, body, _ = await api.get(queue)
    # priorities: n=1,4 -> 1; n=2 -> 2; n=3 -> 0 (n=0 and n=5 are claimed)
    assert code == 200 and [r["buildrequestid"] for r in body["buildrequests"]] == [3, 5, 2, 4]
    assert body["meta"]["total"] == 4
    code, body, _ = await api.get(queue + "&builderid__eq=2&limit=1")
    assert [r["buildrequestid"] for r in body["buildrequests"]] == [2] and body["meta"]["total"] == 2
    code, body, _ = await api.get("/api/v2/buildrequests?claimed=true&field=buildrequestid&field=claimed_by_masterid")
    assert body["buildrequests"] == [{"buildrequestid": 1, "claimed_by_masterid": 1},
                                     {"buildrequestid": 6, "claimed_by_masterid": 1}]
    code, body, _ = await api.get("/api/v2/buildrequests?claimed__ne=false&complete=false")
    assert [r["buildrequestid"] for r in body["buildrequests"]] == [1, 6]
    code, body, _ = await api.get("/api/v2/builders/1/buildrequests?order=-buildrequestid")
    assert [r["buildrequestid"] for r in body["buildrequests"]] == [5, 3, 1]
    code, body, _ = await api.get("/api/v2/builders/b/buildrequests")
    assert [r["buildrequestid"] for r in body["buildrequests"]] == [2, 4, 6]
    code, body, _ = await api.get("/api/v2/builders/3/buildrequests")
    assert code == 200 and body == {"buildrequests": [], "meta": {"total": 0}}
    for path in ("/api/v2/builders/99/buildrequests", "/api/v2/builders/zz/buildrequests",
                 "/api/v2/buildrequests/99", "/api/v2/buildsets/99"):
        code, body, _ = await api.get(path)
        assert code == 404, (path, body)
    code, body, _ = await api.get("/api/v2/buildrequests?claimed=maybe")
    assert code == 400 and "claimed" in body["error"]


def rpc(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@pytest_twisted.ensureDeferred
async def test_cancel_and_set_priority_over_jsonrpc(api: Api) -> None:
    data = api.data
    events = record(data, "buildrequests/*/*")
    buildsets = record(data, "buildsets/*/*")
    bsid, brids = await data.updates.add_buildset(
        scheduler="s", sourcestamps=[SS1], reason="r", properties={}, builderids=[1, 2, 3]
    )
    one, two, three = brids[1], brids[2], brids[3]
    del events[:], buildsets[:]
    # set_priority while pending
    code, body = await api.rpc(f"/api/v2/buildrequests/{one}", rpc("set_priority", priority="7"))
    assert code == 200 and body["result"]["priority"] == 7
    assert [key for key, _ in events] == [f"buildrequests/{one}/update"]
    # cancel while pending: complete, cancelled, published as 'complete'
    code, body = await api.rpc(f"/api/v2/buildrequests/{one}", rpc("cancel", reason="not needed"))
    assert code == 200 and body["result"] is None
    code, got, _ = await api.get(f"/api/v2/buildrequests/{one}")
    request = got["buildrequests"][0]
    assert request["complete"] is True and request["results"] == CANCELLED and request["complete_at"] is not None
    assert events[-1][0] == f"buildrequests/{one}/complete" and events[-1][1]["results"] == CANCELLED
    # already complete: both actions conflict
    code, body = await api.rpc(f"/api/v2/buildrequests/{one}", rpc("cancel"))
    assert code == 409 and body["error"]["code"] == -32000
    assert body["error"]["message"] == f"build request {one} is already complete"
    code, body = await api.rpc(f"/api/v2/buildrequests/{one}", rpc("set_priority", priority=1))
    assert code == 409 and body["error"]["code"] == -32000 and "complete" in body["error"]["message"]
    # claimed: the build must be stopped instead
    assert await data.updates.claim_buildrequests([two], 1) == [two]
    code, body = await api.rpc(f"/api/v2/buildrequests/{two}", rpc("cancel"))
    assert code == 409 and body["error"]["code"] == -32000 and "stop its build" in body["error"]["message"]
    code, body = await api.rpc(f"/api/v2/buildrequests/{two}", rpc("set_priority", priority=1))
    assert code == 409 and "claimed" in body["error"]["message"]
    code, got, _ = await api.get(f"/api/v2/buildrequests/{two}")
    assert got["buildrequests"][0]["complete"] is False and got["buildrequests"][0]["priority"] == 0
    # bad parameters
    for params, bad in (({}, "priority"), ({"priority": "high"}, "priority"), ({"priority": True}, "priority"),
                        ({"priority": 1, "colour": "red"}, "colour")):
        code, body = await api.rpc(f"/api/v2/buildrequests/{three}", rpc("set_priority", **params))
        assert code == 400 and body["error"]["code"] == -32602 and bad in body["error"]["data"], body
    code, body = await api.rpc(f"/api/v2/buildrequests/{three}", rpc("cancel", reason=5))
    assert code == 400 and body["error"]["code"] == -32602
    code, body = await api.rpc("/api/v2/buildrequests/999", rpc("cancel"))
    assert code == 404
    code, body = await api.rpc("/api/v2/buildrequests", rpc("cancel"))
    assert code == 405  # the collection has no action
    assert buildsets == []
    # the buildset completes with the last request, with the worst result (cancelled)
    await data.updates.complete_buildrequests([two], SUCCESS)
    assert buildsets == []
    code, body = await api.rpc(f"/api/v2/buildrequests/{three}", rpc("cancel"))
    assert code == 200
    assert [key for key, _ in buildsets] == [f"buildsets/{bsid}/complete"]
    assert buildsets[0][1]["complete"] is True and buildsets[0][1]["results"] == CANCELLED


def test_worst_result() -> None:
    assert worst_result([]) == SUCCESS
    assert worst_result([SKIPPED, SKIPPED]) == SUCCESS
    assert worst_result([SUCCESS, WARNINGS, SKIPPED]) == WARNINGS
    assert worst_result([WARNINGS, FAILURE]) == FAILURE
    assert worst_result([FAILURE, EXCEPTION, WARNINGS]) == EXCEPTION
    assert worst_result([EXCEPTION, RETRY]) == RETRY
    assert worst_result([RETRY, CANCELLED, FAILURE]) == CANCELLED
    assert worst_result([None, WARNINGS]) == WARNINGS


@pytest_twisted.ensureDeferred
async def test_buildset_completion_and_request_lifecycle(data: DataAPI) -> None:
    completions = record(data, "buildsets/*/complete")
    requests = record(data, "buildrequests/*/*")
    cases = [
        ([SUCCESS, WARNINGS], WARNINGS),
        ([SKIPPED, SKIPPED], SUCCESS),
        ([FAILURE, SKIPPED, WARNINGS], FAILURE),
        ([CANCELLED, EXCEPTION], CANCELLED),
    ]
    made = []
    for results, _ in cases:
        made.append(await data.updates.add_buildset(
            scheduler="s", sourcestamps=[SS1], reason="r", properties={}, builderids=[1, 2, 3][:len(results)]
        ))
    del requests[:]
    # a claim, an unclaim by the wrong master (ignored), a real unclaim, a claim again
    first = made[0][1][1]
    other = await data.updates.master_active("m2")
    assert await data.updates.claim_buildrequests([first], 1) == [first]
    assert await data.updates.unclaim_buildrequests([first], other) == []
    assert await data.updates.unclaim_buildrequests([first], 1) == [first]
    entity = await data.get(f"buildrequests/{first}")
    assert entity["claimed"] is False and entity["claimed_at"] is None
    assert await data.updates.claim_buildrequests([first, 999], other) == [first]
    assert [key for key, _ in requests if key.startswith("buildrequests/")] == [
        f"buildrequests/{first}/claimed", f"buildrequests/{first}/unclaimed", f"buildrequests/{first}/claimed"]
    for (bsid, brids), (results, expected) in zip(made, cases, strict=True):
        ids = list(brids.values())
        # all but the last: the buildset stays incomplete
        for brid, result in zip(ids[:-1], results[:-1], strict=True):
            assert await data.updates.complete_buildrequests([brid], result) == [brid]
        assert (await data.get(f"buildsets/{bsid}"))["complete"] is False
        assert await data.updates.complete_buildrequests([ids[-1]], results[-1]) == [ids[-1]]
        buildset = await data.get(f"buildsets/{bsid}")
        assert buildset["complete"] is True and buildset["results"] == expected and buildset["complete_at"]
        # completing again changes nothing and publishes nothing
        assert await data.updates.complete_buildrequests(ids, FAILURE) == []
        assert await data.updates.maybe_complete_buildset(bsid) is False
        assert (await data.get(f"buildsets/{bsid}"))["results"] == expected
        # a complete request cannot be claimed
        assert await data.updates.claim_buildrequests(ids, 1) == []
    assert [key for key, _ in completions] == [f"buildsets/{bsid}/complete" for bsid, _ in made]
    assert [entity["results"] for _, entity in completions] == [expected for _, expected in cases]
    requests_done = await data.get("buildrequests", query={"complete": ["true"], "results": ["3"]})
    assert requests_done.total == 3  # skipped


@pytest_twisted.ensureDeferred
async def test_claim_exactly_once_under_contention(data: DataAPI, migrated_url: str) -> None:
    """Two masters, each with its own storage (two pools on PostgreSQL), claim the same 50 requests at once."""
    _, brids = await data.updates.add_buildset(
        scheduler="s", sourcestamps=[SS1], reason="r", properties={}, builderids=[1, 2, 3]
    )
    everything = list(brids.values())
    for _ in range(47 // 3 + 1):
        _, more = await data.updates.add_buildset(
            scheduler="s", sourcestamps=[SS1], reason="r", properties={}, builderids=[1, 2, 3]
        )
        everything.extend(more.values())
    everything = everything[:50]
    second_storage = make_storage(migrated_url)
    await second_storage.start()
    try:
        first, second = data, make_data(second_storage)
        m2 = await second.updates.master_active("m2")
        events = [record(first, "buildrequests/*/claimed"), record(second, "buildrequests/*/claimed")]
        rng = random.Random(7)

        def batches() -> list[list[int]]:
            # overlapping batches in a shuffled order: singles, pairs and whole tens
            order = everything[:]
            rng.shuffle(order)
            found, start = [], 0
            while start < len(order):
                size = rng.choice([1, 2, 10])
                found.append(order[start:start + size])
                start += size
            return found

        claims = [(first, 1, batch) for batch in batches()] + [(second, m2, batch) for batch in batches()]
        rng.shuffle(claims)
        results = await gather(*(api.updates.claim_buildrequests(batch, masterid) for api, masterid, batch in claims))
        # both share the event journal: once caught up, each has delivered every claim, once
        await first.events.catch_up()
        await second.events.catch_up()
    finally:
        await second_storage.stop()
    got: dict[int, list[int]] = {1: [], m2: []}
    for (_, masterid, batch), claimed in zip(claims, results, strict=True):
        assert set(claimed) <= set(batch)
        got[masterid].extend(claimed)
    assert not set(got[1]) & set(got[m2])
    assert sorted(got[1] + got[m2]) == sorted(everything)  # every request claimed exactly once
    if data.storage.dialect_name == "postgresql":
        # two pools really interleave; SQLite's file lock may let one writer take every turn
        assert got[1] and got[m2]
    rows = await data.storage.fetch_all(
        sa.select(schema.buildrequests.c.id, schema.buildrequests.c.claimed_by_masterid)
        .where(schema.buildrequests.c.id.in_(everything))
    )
    assert {row["id"]: row["claimed_by_masterid"] for row in rows} == {
        **{brid: 1 for brid in got[1]}, **{brid: m2 for brid in got[m2]}}
    for seen in events:
        assert sorted(int(key.split("/")[1]) for key, _ in seen) == sorted(everything)


@pytest_twisted.ensureDeferred
async def test_buildset_completes_once_across_masters(data: DataAPI, migrated_url: str) -> None:
    made = []
    for _ in range(6):
        made.append(await data.updates.add_buildset(
            scheduler="s", sourcestamps=[SS1], reason="r", properties={}, builderids=[1, 2]
        ))
    second_storage = make_storage(migrated_url)
    await second_storage.start()
    try:
        second = make_data(second_storage)
        # a hub starts at the journal's present (as a master does when it starts), before the race below:
        # otherwise it would start at its first event and take the first master's earlier ones for old
        await second.events.catch_up()
        completions = [record(data, "buildsets/*/complete"), record(second, "buildsets/*/complete")]
        # each master completes one request of every buildset, at the same time
        await gather(*(
            api.updates.complete_buildrequests([brids[builderid]], result)
            for _, brids in made
            for api, builderid, result in ((data, 1, SUCCESS), (second, 2, WARNINGS))
        ))
        # and then both insist, concurrently
        done = await gather(*(api.updates.maybe_complete_buildset(bsid) for bsid, _ in made for api in (data, second)))
        # the masters share the event journal: once caught up, each has seen every completion once
        await data.events.catch_up()
        await second.events.catch_up()
    finally:
        await second_storage.stop()
    assert not any(done)  # already completed by the requests' own completion
    for seen in completions:
        keys = sorted(key for key, _ in seen)
        assert keys == sorted(f"buildsets/{bsid}/complete" for bsid, _ in made)  # exactly once each
    for bsid, _ in made:
        buildset = await data.get(f"buildsets/{bsid}")
        assert buildset["complete"] is True and buildset["results"] == WARNINGS


@pytest.mark.parametrize("bad", [{"patch": {"body": "x"}}, {"branch": "b", "colour": "red"}])
@pytest_twisted.ensureDeferred
async def test_add_buildset_refuses_bad_sourcestamps(data: DataAPI, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        await data.updates.add_buildset(scheduler="s", sourcestamps=[bad], reason="r", properties={},
                                        builderids=[1])
    assert (await data.get("buildsets")).total == 0
