"""DCI API v1 shapes and queries: the seed document's examples, where/sort/limit, errors, uploads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from test_dci import DciSite, _make_topic, dci_site

pytestmark = pytest.mark.slow  # dcictl processes

# The example responses of the DCI API document ci-master was specified from (values shortened).
SEED_IDENTITY = {"identity": {"email": None, "etag": None, "fullname": None, "id": "6cee", "name": None,
                              "teams": {"713e": {"team_name": "Red Hat"}}, "timezone": None}}
SEED_TOPICS = {"_meta": {"count": 1}, "topics": [{
    "component_types": ["Compose", "hwcert"], "created_at": "2019-10-10T06:14:55.269457", "data": {},
    "etag": "6d27", "export_control": False, "id": "c417", "name": "RHEL-8.2", "next_topic_id": None,
    "product_id": "b3d8", "state": "active", "updated_at": "2019-10-10T06:15:07.565374"}]}
SEED_COMPONENTS = {"_meta": {"count": 21}, "components": [{
    "canonical_project_name": "RHEL-8.2.0-20191029.n.0", "created_at": "2019-10-29T05:45:00.790012", "data": {},
    "etag": "7294", "id": "4e7a", "message": None, "name": "RHEL-8.2.0-20191029.n.0", "state": "active",
    "title": None, "topic_id": "c417", "type": "Compose", "updated_at": "2019-10-29T07:08:46.539578",
    "url": "http://example.com/rhel-8/nightly"}]}
SEED_JOB = {"job": {
    "client_version": None, "comment": None, "created_at": "2019-10-28T00:11:35.988480", "duration": 0,
    "etag": "325a", "id": "bf87", "previous_job_id": None, "product_id": "b3d8", "remoteci_id": "6cee",
    "state": "active", "status": "new", "team_id": "713e", "topic_id": "c417", "topic_id_secondary": None,
    "update_previous_job_id": None, "updated_at": "2019-10-28T00:11:35.988480", "user_agent": "PostmanRuntime/7.18.0"}}
SEED_JOBSTATE = {"jobstate": {"comment": None, "created_at": "2019-10-28T00:12:38.505403", "id": "0115",
                              "job_id": "bf87", "status": "pre-run"}}
SEED_FILE = {"file": {
    "created_at": "2019-10-29T15:34:48.962810", "etag": "0a72", "id": "deba", "job_id": "bf87", "jobstate_id": None,
    "md5": None, "mime": "application/junit", "name": "test-result.log", "size": "75", "state": "active",
    "team_id": "713e", "updated_at": "2019-10-29T15:34:48.962824"}}


def shape(value: Any) -> Any:
    """The keys of *value*, recursively (the first item stands for a list; ids as dict keys are ignored)."""
    if isinstance(value, dict):
        return {k if k in ("identity", "teams") or len(k) < 30 else "<id>": shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return None


def same_shape(seed: Any, ours: Any) -> None:
    if isinstance(seed, dict) and "teams" in seed:
        seed = {**seed, "teams": {"<id>": seed["teams"][next(iter(seed["teams"]))]}}
    if isinstance(ours, dict) and "teams" in ours:
        ours = {**ours, "teams": {"<id>": ours["teams"][next(iter(ours["teams"]))]}}
    assert shape(ours) == shape(seed)


@pytest_twisted.async_yield_fixture()
async def dci(migrated_url: str, tmp_path: Path) -> AsyncIterator[DciSite]:
    """A served DCI site on each backend."""
    async with dci_site(migrated_url, tmp_path) as site:
        yield site


async def _request(dci: DciSite, method: str, path: str, **kw: Any) -> Any:
    """A signed request of the remoteci through dciclient's session."""
    ctx = dci.context()
    return await dci.call(ctx.session.request, method, f"{dci.url}/api/v1{path}", **kw)


@pytest_twisted.ensureDeferred
async def test_seed_examples_have_the_same_keys(dci: DciSite) -> None:
    from dciclient.v1.api import file, identity, job, jobstate, topic

    ctx = dci.context()
    made, components = await _make_topic(dci)
    same_shape(SEED_IDENTITY["identity"], (await dci.call(identity.get, ctx)).json()["identity"])
    same_shape(SEED_TOPICS, (await dci.call(topic.list, ctx, where="name:RHEL-9.4")).json())
    same_shape(SEED_COMPONENTS, (await dci.call(topic.list_components, ctx, made["id"])).json())
    # the seed's own request: components and topic_id only
    created = await dci.call(job.create, ctx, made["id"], components=[components["hwcert-1"]["id"]])
    same_shape(SEED_JOB, created.json())
    job_id = created.json()["job"]["id"]
    same_shape(SEED_JOBSTATE, (await dci.call(jobstate.create, ctx, "pre-run", None, job_id)).json())
    # the seed's upload example sends a JSON body with DCI-MIME application/junit: it is never parsed as JSON
    junit = "<testsuite><testcase name='a'/></testsuite>"
    uploaded = await dci.call(file.create, ctx, "test-result.log", content=junit,
                              mime="application/junit", job_id=job_id)
    assert uploaded.status_code == 201, uploaded.text
    same_shape(SEED_FILE, uploaded.json())


@pytest_twisted.ensureDeferred
async def test_queries_paging_and_errors(dci: DciSite) -> None:
    topic, components = await _make_topic(dci)
    tid = topic["id"]
    # paging: count is the total before the page
    page = (await _request(dci, "GET", f"/topics/{tid}/components", params={"limit": 2, "offset": 1})).json()
    assert page["_meta"]["count"] == 3 and [c["name"] for c in page["components"]] == ["hwcert-1", "RHEL-9.4-old"]
    page = (await _request(dci, "GET", f"/topics/{tid}/components", params={"limit": 9, "offset": 5})).json()
    assert page == {"components": [], "_meta": {"count": 3}}
    # sort and where: a substring with *, case-insensitive, several clauses ANDed
    found = (await _request(dci, "GET", f"/topics/{tid}/components",
                            params={"sort": "name", "where": "name:rhel*,type:compose"})).json()
    assert [c["name"] for c in found["components"]] == ["RHEL-9.4-new", "RHEL-9.4-old"]
    # errors name the valid keys
    bad = await _request(dci, "GET", "/topics", params={"where": "colour:red"})
    assert bad.status_code == 400 and bad.json()["message"] == 'Invalid where key: "colour"'
    assert "name" in bad.json()["payload"]["Valid where keys"]
    bad = await _request(dci, "GET", "/topics", params={"sort": "-colour"})
    assert bad.status_code == 400 and bad.json()["message"] == 'Invalid sort key: "colour"'
    assert "created_at" in bad.json()["payload"]["Valid sort keys"]
    bad = await _request(dci, "GET", "/topics", params={"where": "name"})
    assert bad.status_code == 400 and "is not a 'key value csv'" in bad.json()["payload"]["error"]
    bad = await _request(dci, "GET", "/topics", params={"limit": 5})
    assert bad.status_code == 400 and bad.json()["message"] == "Request malformed"
    bad = await _request(dci, "GET", "/topics", params={"colour": "red"})
    assert bad.status_code == 400 and "'colour' was unexpected" in bad.json()["payload"]["error"]
    # limit is capped at 200
    capped = await _request(dci, "GET", "/topics", params={"limit": 5000, "offset": 0})
    assert capped.status_code == 200 and capped.json()["_meta"]["count"] == 2
    # unknown ids
    missing = await _request(dci, "GET", "/topics/7c2a3c64-0b5e-4a89-9d3e-8d8d2a1c0f00")
    assert missing.status_code == 404 and missing.json()["message"] == "topic not found"
    assert (await _request(dci, "GET", "/topics/not-a-uuid")).status_code == 404


@pytest_twisted.ensureDeferred
async def test_schedule_create_and_upload_errors(dci: DciSite) -> None:
    from dciclient.v1.api import file, job

    ctx = dci.context()
    topic, components = await _make_topic(dci)
    other = (await dci.call(job.schedule, ctx, (await dci.data.get("dci_topics", query={"name": ["OCP-4.19"]}))
                            .items[0]["id"], components_ids=[]))
    assert other.status_code == 412 and other.json()["message"] == 'Component of type "ocp" not found or not exported.'
    wrong = await dci.call(job.schedule, ctx, topic["id"], components_ids=[components["hwcert-1"]["id"]])
    assert wrong.status_code == 412
    chosen = [components["RHEL-9.4-old"]["id"], components["hwcert-1"]["id"]]
    picked = await dci.call(job.schedule, ctx, topic["id"], components_ids=chosen)
    assert picked.status_code == 201, picked.text
    job_id = picked.json()["job"]["id"]
    shown = (await dci.call(job.get, ctx, job_id)).json()["job"]
    assert sorted(c["id"] for c in shown["components"]) == sorted(chosen)

    bad = await _request(dci, "POST", "/jobs", json={"topic_id": topic["id"]})
    assert bad.status_code == 400 and bad.json()["payload"]["error"] == "'components' is a required property"
    bad = await _request(dci, "POST", "/jobs", json={"components": [], "colour": "red"})
    assert bad.status_code == 400 and "'colour' was unexpected" in bad.json()["payload"]["error"]
    bad = await _request(dci, "POST", "/jobstates", json={"job_id": job_id, "status": "done"})
    assert bad.status_code == 400 and "'done' is not one of" in bad.json()["payload"]["error"]
    assert (await dci.data.get(("dci_jobs", job_id)))["status"] == "new"

    # a failure while still pre-run is recorded as an error jobstate, the job gets "failure"
    from dciclient.v1.api import jobstate

    await dci.call(jobstate.create, ctx, "pre-run", None, job_id)
    state = (await dci.call(jobstate.create, ctx, "failure", "broke", job_id)).json()["jobstate"]
    assert state["status"] == "error" and (await dci.data.get(("dci_jobs", job_id)))["status"] == "failure"

    # uploads: headers required, bad XML refused and not stored, any body kept as is
    no_name = await _request(dci, "POST", "/files", data=b"x", headers={"DCI-JOB-ID": job_id})
    assert no_name.status_code == 400 and no_name.json()["message"] == "HTTP header DCI-NAME must be specified"
    no_job = await _request(dci, "POST", "/files", data=b"x", headers={"DCI-NAME": "a"})
    assert no_job.status_code == 400
    broken = await dci.call(file.create, ctx, "r.xml", content="<testsuite>", mime="application/junit", job_id=job_id)
    assert broken.status_code == 400 and broken.json()["message"].startswith("Invalid XML")
    odd = b"{not json at all"
    kept = await dci.call(file.create, ctx, "log.txt", content=odd, mime="application/json", job_id=job_id)
    assert kept.status_code == 201
    assert (await dci.data.get(("dci_jobs", job_id, "dci_files"))).total == 1
    content = await _request(dci, "GET", f"/files/{kept.json()['file']['id']}/content")
    assert content.content == odd
