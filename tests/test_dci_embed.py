"""DCI's ``embed`` on jobs, as agents use it (``job["topic"]["name"]``), on both backends."""

from __future__ import annotations

import pytest
import pytest_twisted
from test_dci import DciSite, _make_topic, dci  # noqa: F401 (dci is a fixture)

pytestmark = pytest.mark.slow  # dcictl processes


async def _get(dci: DciSite, path: str, **params: str) -> tuple[int, dict]:  # noqa: F811
    """A GET signed as the lab's remoteci; (status, JSON body)."""
    ctx = dci.context()
    response = await dci.call(ctx.session.request, "GET", f"{dci.url}/api/v1{path}", params=params)
    return response.status_code, response.json()


@pytest_twisted.ensureDeferred
async def test_jobs_embed_topic_components_and_remoteci(dci: DciSite) -> None:  # noqa: F811
    from dciclient.v1.api import job

    ctx = dci.context()
    topic, components = await _make_topic(dci)
    chosen = [components["hwcert-1"]["id"], components["RHEL-9.4-new"]["id"]]
    job_id = (await dci.call(job.create, ctx, topic["id"], components=chosen)).json()["job"]["id"]

    # without embed: the job alone
    code, body = await _get(dci, "/jobs")
    assert code == 200 and "topic" not in body["jobs"][0] and "remoteci" not in body["jobs"][0]

    code, body = await _get(dci, "/jobs", embed="topic,components,remoteci")
    assert code == 200, body
    [listed] = body["jobs"]
    assert listed["id"] == job_id
    assert listed["topic"]["name"] == "RHEL-9.4" and listed["topic"]["id"] == topic["id"]
    assert listed["remoteci"]["name"] == "lab1" and listed["remoteci"]["id"] == dci.remoteci["id"]
    assert "api_secret" not in listed["remoteci"]
    assert sorted(c["id"] for c in listed["components"]) == sorted(chosen)
    assert {c["type"] for c in listed["components"]} == {"Compose", "hwcert"}
    assert "team" not in listed  # only what was asked

    code, body = await _get(dci, f"/jobs/{job_id}", embed="components,topic,remoteci")
    assert code == 200, body
    shown = body["job"]
    assert shown["topic"]["name"] == "RHEL-9.4" and shown["remoteci"]["name"] == "lab1"
    assert sorted(c["id"] for c in shown["components"]) == sorted(chosen)
    code, body = await _get(dci, f"/jobs/{job_id}", embed="team,jobstates")
    assert body["job"]["team"]["name"] == "Red Hat" and body["job"]["jobstates"] == []

    # an unknown name is refused, naming the valid ones
    code, body = await _get(dci, "/jobs", embed="topic,colour")
    assert code == 400 and body["message"] == 'Invalid embed key: "colour"'
    assert "remoteci" in body["payload"]["Valid embed keys"]
    code, body = await _get(dci, f"/jobs/{job_id}", embed="colour")
    assert code == 400
