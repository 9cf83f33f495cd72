"""The Evergreen plugin's resource types on both backends, and its JUnit reader and mapping."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import serve

from master.data.connector import DataAPI
from master.data.errors import InvalidParams
from master.data.resources import core_resource_types
from master.db import migrate
from master.results import CANCELLED, FAILURE, SUCCESS
from master.www.site import build_site
from plugins.evergreen import EvergreenPlugin
from plugins.evergreen import mapping as m
from plugins.evergreen.junit import JUnitError, parse_junit
from plugins.evergreen.resources import HOLDER
from plugins.evergreen.routes import EvergreenApi


@pytest.fixture
def plugin_tables(migrated_url: str) -> str:
    migrate.prepare_plugin_tables(migrated_url, migrate.plugin_schemas([EvergreenPlugin()]))
    return migrated_url


@pytest_twisted.async_yield_fixture()
async def data(plugin_tables: str, storage: Any) -> Any:
    api = DataAPI(storage)
    for rtype in core_resource_types():
        api.add_resource_type(rtype)
    api.add_plugin(EvergreenPlugin())
    yield api


async def setup_project(data: DataAPI) -> dict[str, Any]:
    sample = await data.updates.find_project_id("sample")
    other = await data.updates.find_project_id("other")
    tagged = await data.updates.update_builder(
        "u-compile", tags=["variant:ubuntu", "variant_name:Ubuntu 22.04", "task:compile", "extra"], projectid=sample)
    plain = await data.updates.update_builder("plain_builder", projectid=sample)
    foreign = await data.updates.update_builder("elsewhere", tags=["task:compile"], projectid=other)
    changeid = await data.updates.add_change(author="Bo <bo@example.org>", files=[], comments="fix", revision="abc",
                                             branch="main", repository="https://example.org/r.git")
    ssid = (await data.get(("changes", str(changeid))))["sourcestamp"]["ssid"]
    bsid, brids = await data.updates.add_buildset("s", [ssid], "r", {}, [tagged, plain, foreign])
    return {"sample": sample, "other": other, "tagged": tagged, "plain": plain, "foreign": foreign, "bsid": bsid,
            "brids": brids, "ssid": ssid, "changeid": changeid}


@pytest_twisted.ensureDeferred
async def test_tasks_read_variant_and_task_from_builder_tags(data: DataAPI) -> None:
    s = await setup_project(data)
    tasks = {t["builderid"]: t for t in (await data.get(("evergreen_tasks",), query={"order": ["taskid"]})).items}
    tagged, plain = tasks[s["tagged"]], tasks[s["plain"]]
    assert (tagged["variant"], tagged["variant_name"], tagged["task_name"]) == ("ubuntu", "Ubuntu 22.04", "compile")
    assert (plain["variant"], plain["variant_name"], plain["task_name"]) == ("plain_builder",) * 3
    assert tagged["buildid"] is None and tagged["executions"] == 0 and m.task_status(tagged) == "undispatched"
    # filters on the computed names run in SQL
    found = await data.get(("evergreen_tasks",), query={"task_name": ["compile"], "projectid": [str(s["sample"])]})
    assert [t["taskid"] for t in found.items] == [s["brids"][s["tagged"]]]

    version = await data.get(("evergreen_versions", str(s["bsid"])))
    assert (version["revision"], version["branch"], version["changeid"], version["author"], version["comments"]) == (
        "abc", "main", s["changeid"], "Bo <bo@example.org>", "fix")
    assert version["triggered"] is False and m.requester(version) == "gitter_request"

    # a build of one task: dispatched, then started, then success with its time taken
    buildid, _ = await data.updates.add_build(s["tagged"], s["brids"][s["tagged"]], None, None)
    task = await data.get(("evergreen_tasks", str(s["brids"][s["tagged"]])))
    assert task["buildid"] == buildid and task["executions"] == 1 and task["started_at"] is None
    stepid, _, _ = await data.updates.add_step(buildid, "run")
    await data.updates.start_step(stepid)
    await data.updates.finish_step(stepid, SUCCESS)
    await data.updates.finish_build(buildid, SUCCESS)
    await data.updates.complete_buildrequests([s["brids"][s["tagged"]]], SUCCESS)
    task = await data.get(("evergreen_tasks", str(s["brids"][s["tagged"]])))
    assert m.task_status(task) == "success" and task["started_at"] is not None
    assert task["last_heartbeat"] is not None and m.task_time_taken(task) % 1_000_000_000 == 0
    with_expected = await data.get(("evergreen_tasks", str(s["brids"][s["tagged"]])),
                                   query={"field": ["taskid", "expected_duration"]})
    build = await data.get(("builds", str(buildid)))
    expected = (build["complete_at"] - build["started_at"]) * 1_000_000_000
    assert with_expected == {"taskid": s["brids"][s["tagged"]], "expected_duration": expected}
    other = await data.get(("evergreen_tasks", str(s["brids"][s["plain"]])), query={"field": ["expected_duration"]})
    assert other == {"expected_duration": 0}  # its builder never succeeded


@pytest_twisted.ensureDeferred
async def test_versions_of_a_project_and_triggered_buildsets(data: DataAPI) -> None:
    s = await setup_project(data)
    for project in ("sample", "other"):
        listed = await data.get(("projects", str(s[project]), "evergreen_versions"))
        assert [v["bsid"] for v in listed.items] == [s["bsid"]]
    nobody = await data.updates.find_project_id("nobody")
    assert (await data.get(("projects", str(nobody), "evergreen_versions"))).items == []

    # a buildset a build triggered is its parent's work: listed only when asked for
    buildid, _ = await data.updates.add_build(s["plain"], s["brids"][s["plain"]], None, None)
    child, _ = await data.updates.add_buildset("t", [s["ssid"]], "triggered", {}, [s["plain"]],
                                               parent_buildid=buildid)
    path = ("projects", str(s["sample"]), "evergreen_versions")
    top = await data.get(path, query={"triggered": ["false"], "order": ["-bsid"]})
    assert [v["bsid"] for v in top.items] == [s["bsid"]]
    every = await data.get(path, query={"order": ["-bsid"]})
    assert [v["bsid"] for v in every.items] == [child, s["bsid"]]
    assert m.requester(every.items[0]) == "trigger_request"
    page = await data.get(path, query={"order": ["-bsid"], "bsid__lt": [str(child)], "limit": ["1"]})
    assert [v["bsid"] for v in page.items] == [s["bsid"]] and page.total == 1


@pytest_twisted.ensureDeferred
async def test_deactivation_holds_pending_requests_and_activation_gives_them_back(data: DataAPI) -> None:
    s = await setup_project(data)
    masterid = await data.updates.master_active("real-master")
    running = s["brids"][s["plain"]]
    assert await data.updates.claim_buildrequests([running], masterid) == [running]
    events: list[tuple[str, ...]] = []
    data.events.subscribe(("evergreen_versions", "*", "*"), lambda key, entity: events.append(key))

    # only the sample project's pending task is held: the dispatched one runs on, the other project's stays
    held = await data.updates.set_evergreen_activation(s["bsid"], False, s["sample"])
    assert held == [s["brids"][s["tagged"]]]
    assert events == [("evergreen_versions", str(s["bsid"]), "update")]
    holder = (await data.get(("masters",), query={"name": [HOLDER]})).items
    assert len(holder) == 1 and holder[0]["active"] is False
    # what the engine's distributor asks for: requests nobody claimed
    queued = await data.get(("buildrequests",), query={"claimed": ["false"], "complete": ["false"]})
    assert [r["buildrequestid"] for r in queued.items] == [s["brids"][s["foreign"]]]
    tasks = {t["taskid"]: t for t in (await data.get(("evergreen_tasks",))).items}
    assert tasks[s["brids"][s["tagged"]]]["held"] is True and tasks[running]["held"] is False
    assert m.task_status(tasks[s["brids"][s["tagged"]]]) == "undispatched"
    assert m.task_activated(tasks[s["brids"][s["tagged"]]]) is False
    assert m.task_status(tasks[running]) == "dispatched"
    assert (await data.get(("evergreen_tasks",), query={"held": ["true"]})).total == 1

    # deactivating twice changes nothing; activating releases exactly the held one
    assert await data.updates.set_evergreen_activation(s["bsid"], False, s["sample"]) == []
    assert await data.control(("evergreen_versions", str(s["bsid"])), "set_activation",
                              {"activated": True, "projectid": s["sample"]}) == held
    queued = await data.get(("buildrequests",), query={"claimed": ["false"], "complete": ["false"]})
    assert sorted(r["buildrequestid"] for r in queued.items) == sorted([s["brids"][s["tagged"]],
                                                                        s["brids"][s["foreign"]]])
    # the holder row is made once and reused
    await data.updates.set_evergreen_activation(s["bsid"], False)
    assert (await data.get(("masters",), query={"name": [HOLDER]})).total == 1
    with pytest.raises(InvalidParams):
        await data.control(("evergreen_versions", str(s["bsid"])), "set_activation", {"activated": "maybe"})


@pytest_twisted.ensureDeferred
async def test_test_results_are_stored_per_build_and_go_with_it(data: DataAPI) -> None:
    s = await setup_project(data)
    buildid, _ = await data.updates.add_build(s["tagged"], s["brids"][s["tagged"]], None, None)
    stepid, _, _ = await data.updates.add_step(buildid, "test results")
    logid = await data.updates.add_log(stepid, "stdio", "s")
    new: list[dict[str, Any]] = []
    data.events.subscribe(("evergreen_test_results", "*", "new"), lambda key, entity: new.append(entity))
    parsed = parse_junit('<testsuites><testsuite><testcase classname="a" name="b" time="0.5"/>'
                         '<testcase name="c"><skipped/></testcase></testsuite></testsuites>')
    ids = await data.updates.add_evergreen_test_results(buildid, stepid, logid, parsed)
    assert len(ids) == 2 and [e["testresultid"] for e in new] == ids
    rows = (await data.get(("builds", str(buildid), "evergreen_test_results"))).items
    assert [(r["name"], r["status"], r["duration_ns"], r["logid"]) for r in rows] == [
        ("a.b", "pass", 500_000_000, logid), ("c", "skip", 0, logid)]
    with pytest.raises(InvalidParams):
        await data.updates.add_evergreen_test_results(buildid, stepid, None, [{"name": "x", "status": "odd",
                                                                                "duration_ns": 0}])
    await data.updates.finish_build(buildid, FAILURE)
    assert await data.updates.delete_builds_completed_before(2**31) == 1
    assert (await data.get(("evergreen_test_results",))).total == 0


@pytest_twisted.ensureDeferred
async def test_patch_is_refused_when_the_master_has_no_users(data: DataAPI) -> None:
    s = await setup_project(data)
    version = await data.get(("evergreen_versions", str(s["bsid"])))
    version_id = m.version_id("sample", version["revision"], s["bsid"])
    async with serve(data, build_site({"rest/v1": EvergreenApi(data).resource()}), in_memory=True) as api:
        url = f"{api.url}/rest/v1/versions/{version_id}"
        assert (await treq.get(url, pool=api.pool)).code == 200
        response = await treq.request("PATCH", url, data=b'{"activated": false}', pool=api.pool,
                                      headers={"Api-User": "admin", "Api-Key": "cim_x"})
        assert response.code == 401
        message = "unauthorized: this master has no users (auth is off in master.cfg)"
        assert await response.json() == {"message": message}
    # nothing was held
    assert (await data.get(("evergreen_tasks",), query={"held": ["true"]})).total == 0


def test_junit_reports_are_read_case_by_case() -> None:
    report = (
        '<testsuites><testsuite name="s"><testcase classname="k" name="ok" time="1.25"/>'
        '<testcase classname="k" name="bad" time="0.001"><failure message="no"/></testcase>'
        '<testcase classname="k" name="err"><error/></testcase>'
        '<testcase classname="k" name="ok" time="oops"/></testsuite>'
        '<testsuite><testcase name="lone" time="-1"><skipped/></testcase></testsuite></testsuites>'
    )
    assert parse_junit(report) == [
        {"name": "k.ok", "status": "pass", "duration_ns": 1_250_000_000},
        {"name": "k.bad", "status": "fail", "duration_ns": 1_000_000},
        {"name": "k.err", "status": "fail", "duration_ns": 0},
        {"name": "k.ok #2", "status": "pass", "duration_ns": 0},
        {"name": "lone", "status": "skip", "duration_ns": 0},
    ]
    assert parse_junit('<testsuite name="empty"/>') == []
    with pytest.raises(JUnitError, match="not XML"):
        parse_junit("<testsuite>")
    with pytest.raises(JUnitError, match="root element is <html>"):
        parse_junit("<html/>")


def _task(**fields: Any) -> dict[str, Any]:
    base = {"complete": False, "results": None, "held": False, "claimed": False, "buildid": None,
            "build_complete_at": None, "started_at": None, "build_started_at": None, "complete_at": None}
    return {**base, **fields}


def test_statuses_times_and_names_map_to_evergreens() -> None:
    queued, held = _task(), _task(held=True, claimed=True)
    dispatched = _task(claimed=True, buildid=3, build_started_at=100)
    started = _task(claimed=True, buildid=3, build_started_at=100, started_at=101)
    passed = _task(complete=True, results=SUCCESS, buildid=3, build_started_at=100, started_at=101,
                   build_complete_at=105)
    failed = {**passed, "results": FAILURE}
    cancelled_early = _task(complete=True, results=CANCELLED, complete_at=99)
    assert [m.task_status(t) for t in (queued, held, dispatched, started, passed, failed, cancelled_early)] == [
        "undispatched", "undispatched", "dispatched", "started", "success", "failed", "undispatched"]
    assert m.task_time_taken(passed) == 4_000_000_000 and m.task_time_taken(started) == 0
    assert m.task_activated(held) is False and m.task_activated(cancelled_early) is False
    assert m.group_status([queued, queued]) == "created"
    assert m.group_status([passed, queued]) == "started"
    assert m.group_status([passed, failed]) == "failed" and m.group_status([passed]) == "success"
    assert m.group_finish([passed, started]) is None and m.group_finish([passed, failed]) == 105
    assert m.rfc3339(None) == "0001-01-01T00:00:00Z" and m.rfc3339(0) == "1970-01-01T00:00:00Z"
    assert m.split_author("Ann Lee <ann@x.org>") == ("Ann Lee", "ann@x.org") and m.split_author("ann") == ("ann", "")
    assert m.repository_parts("git@github.com:org/repo.git") == ("org", "repo", "github")
    assert m.repository_parts("https://git.example.org/team/tool.git") == ("", "tool", "git")
    assert m.version_id("p_q", None, 7) == "p_q_latest_7" and m.trailing_number("p_q_latest_7") == 7
    assert m.trailing_number("p_q_latest") is None and m.trailing_number("7") is None
