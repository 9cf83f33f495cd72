"""DCI's HMAC v2 signatures against ci-master: good ones pass, bad ones get DCI's status and write nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from dciauth.v2.headers import generate_headers
from test_dci import ADMIN, ADMIN_PASSWORD, DciSite, _make_topic, dci_site

from master.data.base import Collection


@pytest_twisted.async_yield_fixture()
async def dci(migrated_url: str, tmp_path: Path) -> AsyncIterator[DciSite]:
    """A served DCI site on each backend."""
    async with dci_site(migrated_url, tmp_path) as site:
        yield site


def _signed(site: DciSite, body: bytes, *, secret: str | None = None, client: str | None = None,
            signed_body: bytes | None = None, when: datetime | None = None) -> dict[str, str]:
    """Headers dciauth makes for a POST /api/v1/jobs of *signed_body* (the body sent is *body*)."""
    host = site.url.removeprefix("http://")
    request: dict[str, Any] = {"method": "POST", "endpoint": "/api/v1/jobs", "params": {}, "host": host,
                               "data": signed_body if signed_body is not None else body}
    if when is not None:
        request["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
        request["datestamp"] = when.strftime("%Y%m%d")
    headers = generate_headers(request, {
        "access_key": client or f"remoteci/{site.remoteci['id']}",
        "secret_key": secret or site.secret,
    })
    return {**headers, "Content-Type": "application/json"}


async def _post_job(site: DciSite, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    response = await treq.post(f"{site.url}/api/v1/jobs", data=body, headers=headers, pool=site.api.pool)
    return response.code, json.loads(await response.content())


async def _job_count(site: DciSite) -> int:
    found: Collection = await site.data.get("dci_jobs")
    return found.total


@pytest.mark.slow  # runs dcictl
@pytest_twisted.ensureDeferred
async def test_signatures_are_checked_and_rejected_requests_write_nothing(dci: DciSite) -> None:
    topic, components = await _make_topic(dci)
    body = json.dumps({"topic_id": topic["id"], "components": [components["hwcert-1"]["id"]]}).encode()

    # a well signed request is accepted: the checks below fail for their own reason only
    code, reply = await _post_job(dci, body, _signed(dci, body))
    assert code == 201, reply
    assert await _job_count(dci) == 1

    cases = [
        ("wrong secret", _signed(dci, body, secret="0" * 64), 400, "HmacMechanism failed: signature is invalid"),
        ("expired", _signed(dci, body, when=datetime.now(UTC) - timedelta(minutes=16)), 400,
         "HmacMechanism failed: signature is expired"),
        ("changed body", _signed(dci, body, signed_body=body.replace(b"topic_id", b"name")), 400,
         "HmacMechanism failed: signature is invalid"),
        ("unknown client", _signed(dci, body, client="remoteci/7c2a3c64-0b5e-4a89-9d3e-8d8d2a1c0f00"), 404,
         "remoteci not found"),
        ("not a client type", _signed(dci, body, client=f"user/{dci.remoteci['id']}"), 401,
         "identity does not exists."),
        ("no header", {"Content-Type": "application/json"}, 401, "Authorization header missing"),
        ("other scheme", {"Authorization": "Token abc"}, 401, "Authorization scheme Token unknown"),
        ("garbled", {"Authorization": "DCI2-HMAC-SHA256 nonsense", "X-DCI-Date": "20260101T000000Z"}, 400,
         "HmacMechanism failed: bad or incomplete headers."),
    ]
    for name, headers, status, message in cases:
        code, reply = await _post_job(dci, body, headers)
        assert (code, reply["message"]) == (status, message), name
        assert set(reply) == {"status_code", "message", "payload"} and reply["status_code"] == status, name
    assert await _job_count(dci) == 1

    # within the 15 minute skew, a signature still holds
    code, reply = await _post_job(dci, body, _signed(dci, body, when=datetime.now(UTC) - timedelta(minutes=14)))
    assert code == 201, reply

    # the real client with a wrong secret: refused, nothing written
    from dciclient.v1.api import job

    refused = await dci.call(job.create, dci.context(secret="f" * 64), topic["id"], components=[])
    assert refused.status_code == 400
    assert await _job_count(dci) == 2


@pytest_twisted.ensureDeferred
async def test_basic_auth_users(dci: DciSite) -> None:
    from dciclient.v1.api import context, identity, topic

    admin = context.build_dci_context(dci.url, ADMIN, ADMIN_PASSWORD, max_retries=0)
    who = (await dci.call(identity.get, admin)).json()["identity"]
    assert who["name"] == ADMIN
    made = await dci.call(topic.create, admin, "RHEL-10.0", ["Compose"])
    assert made.status_code == 201 and made.json()["topic"]["name"] == "RHEL-10.0"
    wrong = context.build_dci_context(dci.url, ADMIN, "nope", max_retries=0)
    refused = await dci.call(topic.create, wrong, "RHEL-11.0", ["Compose"])
    assert refused.status_code == 401 and refused.json()["message"] == "Invalid user credentials"
    # a remoteci may not create topics
    refused = await dci.call(topic.create, dci.context(), "RHEL-12.0", ["Compose"])
    assert refused.status_code == 401 and refused.json()["message"] == "Operation not authorized."
    assert [t["name"] for t in (await dci.data.get("dci_topics")).items] == ["RHEL-10.0"]
