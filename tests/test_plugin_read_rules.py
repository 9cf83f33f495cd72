"""Every GET route of every bundled plugin obeys the master's read rules, on both backends.

A master with ``Auth(read_rules=...)`` letting anonymous callers read builders only: each
plugin GET route must then answer as ``/api/v2`` does for the resource types it reads,
refusing anonymous callers and users without a rule, and answering users with one.  The
routes tested are checked against those each plugin registers, so a new GET route without
a case here fails the test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import Api, serve
from test_dci import DciSite, _make_topic, dci  # noqa: F401 (dci is a fixture)

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.results import SUCCESS
from master.www.auth import Auth, Authenticator, ControlRule, ReadRule, UserStore
from master.www.rest import RestApi
from master.www.site import build_site
from plugins.bileto import BiletoPlugin
from plugins.bileto.routes import BiletoApi
from plugins.dci.routes import DciApi
from plugins.evergreen import EvergreenPlugin
from plugins.evergreen.routes import EvergreenApi
from plugins.selfserve import SelfServePlugin
from plugins.selfserve.routes import SelfServeWeb

REV = "c0ffee" + "0" * 34
READ_RULES = [ReadRule(roles="*", resources=["builders"]), ReadRule(roles=["reader"])]
READER = ("reader", "reader-pw")  # may read everything
STRANGER = ("stranger", "stranger-pw")  # logged in, but no read rule names their role


def basic(user: tuple[str, str]) -> dict[str, str]:
    """An Authorization header for *user*."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()}


@dataclass
class Served:
    """The three plugins (Evergreen, self-serve, Bileto) and REST on one site, with the reader's API token."""

    api: Api
    data: DataAPI
    token: str

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        """GET *path*: status and body text."""
        response = await treq.get(self.api.url + path, headers=headers or {}, pool=self.api.pool,
                                  allow_redirects=False)
        return response.code, (await response.content()).decode()


@pytest_twisted.async_yield_fixture()
async def served(storage: Any, migrated_url: str, tmp_path: Path) -> AsyncIterator[Served]:
    plugins = [EvergreenPlugin(), SelfServePlugin(), BiletoPlugin(api_token="bot")]
    migrate.prepare_plugin_tables(migrated_url, migrate.plugin_schemas(plugins))
    store = UserStore(tmp_path / "users.json")
    store.add_user(*READER, ["reader"])
    store.add_user(*STRANGER, ["viewer"])
    token = store.new_token("reader")[1]
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    for plugin in plugins:
        data.add_plugin(plugin)
    auth = Authenticator(Auth(rules=[ControlRule(roles=["admin"])], read_rules=READ_RULES), tmp_path)
    data.auth = auth
    mounts = {"api": RestApi(data, auth=auth).resource()}
    for plugin in plugins:
        mounts.update(plugin.web_resources(data))
    async with serve(data, build_site(mounts)) as api:
        yield Served(api, data, token)


async def seed(data: DataAPI) -> dict[str, Any]:
    """A project ``sample`` on branch ``main``: one finished build with a test result, and a Bileto ticket."""
    projectid = await data.updates.find_project_id("sample")
    builderid = await data.updates.update_builder("u-unit", projectid=projectid,
                                                  tags=["variant:ubuntu", "task:unit"])
    changeid = await data.updates.add_change(author="Bo <bo@example.org>", files=[], comments="fix", revision=REV,
                                             branch="main", repository="https://example.org/r.git", project="sample")
    ssid = (await data.get(("changes", str(changeid))))["sourcestamp"]["ssid"]
    bsid, brids = await data.updates.add_buildset("s", [ssid], "r", {"owner": ("carol", "test")}, [builderid])
    brid = brids[builderid]
    masterid = await data.updates.master_active("m1")
    assert await data.updates.claim_buildrequests([brid], masterid) == [brid]
    buildid, _ = await data.updates.add_build(builderid, brid, None, masterid)
    stepid, _, _ = await data.updates.add_step(buildid, "run")
    await data.updates.add_evergreen_test_results(buildid, stepid, None, [
        {"name": "test_one", "status": "fail", "duration_ns": 5}])
    await data.updates.finish_step(stepid, SUCCESS)
    await data.updates.finish_build(buildid, SUCCESS)
    await data.updates.complete_buildrequests([brid], SUCCESS)
    ticket = await data.control(("tickets",), "create", {"description": "a landing", "landers": "carol",
                                                         "siloname": "ubuntu/landing-001"}, None)
    jobid = await data.updates.add_selfserve_job("cancel_request", "carol", {"brid": brid})
    return {"bsid": bsid, "brid": brid, "buildid": buildid, "ticket": ticket["request_id"], "jobid": jobid}


def get_rules(app: Any) -> set[str]:
    """The URL rules of a Klein app that answer GET (``methods=None`` answers every method)."""
    return {rule.rule for rule in app.url_map.iter_rules() if rule.methods is None or "GET" in rule.methods}


@pytest_twisted.ensureDeferred
async def test_every_plugin_get_route_follows_the_read_rules(served: Served) -> None:
    s = await seed(served.data)
    reader = basic(READER)

    # Evergreen's ids, found as the reader
    code, text = await served.get(f"/rest/v1/projects/sample/revisions/{REV}", reader)
    assert code == 200, text
    version_doc = json.loads(text)
    version = version_doc["id"]
    build = version_doc["builds"][0]
    code, text = await served.get(f"/rest/v1/builds/{build}", reader)
    task = json.loads(text)["tasks"]["unit"]["task_id"]

    evergreen = {
        "/projects/<project>/versions": "/rest/v1/projects/sample/versions",
        "/projects/<project>/revisions/<revision>": f"/rest/v1/projects/sample/revisions/{REV}",
        "/versions/<version_id>": f"/rest/v1/versions/{version}",
        "/versions/<version_id>/status": f"/rest/v1/versions/{version}/status",
        "/builds/<build_id>": f"/rest/v1/builds/{build}",
        "/builds/<build_id>/status": f"/rest/v1/builds/{build}/status",
        "/tasks/<task_id>": f"/rest/v1/tasks/{task}",
        "/tasks/<task_id>/status": f"/rest/v1/tasks/{task}/status",
        "/tasks/<task_name>/history": "/rest/v1/tasks/unit/history?project=sample",
    }
    assert set(evergreen) == get_rules(EvergreenApi.app)
    selfserve = {
        "/": None,  # the list of routes: static, reads nothing
        "/branches": "/self-serve/branches",
        "/jobs": "/self-serve/jobs",
        "/jobs/<job_id>": f"/self-serve/jobs/{s['jobid']}",
        "/<branch>": "/self-serve/main",
        "/<branch>/builders": "/self-serve/sample/builders",
        "/<branch>/user/<user>": "/self-serve/main/user/carol",
        "/<branch>/build/<build_id>": f"/self-serve/main/build/{s['buildid']}",
        "/<branch>/request/<request_id>": f"/self-serve/main/request/{s['brid']}",
        "/<branch>/rev/<revision>": f"/self-serve/main/rev/{REV}",
        "/<branch>/rev/<revision>/is_done": f"/self-serve/main/rev/{REV}/is_done",
    }
    assert set(selfserve) == get_rules(SelfServeWeb.app)
    bileto = {
        "/tickets": "/v1/tickets",
        "/ticket/<ticket>": f"/v1/ticket/{s['ticket']}",
        "/user/<lander>": "/v1/user/carol",
        "/silo/<path:silo>": "/v1/silo/001",
        "/publishable": "/v1/publishable",
        "/failures": "/v1/failures",
        "/metadata": None,  # documentation (fields, master.cfg's lists), public as /api/v2/openapi.json is
        "/comment": None,  # POST only (GET is 405)
        "/": None,  # a 404 naming the routes
        "/<path:rest>": None,  # a 404 for any other path
    }
    assert set(bileto) == get_rules(BiletoApi.app)

    paths = [p for table in (evergreen, selfserve, bileto) for p in table.values() if p is not None]
    # self-serve answers every refusal 403 ACCESS DENIED, as BuildAPI did
    for path in paths:
        anonymous = await served.get(path, {"Accept": "application/json"})
        assert anonymous[0] in ((403,) if path.startswith("/self-serve") else (401,)), (path, anonymous)
        assert "authentication required to read" in anonymous[1], (path, anonymous)
        stranger = await served.get(path, {**basic(STRANGER), "Accept": "application/json"})
        assert stranger[0] == 403 and "user 'stranger' may not read" in stranger[1], (path, stranger)
        allowed = await served.get(path, {**reader, "Accept": "application/json"})
        assert allowed[0] == 200, (path, allowed)
    # Evergreen's own credentials (Api-User and an API token as Api-Key) and a Bearer token read too
    keys = {"Api-User": "reader", "Api-Key": served.token}
    assert (await served.get(f"/rest/v1/tasks/{task}", keys))[0] == 200
    assert (await served.get(f"/rest/v1/tasks/{task}", {"Api-User": "reader", "Api-Key": "wrong"}))[0] == 401
    assert (await served.get("/v1/tickets", {"Authorization": f"Bearer {served.token}"}))[0] == 200
    # REST agrees: builders are public, builds are not
    assert (await served.get("/api/v2/builders"))[0] == 200
    assert (await served.get("/api/v2/builds"))[0] == 401


@pytest.mark.slow  # runs dcictl
@pytest_twisted.ensureDeferred
async def test_every_dci_get_route_follows_the_read_rules(dci: DciSite, tmp_path: Path) -> None:  # noqa: F811
    from dciclient.v1.api import file, job, jobstate

    ctx = dci.context()
    topic, components = await _make_topic(dci)
    made = await dci.call(job.create, ctx, topic["id"], components=[components["hwcert-1"]["id"]])
    job_id = made.json()["job"]["id"]
    state_id = (await dci.call(jobstate.create, ctx, "pre-run", None, job_id)).json()["jobstate"]["id"]
    file_id = (await dci.call(file.create, ctx, "log.txt", content="hello", mime="text/plain",
                              job_id=job_id)).json()["file"]["id"]
    feeder, _ = await dci.data.updates.dci_create_feeder("f1", dci.team["id"])
    ids = {"topics": topic["id"], "components": components["hwcert-1"]["id"], "jobs": job_id,
           "jobstates": state_id, "files": file_id, "remotecis": dci.remoteci["id"],
           "feeders": feeder["id"]}

    routes = {}
    for method, pattern, _ in DciApi.routes:
        if method != b"GET" or pattern in ((), ("identity",)):
            continue  # "/" is DCI's banner; /identity says who the caller is (as /auth/user), reading nothing
        path = "/".join(ids[pattern[0]] if part == "{id}" else part for part in pattern)
        routes["/" + "/".join(pattern)] = "/" + path
    assert len(routes) >= 20, routes

    async def statuses() -> dict[str, int]:
        found = {}
        for name, path in routes.items():
            response = await dci.call(ctx.session.request, "GET", f"{dci.url}/api/v1{path}")
            found[name] = (response.status_code, response.text)
        return found

    # before: no read rules, everything readable by the lab's remoteci
    before = await statuses()
    assert all(code == 200 for code, _ in before.values()), before
    # read rules that name no DCI client: every GET is refused, with DCI's 401
    dci.data.auth = Authenticator(Auth(read_rules=[ReadRule(roles="*", resources=["builders"])]), tmp_path)
    refused = await statuses()
    for name, (code, text) in refused.items():
        assert code == 401 and "Operation not authorized" in text and "may not read" in text, (name, code, text)
    # a rule naming the remotecis' role: readable again
    dci.data.auth = Authenticator(Auth(read_rules=[ReadRule(roles=["dci-remoteci"])]), tmp_path)
    again = await statuses()
    assert all(code == 200 for code, _ in again.values()), again
