"""Finding builds by a property's value (``builds?property.pr_number=7``), in SQL, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from apiclient import serve
from test_engine import make_data

from master.data.connector import DataAPI
from master.data.errors import InvalidQuery
from master.db import schema


async def seeded(storage: Any) -> DataAPI:
    """Builds 1..5 of builder 'b': PR 7 (twice), PR 8, a push build without pr_number, PR "7" as a string."""
    data = make_data(storage)
    builderid = await data.updates.update_builder("b")
    await storage.execute(sa.insert(schema.buildsets).values(submitted_at=1, reason="test"))
    await storage.execute(sa.insert(schema.buildrequests).values(buildsetid=1, builderid=builderid, submitted_at=1))
    properties = [{"pr_number": 7}, {"pr_number": 7, "got_revision": "abc"}, {"pr_number": 8}, {"branch": "main"},
                  {"pr_number": "7"}]
    for props in properties:
        await data.updates.add_build(builderid, 1, None, None, properties=lambda buildid, number, props=props: {
            name: (value, "Change") for name, value in props.items()})
    return data


async def ids(data: DataAPI, **query: Any) -> list[int]:
    found = await data.get("builds", query={name: list(values) for name, values in query.items()})
    assert found.total == len(found.items)
    return [build["buildid"] for build in found.items]


@pytest_twisted.ensureDeferred
async def test_builds_are_found_by_a_property(storage: Any) -> None:
    data = await seeded(storage)
    assert await ids(data, **{"property.pr_number": ["7"]}) == [1, 2, 5]  # the number, and the string "7"
    assert await ids(data, **{"property.pr_number__in": ["7,8"]}) == [1, 2, 3, 5]
    assert await ids(data, **{"property.pr_number__ne": ["7"]}) == [3, 4]  # 4 has no pr_number: "not equal"
    assert await ids(data, **{"property.pr_number__notin": ["7,8"]}) == [4]
    assert await ids(data, **{"property.pr_number": ["7"], "property.got_revision": ["abc"]}) == [2]
    assert await ids(data, **{"property.pr_number": ["9"]}) == []
    assert await ids(data, **{"property.branch": ["main"], "builderid": ["1"]}) == [4]
    # with the properties themselves, paged
    page = await data.get("builds", query={"property.pr_number": ["7"], "property": ["pr_number"],
                                           "order": ["-buildid"], "limit": ["2"]})
    assert page.total == 3 and [b["properties"] for b in page.items] == [
        {"pr_number": ["7", "Change"]}, {"pr_number": [7, "Change"]}]
    with pytest.raises(InvalidQuery, match="operator 'lt' does not apply to 'property.pr_number'"):
        await ids(data, **{"property.pr_number__lt": ["7"]})
    with pytest.raises(InvalidQuery, match="unrecognized query parameter 'property.'"):
        await ids(data, **{"property.": ["7"]})


@pytest_twisted.ensureDeferred
async def test_the_property_filter_over_rest(storage: Any) -> None:
    data = await seeded(storage)
    async with serve(data, in_memory=True) as api:
        code, body, _ = await api.get("/api/v2/builds?property.pr_number=7&field=buildid")
        assert code == 200 and body == {"builds": [{"buildid": 1}, {"buildid": 2}, {"buildid": 5}],
                                        "meta": {"total": 3}}
        code, body, _ = await api.get("/api/v2/builders/b/builds?property.pr_number=8&field=number")
        assert code == 200 and body["builds"] == [{"number": 3}]
        code, body, _ = await api.get("/api/v2/builds?property.pr_number__contains=7")
        assert code == 400 and "operator 'contains' does not apply" in body["error"]
        code, body, _ = await api.get("/api/v2/workers?property.pr_number=7")
        assert code == 400 and body["error"] == "unrecognized query parameter 'property.pr_number'"
