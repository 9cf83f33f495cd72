"""Hostile input to the bundled plugins' own APIs, on both backends: integers beyond 64 bits and NUL
characters are a 400 or a 404 in the plugin's error shape, never a 500 (plugins build some of
their filters themselves, so the data API checks bound values too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from apiclient import Api, serve

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
