"""Self-serve on a running master with a real worker: job requests become builds a ci-worker runs.

A whole MasterService (engine, worker link, REST, the plugin and its agent) runs in the
test's reactor on the test's database (both backends), with a LocalWorker: a real
``ci-worker`` process the master starts.  Everything is asked over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from test_selfserve import AUTH_RULES, REV, Client, make_users
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool
from waiting import wait_for

from master.config import BuilderConfig, MasterConfig, WWWConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.results import CANCELLED, SUCCESS
from master.service import MasterService
from master.www.auth import Auth
from plugins.selfserve import SelfServePlugin

pytestmark = pytest.mark.slow  # a local worker process

WAIT = 60.0
REV2 = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Running:
    """The master, its URL, a self-serve client and where the slow step writes its pid."""

    master: MasterService
    client: Client
    pidfile: Path

    async def api(self, path: str) -> Any:
        """GET /api/v2/<path>, decoded."""
        response = await treq.get(self.client.url + "/api/v2/" + path, pool=self.client.pool)
        assert response.code == 200, path
        return json.loads(await response.content())


@pytest_twisted.async_yield_fixture()
async def running(migrated_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    """A master with the plugin, auth, two projects' builders and one real local worker (one build at a time)."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    make_users(basedir)
    pidfile = tmp_path / "slow.pid"
    config = MasterConfig(
        db_url=migrated_url,
        www=WWWConfig(interface="127.0.0.1", port=0),
        plugins=[SelfServePlugin(poll_interval=0.5)],
        workers=[LocalWorker("w1", max_builds=1)],
        builders=[
            BuilderConfig(name="linux", project="firefox", workernames=["w1"], steps=[
                ShellCommand(name="compile", command="sleep 1; echo compiled"),
            ]),
            BuilderConfig(name="mac", project="firefox", workernames=["w1"], steps=[
                ShellCommand(name="compile", command=["echo", "compiled"]),
            ]),
            BuilderConfig(name="slow", project="thunderbird", workernames=["w1"], steps=[
                ShellCommand(name="sleep", command=f"echo $$ > {pidfile}; exec sleep 300"),
            ]),
        ],
        schedulers=[ForceScheduler(name="force", builderNames=["linux", "mac", "slow"])],
        auth=Auth(rules=AUTH_RULES),
    )
    master = MasterService(basedir, config)
    master.startService()
    url = await master.started
    pool = HTTPConnectionPool(reactor, persistent=False)
    run = Running(master, Client(url.rstrip("/"), pool), pidfile)
    try:
        await wait_for(lambda: _worker_connected(run), "the local worker to connect", timeout=WAIT)
        yield run
    finally:
        await master.stopService()


async def _worker_connected(run: Running) -> bool:
    workers = (await run.api("workers"))["workers"]
    return bool(workers and workers[0]["connected_to"])


async def request_done(run: Running, brid: int) -> dict[str, Any]:
    """Wait for build request *brid* to complete; return it."""
    async def check() -> Any:
        [request] = (await run.api(f"buildrequests/{brid}"))["buildrequests"]
        return request if request["complete"] else None

    return await wait_for(check, f"request {brid} to complete", timeout=WAIT)


async def running_build(run: Running, brid: int) -> dict[str, Any]:
    """Wait for build request *brid* to have a build; return it."""
    async def check() -> Any:
        return (await run.api(f"buildrequests/{brid}/builds"))["builds"]

    return (await wait_for(check, f"a build of request {brid}", timeout=WAIT))[0]


@pytest_twisted.ensureDeferred
async def test_builds_at_a_revision_rebuilds_and_is_done(running: Running) -> None:
    client = running.client
    await running.master.data.updates.add_change(
        author="dev", files=["a.c"], comments="fix", revision=REV, branch="main", project="firefox",
        repository="https://example.org/firefox.git",
    )
    seen: list[tuple[str, ...]] = []  # what the websocket would push: the events of the data API
    for pattern in (("selfservejobs", "*", "*"), ("buildrequests", "*", "new")):
        running.master.data.events.subscribe(pattern, lambda key, entity: seen.append(key))
    # the master's own users: bob lacks the role, a wrong password is refused
    for user in (("bob", "bob-pw"), ("alice", "nope"), None):
        assert (await client.call("POST", f"/self-serve/firefox/rev/{REV}", user=user)).code == 403
    branches = (await client.call("GET", "/self-serve/branches")).json
    assert set(branches) == {"firefox", "thunderbird", "main"}
    assert (await client.call("GET", "/self-serve/firefox/builders")).json == ["linux", "mac"]
    # nothing built at the revision yet
    assert (await client.call("GET", f"/self-serve/firefox/rev/{REV}/is_done")).code == 404

    # new builds at the revision: one request per builder of the project, on the known source stamp
    job = await client.job(await client.call("POST", f"/self-serve/firefox/rev/{REV[:12]}"))
    assert job["action"] == "new_build_at_revision" and job["who"] == "alice"
    body = job["complete_data"]["body"]
    assert body["errors"] is False and len(body["request_ids"]) == 2
    is_done = f"/self-serve/firefox/rev/{REV}/is_done?stableDelay=0"
    assert (await client.call("GET", is_done)).json == {"stableDelay": 0, "job_complete": False, "job_passed": False}
    for brid in body["request_ids"]:
        assert (await request_done(running, brid))["results"] == SUCCESS
    assert (await client.call("GET", is_done)).json == {"stableDelay": 0, "job_complete": True, "job_passed": True}
    # just ended: not yet stable for the default 180 seconds
    assert (await client.call("GET", f"/self-serve/firefox/rev/{REV}/is_done")).json["job_complete"] is False

    builds = (await client.call("GET", f"/self-serve/firefox/rev/{REV}")).json
    assert sorted(b["buildername"] for b in builds) == ["linux", "mac"]
    assert {(b["revision"], b["status"], b["claimed_by_name"]) for b in builds} == {(REV, SUCCESS, "w1")}
    linux = next(b for b in builds if b["buildername"] == "linux")
    detail = (await client.call("GET", f"/self-serve/main/build/{linux['build_id']}")).json
    assert detail["requests"][0]["properties"]["owner"] == "alice"
    # the build is the engine's: REST shows it, with the step the worker ran
    [steps] = [(await running.api(f"builds/{linux['build_id']}/steps"))["steps"]]
    assert [(s["name"], s["results"]) for s in steps] == [("compile", SUCCESS)]

    # rebuild it twice at priority 5: new requests of the rebuilt build's builder, built by the worker
    job = await client.job(await client.call("POST", "/self-serve/firefox/build",
                                             {"build_id": str(linux["build_id"]), "priority": "5", "count": "2"}))
    rebuilt = job["complete_data"]["body"]["request_ids"]
    assert job["what"] == {"bid": linux["build_id"], "priority": 5, "count": 2} and len(rebuilt) == 2
    for brid in rebuilt:
        request = await request_done(running, brid)
        assert request["priority"] == 5 and request["results"] == SUCCESS
        [buildset] = (await running.api(f"buildsets/{request['buildsetid']}"))["buildsets"]
        assert buildset["rebuilt_buildid"] == linux["build_id"]
        assert buildset["sourcestamps"][0]["revision"] == REV
        [build] = (await running.api(f"buildrequests/{brid}/builds"))["builds"]
        assert build["builderid"] == linux_builderid(await running.api("builders"), "linux")

    # a rebuild of a request, and a build for one builder with properties
    job = await client.job(await client.call("POST", "/self-serve/firefox/request",
                                             {"request_id": str(rebuilt[0])}))
    [again] = job["complete_data"]["body"]["request_ids"]
    assert (await request_done(running, again))["results"] == SUCCESS
    job = await client.job(await client.call("POST", f"/self-serve/firefox/builders/mac/{REV}",
                                             {"properties": json.dumps({"flavour": "debug"}), "files": "[\"x\"]"}))
    [single] = job["complete_data"]["body"]["request_ids"]
    assert (await request_done(running, single))["results"] == SUCCESS
    info = (await client.call("GET", f"/self-serve/firefox/request/{single}")).json
    assert info["buildername"] == "mac" and info["properties"]["flavour"] == "debug"
    assert info["properties"]["files"] == ["x"] and len(info["build_ids"]) == 1

    # nightly and PGO builds are requests of the branch's builders, marked by a property
    for kind in ("nightly", "pgo"):
        job = await client.job(await client.call("POST", f"/self-serve/firefox/rev/{REV}/{kind}", {"priority": "2"}))
        for brid in job["complete_data"]["body"]["request_ids"]:
            assert (await request_done(running, brid))["results"] == SUCCESS
            info = (await client.call("GET", f"/self-serve/firefox/request/{brid}")).json
            assert info["properties"]["selfserve_kind"] == kind and info["priority"] == 2

    # alice's builds; every job record completed without error, all visible in /api/v2
    mine = (await client.call("GET", "/self-serve/firefox/user/alice")).json
    assert len(mine["builds"]) == 2 + 2 + 1 + 1 + 4 and mine["running"] == [] and mine["pending"] == []
    jobs = (await client.call("GET", "/self-serve/jobs")).json
    assert len(jobs) == 6 and all(j["complete_data"]["body"]["errors"] is False for j in jobs)
    records = (await running.api("selfservejobs?complete=true"))["selfservejobs"]
    assert len(records) == 6
    first_job = str(records[0]["jobid"])
    assert [key[2] for key in seen if key[:2] == ("selfservejobs", first_job)] == ["new", "update", "update"]
    assert len([key for key in seen if key[0] == "buildrequests"]) == 2 + 2 + 1 + 1 + 4


def linux_builderid(builders: dict[str, Any], name: str) -> int:
    """The id of builder *name* in a /builders answer."""
    return next(b["builderid"] for b in builders["builders"] if b["name"] == name)


@pytest_twisted.ensureDeferred
async def test_reprioritize_and_cancel_requests_and_a_running_build(running: Running) -> None:
    client = running.client
    # the worker takes one build at a time: the first slow build runs, the next ones wait
    job = await client.job(await client.call("POST", f"/self-serve/thunderbird/builders/slow/{REV2}"))
    [first] = job["complete_data"]["body"]["request_ids"]
    build = await running_build(running, first)
    pid = int(await wait_for(lambda: _read_pid(running.pidfile), "the slow step to start", timeout=WAIT))
    os.kill(pid, 0)  # the step's process runs
    queued = []
    for _ in range(2):
        job = await client.job(await client.call("POST", f"/self-serve/thunderbird/builders/slow/{REV2}"))
        queued += job["complete_data"]["body"]["request_ids"]

    # reprioritize a pending request (PUT, and POST with _method=PUT as forms do)
    job = await client.job(await client.call("PUT", f"/self-serve/thunderbird/request/{queued[0]}",
                                             {"priority": "7"}))
    assert job["complete_data"]["body"] == {"errors": False, "msg": f"Request {queued[0]} now has priority 7"}
    [request] = (await running.api(f"buildrequests/{queued[0]}"))["buildrequests"]
    assert request["priority"] == 7 and request["claimed"] is False
    reply = await client.call("PUT", f"/self-serve/thunderbird/request/{first}", {"priority": "9"})
    assert reply.code == 400 and reply.json["msg"] == "Request is already running"

    # cancel the other pending one
    job = await client.job(await client.call("POST", f"/self-serve/thunderbird/request/{queued[1]}",
                                             {"_method": "DELETE"}))
    assert job["complete_data"]["body"]["errors"] is False
    [request] = (await running.api(f"buildrequests/{queued[1]}"))["buildrequests"]
    assert request["complete"] is True and request["results"] == CANCELLED
    reply = await client.call("DELETE", f"/self-serve/thunderbird/request/{queued[1]}")
    assert reply.code == 400 and reply.json == {"status": "FAILED", "msg": "Request already complete"}

    # cancel the running build: it ends cancelled and its process is gone
    job = await client.job(await client.call("DELETE", f"/self-serve/thunderbird/build/{build['buildid']}"))
    assert job["complete_data"]["body"] == {"errors": False, "msg": f"Cancelled build {build['buildid']}"}
    assert (await request_done(running, first))["results"] == CANCELLED
    [ended] = (await running.api(f"builds/{build['buildid']}"))["builds"]
    assert ended["results"] == CANCELLED
    await wait_for(lambda: _gone(pid), f"process {pid} to end", timeout=WAIT)

    # the reprioritized request runs next; cancelling its revision stops it
    running_next = await running_build(running, queued[0])
    await wait_for(lambda: _read_pid(running.pidfile, not_pid=pid), "the next slow step to start", timeout=WAIT)
    job = await client.job(await client.call("DELETE", f"/self-serve/thunderbird/rev/{REV2}"))
    assert job["what"] == {"branch": "thunderbird", "revision": REV2[:12]}
    assert job["complete_data"]["body"]["build_ids"] == [running_next["buildid"]]
    assert (await request_done(running, queued[0]))["results"] == CANCELLED
    done = (await client.call("GET", f"/self-serve/thunderbird/rev/{REV2}/is_done?stableDelay=0")).json
    assert done == {"stableDelay": 0, "job_complete": True, "job_passed": False}
    # the same in HTML: a job request redirects to its job page, which renders
    reply = await client.call("POST", f"/self-serve/thunderbird/builders/slow/{REV2}", json_reply=False)
    assert reply.code == 302
    page = await client.call("GET", reply.header("Location"), json_reply=False)
    assert page.code == 200 and "new_build_for_builder" in page.text and page.text.startswith("<!DOCTYPE html>")


async def _read_pid(path: Path, not_pid: int | None = None) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return None if pid == not_pid else pid


async def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


