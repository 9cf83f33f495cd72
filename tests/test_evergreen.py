"""Evergreen REST v1 against a running master and a real worker, on both backends.

The master runs in-process from a master.cfg (its web port, worker link, engine and the
plugin as in production); its LocalWorker is a real ``ci-worker`` process that runs each
task's shell command and the ``cat`` of its JUnit file.  The project ``sample`` has two
variants with three tasks each; two commits are reported through ``/api/v2/changes``, the
first deactivated before it could run, then activated again.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool
from waiting import wait_for

from master.config import load_config
from master.service import MasterService
from master.www.auth import UserStore

pytestmark = pytest.mark.slow  # a real master with a local worker

WAIT = 90.0  # the bound of every wait for builds

REV1, REV2 = "1" * 40, "2" * 40
VARIANTS = {"ubuntu": "Ubuntu 22.04", "debian": "Debian 12"}
TASKS = ("compile", "unit", "lint")
FAILING = ("debian", "lint")  # the one task whose tests fail

# the keys of the seed's example documents (004_fe4ed8771910f375.txt)
VERSION_KEYS = {
    "id", "create_time", "start_time", "finish_time", "project", "revision", "author", "author_email", "message",
    "status", "activated", "builds", "build_variants", "order", "owner_name", "repo_name", "branch_name",
    "repo_kind", "batch_time", "identifier", "remote", "remote_path", "requester",
}
BUILD_KEYS = {
    "id", "create_time", "start_time", "finish_time", "push_time", "version", "project", "revision", "variant",
    "number", "status", "activated", "activated_time", "order", "tasks", "time_taken", "name", "requested",
}
TASK_KEYS = {
    "id", "create_time", "scheduled_time", "dispatch_time", "start_time", "finish_time", "push_time", "version",
    "project", "revision", "priority", "last_heartbeat", "activated", "build_id", "distro", "build_variant",
    "depends_on", "display_name", "host_id", "restarts", "execution", "archived", "order", "requester", "status",
    "status_details", "aborted", "time_taken", "expected_duration", "test_results", "min_queue_pos", "files",
}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
ZERO = "0001-01-01T00:00:00Z"

JUNIT = (
    '<testsuite name="{task}"><testcase classname="{task}" name="test_one" time="0.25"/>'
    '<testcase classname="{task}" name="test_two" time="1.5">{failure}</testcase></testsuite>'
)


def task_script(variant: str, task: str) -> str:
    failing = (variant, task) == FAILING
    junit = JUNIT.format(task=task, failure='<failure message="boom"/>' if failing else "")
    # sleep so that every task takes at least a second, ci-master's time resolution
    return f"printf '%s' '{junit}' > junit.xml && sleep 1.1 && exit {1 if failing else 0}"


def builders_cfg() -> str:
    lines = []
    for variant, display in VARIANTS.items():
        for task in TASKS:
            lines.append(
                f"BuilderConfig(name='{variant}-{task}', project='sample', workernames=['w1'], "
                f"tags=['variant:{variant}', 'variant_name:{display}', 'task:{task}'], steps=["
                f"TaskCommand(name='run', command={task_script(variant, task)!r}), TestResults(path='junit.xml')]),"
            )
    lines.append(
        "BuilderConfig(name='hang', project='slow', workernames=['w1'], tags=['variant:ubuntu', 'task:hang'],"
        " steps=[TaskCommand(name='run', command='sleep 30', timeout=1)]),"
    )
    return "\n".join(lines)


CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler, SingleBranchScheduler
from master.www.auth import Auth, ControlRule
from plugins.evergreen import TaskCommand, TestResults

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": 0}},
    plugins=["plugins.evergreen:EvergreenPlugin"],
    workers=[LocalWorker("w1", max_builds=3)],
    builders=[
{builders}
    ],
    schedulers=[
        SingleBranchScheduler(name="commits", branch="main", builderNames={names!r}),
        ForceScheduler(name="force-hang", builderNames=["hang"]),
    ],
    auth=Auth(rules=[ControlRule(roles=["admin"])]),
)
"""


class Client:
    """Real HTTP through treq against the running master."""

    def __init__(self, url: str, pool: HTTPConnectionPool) -> None:
        self.url = url
        self.pool = pool

    async def request(self, method: str, path: str, body: Any = None,
                      headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        response = await treq.request(method, self.url + path, data=data, headers=headers or {}, pool=self.pool)
        raw = await response.content()
        return response.code, json.loads(raw) if raw else None, response

    async def get(self, path: str) -> Any:
        code, body, response = await self.request("GET", path)
        assert code == 200, (path, code, body)
        assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
        return body

    async def rpc(self, path: str, method: str, token: str, **params: Any) -> Any:
        code, body, _ = await self.request(
            "POST", "/api/v2/" + path, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        assert code == 200 and "error" not in body, (path, method, code, body)
        return body["result"]


@pytest_twisted.async_yield_fixture()
async def site(migrated_url: str, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A running master with the Evergreen plugin, a real worker, and users admin and guest."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    names = [f"{variant}-{task}" for variant in VARIANTS for task in TASKS]
    (basedir / "master.cfg").write_text(
        textwrap.dedent(CONFIG).format(db_url=migrated_url, builders=textwrap.indent(builders_cfg(), " " * 8),
                                       names=names)
    )
    users = UserStore(basedir / "users.json")
    users.add_user("admin", None, ["admin"])
    users.add_user("guest", None, [])
    tokens = {"admin": users.new_token("admin")[1], "guest": users.new_token("guest")[1]}
    service = MasterService(basedir, load_config(basedir))
    service.startService()
    url = await service.started
    assert service.data.auth is service.auth  # the plugin finds the master's users there
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        yield {"client": Client(url.rstrip("/"), pool), "tokens": tokens, "service": service}
    finally:
        await service.stopService()


def keys_of(documents: list[dict[str, Any]]) -> set[str]:
    found = {key for document in documents for key in document}
    return found


def assert_time(value: str, reached: bool) -> None:
    assert RFC3339.match(value), value
    assert (value != ZERO) == reached, value


def epoch(value: str) -> float:
    return time.mktime(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone


async def add_commit(client: Client, token: str, revision: str, message: str) -> None:
    await client.rpc("changes", "add", token, author="Alice Example <alice@example.org>", comments=message,
                     revision=revision, branch="main", repository="https://github.com/example/sample.git",
                     project="sample", files=["src/main.c"])


async def versions(client: Client) -> list[dict[str, Any]]:
    return (await client.get("/rest/v1/projects/sample/versions"))["versions"]


async def statuses(client: Client, version_id: str) -> list[str]:
    grouped = (await client.get(f"/rest/v1/versions/{version_id}/status"))["tasks"]
    return [summary["status"] for by_variant in grouped.values() for summary in by_variant.values()]


async def finished(client: Client, version_id: str) -> bool:
    return all(status in ("success", "failed") for status in await statuses(client, version_id))


@pytest_twisted.ensureDeferred
async def test_evergreen_rest_v1_over_real_builds(site: dict[str, Any]) -> None:
    client: Client = site["client"]
    admin, guest = site["tokens"]["admin"], site["tokens"]["guest"]

    # the worker connects; pause it so that the first version cannot start before it is deactivated
    workers = await wait_for(lambda: _connected(client), "worker w1 connects", timeout=WAIT)
    workerid = workers[0]["workerid"]
    await client.rpc(f"workers/{workerid}", "pause", admin, reason="hold until version 1 is deactivated")

    await add_commit(client, admin, REV1, "first commit")
    listed = await wait_for(lambda: versions(client), "version 1 is listed", timeout=WAIT)
    v1 = listed[0]["version_id"]
    assert v1.startswith(f"sample_{REV1}_")
    assert set(await statuses(client, v1)) == {"undispatched"}

    # PATCH needs Api-User and Api-Key: a ci-master user and one of their tokens, allowed the action
    patch = f"/rest/v1/versions/{v1}"
    code, body, _ = await client.request("PATCH", patch, {"activated": False})
    assert code == 401 and "Api-User" in body["message"]
    code, body, _ = await client.request("PATCH", patch, {"activated": False}, {"Api-User": "admin",
                                                                                "Api-Key": guest})
    assert code == 401 and "wrong Api-Key" in body["message"]
    code, body, _ = await client.request("PATCH", patch, {"activated": False}, {"Api-User": "guest",
                                                                                "Api-Key": guest})
    assert code == 401 and body == {"message": "not authorized to modify this version"}
    as_admin = {"Api-User": "admin", "Api-Key": admin}
    code, body, _ = await client.request("PATCH", patch, b"{not json", as_admin)
    assert code == 400 and "problem parsing input" in body["message"]
    code, body, _ = await client.request("PATCH", patch, {"activated": "no"}, as_admin)
    assert code == 400 and "'activated'" in body["message"]
    code, body, _ = await client.request("PATCH", "/rest/v1/versions/sample_nope_999", {"activated": False}, as_admin)
    assert code == 404 and body == {"message": "error finding version"}

    code, body, response = await client.request("PATCH", patch, {"activated": False}, as_admin)
    assert code == 200 and body["activated"] is False and body["id"] == v1 and set(body) == VERSION_KEYS
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    code, body, _ = await client.request("PATCH", patch, {}, as_admin)  # no field: nothing changes
    assert code == 200 and body["activated"] is False

    # the second commit runs while the first, older (and so first in the queue), stays held
    await add_commit(client, admin, REV2, "second commit")
    listed = await wait_for(lambda: _two_versions(client), "version 2 is listed", timeout=WAIT)
    v2 = listed[0]["version_id"]
    assert [v["version_id"] for v in listed] == [v2, v1]  # newest first
    await client.rpc(f"workers/{workerid}", "unpause", admin)
    await wait_for(lambda: finished(client, v2), "version 2 finishes", timeout=WAIT)
    assert set(await statuses(client, v1)) == {"undispatched"}
    held = await client.get(f"/rest/v1/versions/{v1}")
    assert held["activated"] is False and held["status"] == "created" and held["start_time"] == ZERO

    code, body, _ = await client.request("PATCH", patch, {"activated": True}, as_admin)
    assert code == 200 and body["activated"] is True
    await wait_for(lambda: finished(client, v1), "version 1 finishes once activated", timeout=WAIT)

    # a forced task of another project times out
    hang = (await client.get("/api/v2/forceschedulers/force-hang"))["forceschedulers"][0]
    await client.rpc(f"forceschedulers/{hang['name']}", "force", admin)
    slow = await wait_for(lambda: _project_versions(client, "slow"), "the forced version is listed", timeout=WAIT)
    slow_id = slow[0]["version_id"]
    await wait_for(lambda: finished(client, slow_id), "the hanging task times out", timeout=WAIT)

    await check_versions_list(client, v1, v2)
    await check_version(client, v1, REV1, "first commit")
    await check_version(client, v2, REV2, "second commit")
    await check_builds_and_tasks(client, v1)
    await check_history(client, v1, v2)
    await check_timeout(client, slow_id)
    await check_errors(client, v1)


async def _connected(client: Client) -> list[dict[str, Any]]:
    body = await client.get("/api/v2/workers?name=w1")
    return [worker for worker in body["workers"] if worker["connected_to"]]


async def _two_versions(client: Client) -> list[dict[str, Any]] | None:
    found = await versions(client)
    return found if len(found) == 2 else None


async def _project_versions(client: Client, project: str) -> list[dict[str, Any]]:
    return (await client.get(f"/rest/v1/projects/{project}/versions"))["versions"]


async def check_versions_list(client: Client, v1: str, v2: str) -> None:
    body = await client.get("/rest/v1/projects/sample/versions")
    assert body["project"] == "sample" and [v["version_id"] for v in body["versions"]] == [v2, v1]
    for entry, revision in zip(body["versions"], (REV2, REV1), strict=True):
        assert set(entry) == {"version_id", "author", "revision", "message", "builds"}
        assert entry["author"] == "Alice Example" and entry["revision"] == revision
        assert set(entry["builds"]) == set(VARIANTS)
        for variant, build in entry["builds"].items():
            assert set(build) == {"build_id", "name", "tasks"} and build["name"] == VARIANTS[variant]
            assert set(build["tasks"]) == set(TASKS)
            for task, summary in build["tasks"].items():
                assert set(summary) == {"task_id", "status", "time_taken"}
                assert summary["status"] == ("failed" if (variant, task) == FAILING else "success")
                assert isinstance(summary["time_taken"], int) and summary["time_taken"] >= 1_000_000_000
                assert summary["time_taken"] % 1_000_000_000 == 0  # whole seconds, in nanoseconds

    # paging with limit=1 walks every version through the Link header, none skipped
    code, body, response = await client.request("GET", "/rest/v1/projects/sample/versions?limit=1")
    walked, pages = [], 0
    while True:
        assert code == 200 and len(body["versions"]) <= 1
        walked += [v["version_id"] for v in body["versions"]]
        pages += 1
        links = response.headers.getRawHeaders("link")
        if not links:
            break
        found = re.fullmatch(r'<(http://[^>]+)>; rel="next"', links[0])
        assert found, links
        assert pages < 5
        next_url = found.group(1)
        assert next_url.startswith(client.url + "/rest/v1/projects/sample/versions?")
        code, body, response = await client.request("GET", next_url[len(client.url):])
    assert walked == [v2, v1] and pages == 2
    order1 = (await client.get(f"/rest/v1/versions/{v1}"))["order"]
    order2 = (await client.get(f"/rest/v1/versions/{v2}"))["order"]
    assert order2 > order1
    page = await client.get(f"/rest/v1/projects/sample/versions?limit=5&start={order2}")
    assert [v["version_id"] for v in page["versions"]] == [v1]
    assert await client.get("/rest/v1/projects/nosuch/versions") == {"project": "nosuch", "versions": []}


async def check_version(client: Client, version_id: str, revision: str, message: str) -> None:
    doc = await client.get(f"/rest/v1/versions/{version_id}")
    assert set(doc) == VERSION_KEYS
    assert doc["id"] == version_id and doc["project"] == doc["identifier"] == "sample"
    assert (doc["revision"], doc["message"]) == (revision, message)
    assert (doc["author"], doc["author_email"]) == ("Alice Example", "alice@example.org")
    assert (doc["owner_name"], doc["repo_name"], doc["repo_kind"], doc["branch_name"]) == (
        "example", "sample", "github", "main")
    assert doc["status"] == "failed" and doc["activated"] is True and doc["requester"] == "gitter_request"
    assert doc["build_variants"] == [VARIANTS[v] for v in sorted(VARIANTS)]
    assert len(doc["builds"]) == 2
    for key in ("create_time", "start_time", "finish_time"):
        assert_time(doc[key], True)
    assert epoch(doc["create_time"]) <= epoch(doc["start_time"]) <= epoch(doc["finish_time"])
    assert await client.get(f"/rest/v1/projects/sample/revisions/{revision}") == doc

    by_task = await client.get(f"/rest/v1/versions/{version_id}/status")
    assert set(by_task) == {"version_id", "tasks"} and by_task["version_id"] == version_id
    assert set(by_task["tasks"]) == set(TASKS)
    assert all(set(variants) == set(VARIANTS) for variants in by_task["tasks"].values())
    by_build = await client.get(f"/rest/v1/versions/{version_id}/status?groupby=builds")
    assert set(by_build) == {"version_id", "builds"} and set(by_build["builds"]) == set(VARIANTS)
    for variant, tasks in by_build["builds"].items():
        assert set(tasks) == set(TASKS)
        for task, summary in tasks.items():
            assert by_task["tasks"][task][variant] == summary


async def check_builds_and_tasks(client: Client, version_id: str) -> None:
    version = await client.get(f"/rest/v1/versions/{version_id}")
    for build_id in version["builds"]:
        build = await client.get(f"/rest/v1/builds/{build_id}")
        assert set(build) == BUILD_KEYS | {"requester"}  # Evergreen's code says requester, its docs requested
        variant = build["variant"]
        assert build["id"] == build_id and build["version"] == version_id and build["name"] == VARIANTS[variant]
        assert build["status"] == ("failed" if variant == FAILING[0] else "success")
        assert build["activated"] is True and build["requested"] == build["requester"] == "gitter_request"
        assert build["time_taken"] == (epoch(build["finish_time"]) - epoch(build["start_time"])) * 1_000_000_000
        assert set(build["tasks"]) == set(TASKS)
        status = await client.get(f"/rest/v1/builds/{build_id}/status")
        assert status == {"build_id": build_id, "build_variant": variant, "tasks": build["tasks"]}
        for name, summary in build["tasks"].items():
            task = await client.get(f"/rest/v1/tasks/{summary['task_id']}")
            await check_task(client, task, summary, variant, name, build_id, version_id)


async def check_task(client: Client, task: dict[str, Any], summary: dict[str, Any], variant: str, name: str,
                     build_id: str, version_id: str) -> None:
    failing = (variant, name) == FAILING
    assert set(task) == TASK_KEYS
    assert (task["id"], task["status"], task["time_taken"]) == (summary["task_id"], summary["status"],
                                                                 summary["time_taken"])
    assert task["status"] == ("failed" if failing else "success")
    assert (task["build_id"], task["version"], task["build_variant"], task["display_name"]) == (
        build_id, version_id, variant, name)
    assert task["host_id"] == task["distro"] == "w1" and task["activated"] is True and task["aborted"] is False
    assert task["status_details"] == {"timed_out": False, "timeout_stage": ""}
    for key in ("create_time", "scheduled_time", "dispatch_time", "start_time", "finish_time", "last_heartbeat"):
        assert_time(task[key], True)
    assert epoch(task["dispatch_time"]) <= epoch(task["start_time"]) <= epoch(task["finish_time"])
    assert task["time_taken"] == (epoch(task["finish_time"]) - epoch(task["start_time"])) * 1_000_000_000
    assert task["time_taken"] >= 1_000_000_000
    # version 1 ran after version 2: its builders had successful builds to expect a duration from
    if not failing:
        assert isinstance(task["expected_duration"], int) and task["expected_duration"] >= 1_000_000_000
    tests = task["test_results"]
    assert set(tests) == {f"{name}.test_one", f"{name}.test_two"}
    assert tests[f"{name}.test_one"]["status"] == "pass"
    assert tests[f"{name}.test_one"]["time_taken"] == 250_000_000
    assert tests[f"{name}.test_two"] == {**tests[f"{name}.test_two"], "status": "fail" if failing else "pass",
                                         "time_taken": 1_500_000_000}
    log_url = tests[f"{name}.test_one"]["logs"]["url"]
    assert log_url.startswith(client.url + "/api/v2/logs/")
    raw = await treq.get(log_url, pool=client.pool)
    text = (await raw.content()).decode()
    assert raw.code == 200 and 'name="test_one" time="0.25"' in text
    status = await client.get(f"/rest/v1/tasks/{task['id']}/status")
    assert status == {"task_id": task["id"], "task_name": name, "status": task["status"],
                      "status_details": task["status_details"], "tests": tests}


async def check_history(client: Client, v1: str, v2: str) -> None:
    history = await client.get("/rest/v1/tasks/lint/history?project=sample")
    assert set(history) == {"Tasks", "Versions", "FailedTests", "Exhausted"}
    assert [entry["_id"] for entry in history["Tasks"]] == [REV2, REV1]
    assert [version["id"] for version in history["Versions"]] == [v2, v1]
    assert history["Exhausted"] == {"Before": True, "After": True}
    for entry in history["Tasks"]:
        assert sorted(task["build_variant"] for task in entry["tasks"]) == sorted(VARIANTS)
        for task in entry["tasks"]:
            assert set(task) == {"_id", "activated", "build_variant", "status", "status_details", "time_taken"}
            assert task["status"] == ("failed" if task["build_variant"] == FAILING[0] else "success")
    failed_ids = {task["_id"] for entry in history["Tasks"] for task in entry["tasks"] if task["status"] == "failed"}
    assert history["FailedTests"] == {task_id: ["lint.test_two"] for task_id in failed_ids}
    assert set(history["Versions"][0]) == {"id", "create_time", "start_time", "finish_time", "revision", "message",
                                           "order"}
    # the 2018 code read project_id=
    assert await client.get("/rest/v1/tasks/lint/history?project_id=sample") == history


async def check_timeout(client: Client, version_id: str) -> None:
    version = await client.get(f"/rest/v1/versions/{version_id}")
    assert version["requester"] == "ad_hoc" and version["status"] == "failed" and version["project"] == "slow"
    build = await client.get(f"/rest/v1/builds/{version['builds'][0]}")
    task = await client.get(f"/rest/v1/tasks/{build['tasks']['hang']['task_id']}")
    assert task["status"] == "failed"
    assert task["status_details"] == {"timed_out": True, "timeout_stage": "run"}
    assert task["test_results"] == {}


async def check_errors(client: Client, version_id: str) -> None:
    cases = [
        ("/rest/v1/versions/sample_x_99999", 404, "error finding version"),
        (f"/rest/v1/versions/{version_id.replace('sample', 'other')}", 404, "error finding version"),
        ("/rest/v1/versions/nonumber/status", 404, "error finding version"),
        ("/rest/v1/builds/sample_ubuntu_x_99999", 404, "error finding build"),
        ("/rest/v1/builds/sample_ubuntu_x_99999/status", 404, "error finding build"),
        ("/rest/v1/tasks/sample_ubuntu_x_1_compile_99999", 404, "error finding task"),
        ("/rest/v1/tasks/sample_ubuntu_x_1_compile_99999/status", 404, "error finding task"),
        (f"/rest/v1/versions/{version_id}/status?groupby=variants", 400, "Invalid groupby parameter 'variants'"),
        ("/rest/v1/projects/sample/versions?limit=ten", 400, "Error parsing 'ten' as an integer for 'limit'"),
        ("/rest/v1/projects/sample/versions?limit=0", 400, "'limit' must be between 1 and 1000, not 0"),
        ("/rest/v1/projects/sample/versions?start=x", 400, "'start' query parameter must be a valid integer"),
        ("/rest/v1/projects/sample/versions?start=-2", 400, "'start' must be a non-negative integer"),
        ("/rest/v1/projects/nosuch/revisions/abc", 400, "project doesn't exist"),
        ("/rest/v1/projects/sample/revisions/abc", 404, "Error finding revision 'abc' for project 'sample'"),
        ("/rest/v1/tasks/lint/history", 400, "project id must not be empty: give ?project=<id>"),
        ("/rest/v1/tasks/lint/history?project=nosuch", 404, "error loading project 'nosuch'"),
        ("/rest/v1/nosuch", 404, "no such route: /rest/v1/nosuch"),
    ]
    for path, status, message in cases:
        code, body, response = await client.request("GET", path)
        assert (code, body) == (status, {"message": message}), path
        assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"], path
    code, body, response = await client.request("DELETE", f"/rest/v1/versions/{version_id}")
    assert code == 405 and body["message"].startswith("method DELETE is not allowed")
    assert set(response.headers.getRawHeaders("allow")[0].split(", ")) == {"GET", "HEAD", "PATCH"}
