"""Self-serve (plugins.selfserve) over real HTTP on both backends: formats, auth, every error path, the agent.

These tests serve the plugin's routes and ci-master's REST on a port of 127.0.0.1 and talk
to them with treq, with ci-master's own users (Basic auth).  Builds and requests are made
through the core's update methods; the runs on a real master and worker are in
test_selfserve_engine.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_twisted
import sqlalchemy as sa
import treq
from apiclient import serve
from twisted.web.client import HTTPConnectionPool
from waiting import wait_for

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.results import CANCELLED, SUCCESS
from master.www.auth import Auth, Authenticator, ControlRule, ReadRule, UserStore
from master.www.rest import RestApi
from master.www.site import build_site
from plugins.selfserve import SelfServePlugin

WAIT = 30.0
REV = "a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f6a7b8c9d0"
ALICE = ("alice", "alice-pw")  # may do every self-serve job (role "release")
BOB = ("bob", "bob-pw")  # a user without that role


@dataclass
class Reply:
    """What came back: status, headers, body text and (when JSON) the decoded body."""

    code: int
    headers: Any
    text: str

    @property
    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.text)

    def header(self, name: str) -> str | None:
        """One header's value."""
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None


@dataclass
class Client:
    """Talks to a master's /self-serve as BuildAPI's clients did: form bodies, Basic auth, no redirects."""

    url: str
    pool: HTTPConnectionPool

    async def call(self, method: str, path: str, form: dict[str, Any] | None = None,
                   user: tuple[str, str] | None = ALICE, json_reply: bool = True,
                   headers: dict[str, str] | None = None) -> Reply:
        """Send *method* to *path* with a form-encoded body (even on GET and DELETE)."""
        sent = dict(headers or {})
        if json_reply:
            sent.setdefault("Accept", "application/json")
        if user is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
        response = await treq.request(
            method, self.url + path, data=form, headers=sent, pool=self.pool, allow_redirects=False,
        )
        return Reply(response.code, response.headers, (await response.content()).decode())

    async def job(self, reply: Reply) -> dict[str, Any]:
        """Wait until the job a 202 reply queued is complete; return its record."""
        assert reply.code == 202, reply.text
        assert reply.json["status"] == "OK"
        jobid = reply.json["request_id"]

        async def completed() -> dict[str, Any] | None:
            job = (await self.call("GET", f"/self-serve/jobs/{jobid}")).json
            return job if job["completed_at"] is not None else None

        return await wait_for(completed, f"job {jobid} to complete", timeout=WAIT, interval=0.1)


def make_users(basedir: Path) -> None:
    """alice may run self-serve jobs, bob may not."""
    store = UserStore(basedir / "users.json")
    store.add_user(ALICE[0], ALICE[1], ["release"])
    store.add_user(BOB[0], BOB[1], ["viewer"])


AUTH_RULES = [ControlRule(roles=["release"], resources=["selfservejobs"]), ControlRule(roles=["admin"])]


@dataclass
class Site:
    """A data API with the plugin, its agent, and a client of the served site."""

    data: DataAPI
    plugin: SelfServePlugin
    agent: Any
    client: Client


@pytest_twisted.async_yield_fixture()
async def site(storage: Any, migrated_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    """The plugin's routes at /self-serve and REST at /api, on the test's database, with users."""
    plugin = SelfServePlugin(poll_interval=0.5)
    migrate.prepare_plugin_tables(migrated_url, migrate.plugin_schemas([plugin]))
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    data.add_plugin(plugin)
    make_users(tmp_path)
    data.auth = Authenticator(Auth(rules=AUTH_RULES), tmp_path)
    [agent] = plugin.services(data)
    agent.startService()
    mounts = {"api": RestApi(data).resource(), **plugin.web_resources(data)}
    try:
        async with serve(data, build_site(mounts), in_memory=True) as api:
            yield Site(data, plugin, agent, Client(api.url, api.pool))
    finally:
        if agent.running:
            await agent.stopService()


async def a_request(data: DataAPI, builder: str = "linux", project: str = "firefox", branch: str = "main",
                    revision: str = REV, owner: str = "carol") -> tuple[int, int]:
    """A buildset of one request for *builder* at *revision*; return ``(builderid, buildrequestid)``."""
    projectid = await data.updates.find_project_id(project)
    builderid = await data.updates.update_builder(builder, projectid=projectid)
    stamp = {"branch": branch, "revision": revision, "repository": "https://example.org/repo.git",
             "project": project}
    _, brids = await data.updates.add_buildset("test", [stamp], "because", {"owner": (owner, "test")}, [builderid])
    return builderid, brids[builderid]


async def a_build(data: DataAPI, results: int | None = SUCCESS, **kw: Any) -> tuple[int, int]:
    """A request claimed by a master and its build (finished with *results*, or running); return their ids."""
    builderid, brid = await a_request(data, **kw)
    masterid = await data.updates.master_active("m1")
    workerid = await data.updates.find_worker_id("w1")
    assert await data.updates.claim_buildrequests([brid], masterid) == [brid]
    buildid, _ = await data.updates.add_build(builderid, brid, workerid, masterid)
    if results is not None:
        await data.updates.finish_build(buildid, results)
        await data.updates.complete_buildrequests([brid], results)
    return brid, buildid


def failed(reply: Reply, code: int, msg: str) -> None:
    """*reply* is the FAILED answer *code* with *msg*."""
    assert reply.code == code, (reply.code, reply.text)
    assert reply.header("Content-Type") == "application/json"
    assert reply.json == {"status": "FAILED", "msg": msg}


# -- formats ------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_formats_redirects_and_method_override(site: Site) -> None:
    client = site.client
    _, buildid = await a_build(site.data)

    # JSON when Accept says so, HTML otherwise; ?format= wins either way
    reply = await client.call("GET", "/self-serve/branches")
    assert reply.code == 200 and reply.header("Content-Type") == "application/json"
    assert reply.json == {
        "firefox": {"repo": "https://example.org/repo.git", "graph_branches": ["firefox"], "repo_type": "project"},
        "main": {"repo": "https://example.org/repo.git", "graph_branches": ["main"], "repo_type": "branch"},
    }
    page = await client.call("GET", "/self-serve/branches", json_reply=False)
    assert page.code == 200 and page.header("Content-Type").startswith("text/html")
    assert "&quot;graph_branches&quot;" in page.text and "<pre>" in page.text
    forced = await client.call("GET", "/self-serve/branches?format=html")
    assert forced.header("Content-Type").startswith("text/html")
    assert (await client.call("GET", "/self-serve/branches?format=json", json_reply=False)).json["main"]

    # the root lists every route of the seed's table
    routes = (await client.call("GET", "/self-serve")).json["routes"]
    assert len(routes) == 21 and {"method": "PUT", "path": "/self-serve/{branch}/request/{request_id}"}.items() \
        <= {k: v for k, v in routes[13].items() if k != "doc"}.items()
    root_page = await client.call("GET", "/self-serve", json_reply=False)
    assert "<table>" in root_page.text and "/self-serve/{branch}/rev/{revision}/is_done" in root_page.text

    # a trailing slash redirects to the path without it, query kept
    for path, target in [("/self-serve/branches/?format=json", "/self-serve/branches?format=json"),
                         ("/self-serve/", "/self-serve"), (f"/self-serve/main/build/{buildid}/", None)]:
        reply = await client.call("GET", path)
        assert reply.code == 301 and reply.header("Location") == (target or path.rstrip("/")), path

    # an escaped page: markup in data never reaches the page as markup
    await a_request(site.data, builder="<b>x</b>", project="firefox")
    page = await client.call("GET", "/self-serve/firefox/builders", json_reply=False)
    assert "&lt;b&gt;x&lt;/b&gt;" in page.text and "<b>x</b>" not in page.text

    # _method in the query string or in a POST's form body selects the route; a method no
    # route of the path takes falls through to its read-only route, as in BuildAPI
    _, brid = await a_request(site.data)
    reply = await client.call("POST", f"/self-serve/main/request/{brid}", {"_method": "PUT", "priority": "4"})
    assert (await client.job(reply))["what"] == {"brid": brid, "priority": 4}
    reply = await client.call("POST", f"/self-serve/main/request/{brid}?_method=PUT", {"priority": "5"})
    assert (await client.job(reply))["complete_data"]["body"]["errors"] is False
    assert (await site.data.get(("buildrequests", str(brid))))["priority"] == 5
    info = await client.call("PATCH", f"/self-serve/main/request/{brid}")
    assert info.code == 200 and info.json["request_id"] == brid and info.json["priority"] == 5

    # no such route
    failed(await client.call("GET", "/self-serve/main/nothing/here"), 404,
           "No such self-serve path: /self-serve/main/nothing/here")


@pytest_twisted.ensureDeferred
async def test_html_job_requests_redirect_to_their_job_page(site: Site) -> None:
    client = site.client
    _, brid = await a_request(site.data)
    reply = await client.call("DELETE", f"/self-serve/main/request/{brid}", json_reply=False)
    assert reply.code == 302 and reply.text == ""
    location = reply.header("Location")
    assert location.startswith("/self-serve/jobs/")
    job = await client.job(Reply(202, None, json.dumps({"status": "OK", "request_id": int(location.split("/")[-1])})))
    assert job["action"] == "cancel_request" and job["who"] == "alice" and job["what"] == {"brid": brid}
    page = await client.call("GET", location, json_reply=False)
    assert page.code == 200 and "cancel_request" in page.text and "Cancelled request" in page.text
    # an HTML failure is a page with the status
    page = await client.call("DELETE", f"/self-serve/main/request/{brid}", json_reply=False)
    assert page.code == 400 and "Request already complete" in page.text and "<html>" in page.text


# -- auth ---------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_job_requests_need_an_allowed_user(site: Site) -> None:
    client = site.client
    _, brid = await a_request(site.data)
    path = f"/self-serve/main/request/{brid}"
    failed(await client.call("DELETE", path, user=None), 403,
           "ACCESS DENIED! Log in with the user name and password of a ci-master user (HTTP Basic auth)")
    failed(await client.call("DELETE", path, user=("alice", "wrong")), 403,
           "ACCESS DENIED! wrong user name or password")
    failed(await client.call("DELETE", path, user=BOB), 403,
           "ACCESS DENIED! user 'bob' may not call 'cancel_request' on selfservejobs")
    # auth is checked first: an unknown branch without a user is still 403
    assert (await client.call("DELETE", "/self-serve/nope/request/1", user=None)).code == 403
    # X-Remote-User counts only from a trusted proxy
    proxied = {"X-Remote-User": "dave"}
    assert (await client.call("DELETE", path, user=None, headers=proxied)).code == 403
    site.plugin.trusted_proxies = frozenset({"127.0.0.1"})
    job = await client.job(await client.call("DELETE", path, user=None, headers=proxied))
    assert job["who"] == "dave" and job["complete_data"]["body"]["errors"] is False
    # reads need no user
    assert (await client.call("GET", path, user=None)).code == 200


# -- every error path ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_each_error_gets_its_status_and_message(site: Site) -> None:
    client, data = site.client, site.data
    done_brid, done_bid = await a_build(data)
    running_brid, running_bid = await a_build(data, results=None)
    pending_brid = (await a_request(data))[1]

    # branch (404) before parameters (400)
    failed(await client.call("POST", "/self-serve/nope/build", {}), 404, "Branch nope not found")
    failed(await client.call("GET", "/self-serve/nope"), 404, "Branch nope not found")
    failed(await client.call("GET", "/self-serve/nope/rev/abc/is_done"), 404, "Branch nope not found")
    # parameters (400)
    for form, msg in [({}, "Bad build_id"), ({"build_id": "x"}, "Bad build_id"),
                      ({"build_id": "1", "priority": "high"}, "Bad priority"),
                      ({"build_id": "1", "count": "0"}, "Bad count"), ({"build_id": "1", "count": "two"}, "Bad count")]:
        failed(await client.call("POST", "/self-serve/main/build", form), 400, msg)
    failed(await client.call("POST", "/self-serve/main/request", {"request_id": ""}), 400, "Bad request_id")
    failed(await client.call("DELETE", "/self-serve/main/request/abc"), 400, "Non-integer request_id")
    failed(await client.call("DELETE", "/self-serve/main/build/abc"), 400, "Non-integer build_id")
    failed(await client.call("PUT", f"/self-serve/main/request/{pending_brid}"), 400, "Bad priority")
    failed(await client.call("PUT", f"/self-serve/main/request/{pending_brid}", {"priority": "1.5"}), 400,
           "Bad priority")
    failed(await client.call("POST", f"/self-serve/main/rev/{REV}/pgo", {"priority": "x"}), 400, "Bad priority")
    failed(await client.call("GET", "/self-serve/main?date=yesterday"), 400, "Bad date")
    failed(await client.call("GET", "/self-serve/jobs?num=-1"), 400, "Bad num")
    # objects (404), also when they exist on another branch
    other_brid, other_bid = await a_build(data, builder="tb", project="thunderbird", branch="tb-main")
    failed(await client.call("POST", "/self-serve/main/build", {"build_id": "999"}), 404,
           "Build 999 not found on branch main")
    failed(await client.call("POST", "/self-serve/main/build", {"build_id": str(other_bid)}), 404,
           f"Build {other_bid} not found on branch main")
    failed(await client.call("GET", f"/self-serve/main/build/{other_bid}"), 404,
           f"Build {other_bid} not found on branch main")
    failed(await client.call("DELETE", "/self-serve/main/request/999"), 404, "Request 999 not found on branch main")
    failed(await client.call("PUT", f"/self-serve/firefox/request/{other_brid}", {"priority": "1"}), 404,
           f"Request {other_brid} not found on branch firefox")
    failed(await client.call("DELETE", "/self-serve/main/rev/ffffffffffff"), 404,
           "Revision ffffffffffff not found on branch main")
    failed(await client.call("GET", "/self-serve/main/rev/ffffffffffff/is_done"), 404,
           "Revision ffffffffffff not found on branch main")
    failed(await client.call("POST", f"/self-serve/firefox/builders/tb/{REV}"), 404,
           "Builder tb not found on branch firefox")
    failed(await client.call("GET", "/self-serve/jobs/999"), 404, "Job 999 not found")
    failed(await client.call("GET", "/self-serve/jobs/abc"), 404, "Job abc not found")
    # state (400)
    failed(await client.call("DELETE", f"/self-serve/main/request/{done_brid}"), 400, "Request already complete")
    failed(await client.call("PUT", f"/self-serve/main/request/{done_brid}", {"priority": "3"}), 400,
           "Request already complete")
    failed(await client.call("PUT", f"/self-serve/main/request/{running_brid}", {"priority": "3"}), 400,
           "Request is already running")
    failed(await client.call("DELETE", f"/self-serve/main/build/{done_bid}"), 400, "Build already complete")
    # nothing above was queued
    assert (await data.get("selfservejobs")).total == 0
    # 503 when the job cannot be queued: no agent running, or the job table unwritable
    await site.agent.stopService()
    failed(await client.call("DELETE", f"/self-serve/main/build/{running_bid}"), 503,
           "Couldn't send the job to the self-serve agent: it is not running; try again later")
    site.agent.startService()
    await data.storage.execute(sa.text("DROP TABLE selfserve_jobs"))
    failed(await client.call("DELETE", f"/self-serve/main/build/{running_bid}"), 503,
           "Couldn't create the job record; try again later")


# -- reads, jobs and the agent without an engine ----------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reads_and_jobs_are_in_the_data_api(site: Site) -> None:
    client, data = site.client, site.data
    brid, bid = await a_build(data)
    pending = (await a_request(data, revision=REV[:12] + "ffff", owner="alice"))[1]

    build = (await client.call("GET", f"/self-serve/main/build/{bid}")).json
    assert set(build) == {"build_id", "buildnumber", "buildername", "branch", "revision", "starttime", "endtime",
                          "status", "claimed_by_name", "requests"}
    assert build["build_id"] == bid and build["buildername"] == "linux" and build["branch"] == "main"
    assert build["revision"] == REV and build["status"] == SUCCESS and build["claimed_by_name"] == "w1"
    assert isinstance(build["starttime"], int) and build["endtime"] >= build["starttime"]
    [req] = build["requests"]
    assert req["request_id"] == brid and req["complete"] == 1 and req["properties"] == {"owner": "carol"}
    request = (await client.call("GET", f"/self-serve/firefox/request/{brid}")).json
    assert request["build_ids"] == [bid] and request["branch"] == "firefox" and request["priority"] == 0
    assert set(request) == {"request_id", "buildername", "branch", "revision", "submittime", "complete",
                            "complete_at", "priority", "claimed_at", "reason", "properties", "build_ids"}

    # revisions match on their first 12 characters: the build and the pending request
    items = (await client.call("GET", f"/self-serve/main/rev/{REV[:12]}")).json
    assert [i.get("build_id") or i["request_id"] for i in items] == [bid, pending]
    today = (await client.call("GET", "/self-serve/main")).json
    assert [b["build_id"] for b in today] == [bid]
    assert (await client.call("GET", "/self-serve/main?date=2001-01-01")).json == []
    mine = (await client.call("GET", "/self-serve/main/user/alice")).json
    assert mine["builds"] == [] and mine["running"] == [] and [r["request_id"] for r in mine["pending"]] == [pending]
    assert (await client.call("GET", "/self-serve/firefox/builders")).json == ["linux"]

    # is_done: a pending request is not done; once it is cancelled, a cancelled build has not passed
    done = (await client.call("GET", f"/self-serve/main/rev/{REV}/is_done?stableDelay=0")).json
    assert done == {"stableDelay": 0, "job_complete": False, "job_passed": False}
    job = await client.job(await client.call("DELETE", f"/self-serve/main/rev/{REV}"))
    assert job["what"] == {"branch": "main", "revision": REV[:12]}
    assert job["complete_data"]["body"]["request_ids"] == [pending]
    assert (await data.get(("buildrequests", str(pending))))["results"] == CANCELLED
    done = (await client.call("GET", f"/self-serve/main/rev/{REV}/is_done?stableDelay=0")).json
    assert done == {"stableDelay": 0, "job_complete": True, "job_passed": True}  # the cancelled one had no build
    assert (await client.call("GET", f"/self-serve/main/rev/{REV}/is_done?stableDelay=bad")).json["stableDelay"] == 180

    # jobs: newest first; the records are resource type selfservejobs of /api/v2 too
    listed = (await client.call("GET", "/self-serve/jobs")).json
    assert [j["action"] for j in listed] == ["cancel_revision"] and listed[0]["who"] == "alice"
    response = await treq.get(client.url + f"/api/v2/selfservejobs/{listed[0]['request_id']}", pool=client.pool)
    [record] = json.loads(await response.content())["selfservejobs"]
    assert record["action"] == "cancel_revision" and record["complete"] is True
    response = await treq.get(client.url + f"/api/v2/selfservebuilds?branch=main&short_revision={REV[:12]}",
                              pool=client.pool)
    assert [b["build_id"] for b in json.loads(await response.content())["selfservebuilds"]] == [bid]

    # a job the engine cannot do completes with errors: no engine runs here to stop a build
    _, running = await a_build(data, results=None)
    job = await client.job(await client.call("DELETE", f"/self-serve/main/build/{running}"))
    assert job["complete_data"]["body"] == {"errors": True, "msg": "no build engine runs on this master"}


@pytest_twisted.ensureDeferred
async def test_reads_follow_the_masters_read_rules(site: Site, tmp_path: Path) -> None:
    client = site.client
    _, bid = await a_build(site.data)
    assert (await client.call("GET", f"/self-serve/main/build/{bid}", user=None)).code == 200
    site.data.auth = Authenticator(Auth(rules=AUTH_RULES, read_rules=[ReadRule(roles=["release"])]), tmp_path)
    failed(await client.call("GET", f"/self-serve/main/build/{bid}", user=None), 403,
           "ACCESS DENIED! authentication required to read selfservebuilds")
    failed(await client.call("GET", "/self-serve/jobs", user=BOB), 403,
           "ACCESS DENIED! user 'bob' may not read selfservejobs")
    assert (await client.call("GET", f"/self-serve/main/build/{bid}", user=ALICE)).json["build_id"] == bid
