"""Hostile input to the bundled plugins' own APIs, on both backends: integers beyond 64 bits and NUL
characters are a 400 or a 404 in the plugin's error shape, never a 500 (plugins build some of
their filters themselves, so the data API checks bound values too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from apiclient import Api, serve
from test_dci import DciSite, _make_topic, dci_site

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.www.rest import RestApi
from master.www.site import build_site
from plugins.bileto import BiletoPlugin
from plugins.evergreen import EvergreenPlugin
from plugins.selfserve import SelfServePlugin

BIG = str(10**20)


@pytest_twisted.async_yield_fixture()
async def api(storage: Any, migrated_url: str) -> AsyncIterator[Api]:
    """Bileto at /v1, Evergreen at /rest/v1 and self-serve at /self-serve over the test's database."""
    plugins = [BiletoPlugin(), EvergreenPlugin(), SelfServePlugin()]
    migrate.prepare_plugin_tables(migrated_url, migrate.plugin_schemas(plugins))
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    mounts: dict[str, Any] = {"api": RestApi(data).resource()}
    for plugin in plugins:
        data.add_plugin(plugin)
        mounts.update(plugin.web_resources(data))
    async with serve(data, build_site(mounts)) as served:
        yield served


@pytest.mark.parametrize(("path", "status", "words"), [
    (f"/v1/tickets?request_id={BIG}", 400, "'request_id': 100000000000000000000 is out of range"),
    ("/v1/tickets?siloname=a%00b", 400, "'siloname': must not contain a NUL"),
    ("/v1/user/a%00b", 400, "NUL"),
    (f"/self-serve/jobs/{BIG}?format=json", 404, f"Job {BIG} not found"),
    ("/self-serve/a%00b?format=json", 404, "not found"),
    ("/self-serve/a%00b/builders?format=json", 404, "not found"),
    ("/rest/v1/projects/a%00b/versions", 400, "'name': must not contain a NUL"),
])
@pytest_twisted.ensureDeferred
async def test_plugin_reads_refuse_what_no_field_holds(api: Api, path: str, status: int, words: str) -> None:
    code, raw, _ = await api.get_raw(path)
    assert code == status, raw[:300]
    assert words in json.dumps(json.loads(raw), ensure_ascii=False), raw[:300]


@pytest_twisted.async_yield_fixture()
async def dci(migrated_url: str, tmp_path: Path) -> AsyncIterator[DciSite]:
    """The DCI API with a lab, on each backend."""
    async with dci_site(migrated_url, tmp_path) as site:
        yield site


@pytest.mark.slow  # runs dcictl
@pytest_twisted.ensureDeferred
async def test_dci_refuses_nul_in_text_and_keeps_it_in_data(dci: DciSite) -> None:
    topic, components = await _make_topic(dci)
    session = dci.context().session
    job = {"components": [components["hwcert-1"]["id"]], "topic_id": topic["id"]}
    for field, value in (("comment", "a\u0000b"), ("tags", ["ok", "b\u0000"])):
        refused = await dci.call(session.request, "POST", f"{dci.url}/api/v1/jobs", json={**job, field: value})
        assert refused.status_code == 400, refused.text
        assert refused.json()["payload"]["error"] == f"{field}: must not contain a NUL character (\\u0000)"
    assert (await dci.data.get("dci_jobs")).total == 0
    # a JSON object is stored as JSON text, which holds it on both backends
    kept = await dci.call(session.request, "POST", f"{dci.url}/api/v1/jobs", json={**job, "data": {"a": "\u0000"}})
    assert kept.status_code == 201, kept.text
    assert (await dci.data.get(("dci_jobs", kept.json()["job"]["id"])))["data"] == {"a": "\u0000"}
    found = await dci.call(session.request, "GET", f"{dci.url}/api/v1/jobs?where=name:a%00b")
    assert found.status_code == 400 and "NUL" in found.json()["message"]
