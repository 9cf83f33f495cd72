"""A DCI test site: the DCI plugin over a real database, served on 127.0.0.1, driven by the real dciclient.

``dcictl`` runs as a subprocess (its own process, its own HTTP client); dciclient's Python API
runs in a thread, since its calls block.  Both are bounded in time.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from apiclient import Api, serve
from dciclient.v1.api import context as dci_context
from twisted.internet import reactor, threads, utils

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.db.backends import make_storage
from master.www.auth import UserStore
from master.www.rest import RestApi
from master.www.site import build_site
from plugins.dci import DciPlugin, tables

pytestmark = pytest.mark.slow  # dcictl and dciclient processes

T = TypeVar("T")
DCICTL = str(Path(sys.executable).parent / "dcictl")
ADMIN, ADMIN_PASSWORD = "dciadmin", "admin-pw-1"
TIMEOUT = 60


@dataclass
class DciSite:
    """A served DCI API: its URL, data API, a lab's remoteci (id and secret) and its team."""

    api: Api
    data: DataAPI
    team: dict[str, Any]
    remoteci: dict[str, Any]
    secret: str
    events: list[tuple[tuple[str, ...], dict[str, Any]]] = field(default_factory=list)
    site: Any = None  # the twisted.web Site serving it (tests change its limits)

    @property
    def url(self) -> str:
        """The master's base URL (``DCI_CS_URL``)."""
        return self.api.url

    def hmac_env(self, client_id: str | None = None, secret: str | None = None) -> dict[str, str]:
        """Environment for dcictl signing as the remoteci."""
        return {
            "DCI_CS_URL": self.url,
            "DCI_CLIENT_ID": client_id or f"remoteci/{self.remoteci['id']}",
            "DCI_API_SECRET": secret or self.secret,
        }

    def admin_env(self) -> dict[str, str]:
        """Environment for dcictl as the administrator (Basic auth)."""
        return {"DCI_CS_URL": self.url, "DCI_LOGIN": ADMIN, "DCI_PASSWORD": ADMIN_PASSWORD}

    async def dcictl(self, env: dict[str, str], *args: str) -> Any:
        """Run ``dcictl --format json *args``; its JSON output (it exits 0 even on HTTP errors)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DCI_", "SSO_"))}
        d = utils.getProcessOutputAndValue(DCICTL, ["--format", "json", *args], env={**clean, **env})
        d.addTimeout(TIMEOUT, reactor)
        out, err, code = await d
        assert code == 0, f"dcictl {args} exited {code}: {err.decode()}"
        text = out.decode()
        try:
            return json.loads(text)
        except ValueError:
            raise AssertionError(f"dcictl {args} printed no JSON: {text!r} {err.decode()!r}") from None

    def context(self, client_id: str | None = None, secret: str | None = None) -> Any:
        """A dciclient signature context (no retries: a failure shows at once)."""
        return dci_context.build_signature_context(
            self.url, client_id or f"remoteci/{self.remoteci['id']}", secret or self.secret, max_retries=0
        )

    async def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a blocking dciclient call in a thread, bounded in time."""
        d = threads.deferToThread(fn, *args, **kw)
        d.addTimeout(TIMEOUT, reactor)
        return await d


@asynccontextmanager
async def dci_site(db_url: str, tmp_path: Path) -> AsyncIterator[DciSite]:
    """Create the DCI tables in *db_url*, start the data API with the plugin, serve it, and add a lab."""
    await threads.deferToThread(migrate.create_plugin_tables, db_url, [tables.metadata])
    users_file = tmp_path / "users.json"
    UserStore(users_file).add_user(ADMIN, ADMIN_PASSWORD, ["dci-admin"])
    storage = make_storage(db_url)
    await storage.start()
    try:
        data = DataAPI(storage)
        for rtype in core_resource_types():
            data.add_resource_type(rtype)
        plugin = DciPlugin(users_file=str(users_file))
        data.add_plugin(plugin)
        site = build_site({"api": RestApi(data).resource(), **plugin.web_resources(data)})
        team = await data.updates.dci_find_or_create_team("Red Hat")
        remoteci, secret = await data.updates.dci_create_remoteci("lab1", team["id"])
        async with serve(data, site) as api:
            dci = DciSite(api, data, team, remoteci, secret, site=site)
            subscription = data.events.subscribe(("dci_jobs", "*", "update"), lambda k, e: dci.events.append((k, e)))
            try:
                yield dci
            finally:
                subscription.cancel()
    finally:
        await storage.stop()


@pytest_twisted.async_yield_fixture()
async def dci(migrated_url: str, tmp_path: Path) -> AsyncIterator[DciSite]:
    """A served DCI site on each backend."""
    async with dci_site(migrated_url, tmp_path) as site:
        yield site


JUNIT = b"""<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="suite" tests="4">
  <testcase classname="a" name="passes" time="1.5"/>
  <testcase classname="a" name="fails" time="0.25"><failure message="boom">trace</failure></testcase>
  <testcase classname="a" name="skipped" time="0"><skipped/></testcase>
  <testcase classname="a" name="errs" time="0.25"><error message="oops"/></testcase>
</testsuite>
"""


async def _make_topic(dci: DciSite) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """RHEL-9.4 (types Compose, hwcert) and its components, made by the administrator through dcictl."""
    admin = dci.admin_env()
    created = await dci.dcictl(admin, "topic-create", "--name", "RHEL-9.4", "--component_types", "Compose,hwcert")
    topic = created["topic"]
    await dci.dcictl(admin, "topic-create", "--name", "OCP-4.19", "--component_types", "ocp")
    components = {}
    for name, kind in (("RHEL-9.4-old", "Compose"), ("hwcert-1", "hwcert"), ("RHEL-9.4-new", "Compose")):
        made = await dci.dcictl(admin, "component-create", name, "--type", kind, "--topic-id", topic["id"])
        components[name] = made["component"]
    return topic, components


@pytest_twisted.ensureDeferred
async def test_a_lab_runs_a_job_with_dcictl_and_dciclient(dci: DciSite, tmp_path: Path) -> None:
    from dciclient.v1.api import identity, job

    topic, components = await _make_topic(dci)
    lab = dci.hmac_env()
    ctx = dci.context()

    # identity: the remoteci and its team
    who = (await dci.call(identity.get, ctx)).json()["identity"]
    assert who["id"] == dci.remoteci["id"]
    assert who["teams"] == {dci.team["id"]: {"team_name": "Red Hat"}}

    # topics by name, case-insensitively; then by a substring
    listed = await dci.dcictl(lab, "topic-list", "--where", "name:rhel-9.4")
    assert [t["name"] for t in listed["topics"]] == ["RHEL-9.4"] and listed["_meta"] == {"count": 1}
    assert listed["topics"][0]["component_types"] == ["Compose", "hwcert"]
    both = await dci.dcictl(lab, "topic-list", "--where", "name:*")
    assert both["_meta"]["count"] == 2

    # the topic's components, newest first
    listed = await dci.dcictl(lab, "component-list", "--topic-id", topic["id"])
    assert [c["name"] for c in listed["components"]] == ["RHEL-9.4-new", "hwcert-1", "RHEL-9.4-old"]
    assert listed["_meta"]["count"] == 3

    # create a job on one component
    reply = await dci.call(job.create, ctx, topic["id"], components=[components["RHEL-9.4-old"]["id"]], name="myjob")
    assert reply.status_code == 201, reply.text
    created = reply.json()["job"]
    assert created["status"] == "new" and created["name"] == "myjob"
    assert created["remoteci_id"] == dci.remoteci["id"] and created["team_id"] == dci.team["id"]
    assert created["user_agent"].startswith("python-dciclient_")
    assert reply.headers["ETag"] == created["etag"]

    # schedule a job: the newest Compose and the hwcert are picked
    reply = await dci.call(job.schedule, ctx, topic["id"], components_ids=[])
    assert reply.status_code == 201, reply.text
    job_id = reply.json()["job"]["id"]
    shown = await dci.dcictl(lab, "job-show", job_id)
    assert sorted(c["name"] for c in shown["job"]["components"]) == ["RHEL-9.4-new", "hwcert-1"]

    # states, each reaching the job and the data API's event subscribers
    for status in ("pre-run", "running", "success"):
        made = await dci.dcictl(lab, "jobstate-create", "--job-id", job_id, "--status", status, "--comment", "c")
        assert made["jobstate"]["status"] == status and made["jobstate"]["job_id"] == job_id
    statuses = [entity["status"] for key, entity in dci.events if key == ("dci_jobs", job_id, "update")]
    assert statuses == ["pre-run", "running", "success"]
    assert (await dci.data.get(("dci_jobs", job_id)))["status"] == "success"
    code, body, _ = await dci.api.get(f"/api/v2/dci_jobs/{job_id}/dci_jobstates?order=created_at")
    assert code == 200 and [s["status"] for s in body["dci_jobstates"]] == ["pre-run", "running", "success"]

    # a JUnit upload, parsed into results
    junit = tmp_path / "junit.xml"
    junit.write_bytes(JUNIT)
    uploaded = await dci.dcictl(lab, "job-upload-file", job_id, "--name", "tests.xml", "--path", str(junit),
                                "--mime", "application/junit")
    assert uploaded["file"]["name"] == "tests.xml" and uploaded["file"]["size"] == str(len(JUNIT))
    results = await dci.dcictl(lab, "job-results", job_id)
    assert results["_meta"]["count"] == 1
    result = results["results"][0]
    counts = tuple(result[k] for k in ("total", "success", "failures", "skips", "errors"))
    assert counts == (4, 1, 1, 1, 1)
    assert result["time"] == 2000 and result["file_id"] == uploaded["file"]["id"]
    content = await dci.call(ctx.session.get, f"{dci.url}/api/v1/files/{uploaded['file']['id']}/content")
    assert content.status_code == 200 and content.content == JUNIT

    # update: dcictl fetches the etag and sends it back; a stale etag is refused, a missing one too
    before = (await dci.call(job.get, ctx, job_id)).json()["job"]["etag"]
    updated = await dci.dcictl(lab, "job-update", job_id, "--comment", "all good")
    assert updated["job"]["comment"] == "all good" and updated["job"]["etag"] != before
    stale = await dci.call(job.update, ctx, id=job_id, etag=before, comment="late")
    assert stale.status_code == 404 and stale.json()["message"] == "job not found"
    missing = await dci.call(ctx.session.put, f"{dci.url}/api/v1/jobs/{job_id}", json={"comment": "x"})
    assert missing.status_code == 412 and missing.json()["message"] == "'If-match' header must be provided"
    assert (await dci.data.get(("dci_jobs", job_id)))["comment"] == "all good"

    # a job key-value
    kv = await dci.call(job.add_kv, ctx, job_id, "duration", 12)
    assert kv.status_code == 201 and kv.json()["kv"] == {"job_id": job_id, "key": "duration", "value": 12.0}

    # the data API shows the job
    code, body, _ = await dci.api.get(f"/api/v2/dci_jobs/{job_id}")
    assert code == 200 and body["dci_jobs"][0]["comment"] == "all good"


@pytest_twisted.ensureDeferred
async def test_remoteci_create_prints_the_credentials_a_lab_needs(dci: DciSite, migrated_url: str) -> None:
    from dciclient.v1.api import identity

    async def cli(*args: str) -> tuple[bytes, bytes, int]:
        d = utils.getProcessOutputAndValue(sys.executable, ["-m", "plugins.dci", *args], env=dict(os.environ),
                                           path=str(Path(__file__).parent.parent))
        d.addTimeout(TIMEOUT, reactor)
        return await d

    out, err, code = await cli("remoteci-create", "lab2", "--team", "Partner", "--db", migrated_url)
    assert code == 0, err.decode()
    env = dict(line.split("=", 1) for line in out.decode().splitlines() if "=" in line and not line.startswith("#"))
    assert env["DCI_CLIENT_ID"].startswith("remoteci/")
    who = (await dci.call(identity.get, dci.context(env["DCI_CLIENT_ID"], env["DCI_API_SECRET"]))).json()
    assert who["identity"]["id"] == env["DCI_CLIENT_ID"].split("/")[1]
    assert [team["team_name"] for team in who["identity"]["teams"].values()] == ["Partner"]
    # the same name twice in a team is refused with a message, and no second secret is made
    out, err, code = await cli("remoteci-create", "lab2", "--team", "Partner", "--db", migrated_url)
    assert code == 1 and "exists in this team" in err.decode() and not out
    assert (await dci.data.get("dci_remotecis", query={"name": ["lab2"]})).total == 1
