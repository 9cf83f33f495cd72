"""meta.total from maintained counters and capped counts, keyset links and conditional GETs (issue 17)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from apiclient import Api, serve
from test_rest import seed
from test_storage import fetch_sql, run_sql

from master.data import query
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.data.resultspec import Limits
from master.db import migrate, schema

b = schema.builds
# paths whose total comes from a counter, and the SQL condition on builds each one means
COUNTED = {
    "builds": sa.true(),
    "builders/1/builds": b.c.builderid == 1,
    "builders/1/builds?complete=true": sa.and_(b.c.builderid == 1, b.c.complete_at.is_not(None)),
    "builders/1/builds?complete=false": sa.and_(b.c.builderid == 1, b.c.complete_at.is_(None)),
    "builds?complete=false": b.c.complete_at.is_(None),
    "builds?workerid=1": b.c.workerid == 1,
    "builds?builderid=1&results=0": sa.and_(b.c.builderid == 1, b.c.results == 0),
    "builders/1/builds?results=0": sa.and_(b.c.builderid == 1, b.c.results == 0),
}


@pytest_twisted.async_yield_fixture()
async def api(storage: Any, migrated_url: str) -> AsyncIterator[Api]:
    data = DataAPI(storage, Limits(default=2, maximum=50))
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    migrate.create_plugin_tables(migrated_url, [])
    await seed_without_notes(data)
    async with serve(data, in_memory=True) as api:
        yield api


async def seed_without_notes(data: DataAPI) -> None:
    """test_rest's seed, without its plugin's notes."""
    data.updates.add_note = _ignore
    await seed(data)


async def _ignore(*args: Any) -> None:
    return None


def counted(url: str, condition: Any) -> int:
    return fetch_sql(url, sa.select(sa.func.count().label("n")).select_from(schema.builds).where(condition))[0]["n"]


async def check_totals(api: Api, url: str) -> None:
    for path, condition in COUNTED.items():
        code, body, _ = await api.get(f"/api/v2/{path}")
        assert code == 200, body
        assert body["meta"] == {"total": counted(url, condition)}, path


@pytest_twisted.ensureDeferred
async def test_counters_follow_inserts_updates_and_deletes(api: Api, migrated_url: str) -> None:
    await check_totals(api, migrated_url)
    code, body, _ = await api.get("/api/v2/builds")
    assert body["meta"]["total"] == 8
    counters = {r["name"]: r["n"] for r in fetch_sql(migrated_url, sa.select(schema.row_counts))}
    assert counters["builds"] == 8 and counters["builds/builderid=2"] == 2  # the totals come from here
    # a build moves to another worker, one finishes, one is deleted
    run_sql(
        migrated_url,
        sa.update(schema.builds).where(schema.builds.c.id.in_([1, 2])).values(workerid=None),
        sa.update(schema.builds).where(schema.builds.c.id == 5).values(complete_at=10, results=0),
        sa.delete(schema.builds).where(schema.builds.c.id == 3),
    )
    await check_totals(api, migrated_url)
    code, body, _ = await api.get("/api/v2/builds")
    assert body["meta"]["total"] == 7


@pytest_twisted.ensureDeferred
async def test_filtered_total_is_capped_and_says_so(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query, "COUNT_CAP", 3)
    code, body, _ = await api.get("/api/v2/builds?state_string__contains=build")  # 6 match, 2 a page
    assert code == 200 and body["meta"] == {"total": 3, "total_is_lower_bound": True}
    code, body, _ = await api.get("/api/v2/builds?state_string__contains=build&offset=3&limit=2")
    assert body["meta"] == {"total": 5, "total_is_lower_bound": True}  # at least to the end of this page
    code, body, _ = await api.get("/api/v2/builds?state_string__contains=build&offset=4&limit=5")
    assert body["meta"] == {"total": 6}  # a short page tells the total itself
    code, body, _ = await api.get("/api/v2/builds?state_string__contains=done")  # 2 match: under the cap
    assert body["meta"] == {"total": 2}
    code, body, _ = await api.get("/api/v2/builds")  # counted: exact beyond the cap
    assert body["meta"] == {"total": 8}


@pytest_twisted.ensureDeferred
async def test_keyset_next_links_walk_history(api: Api) -> None:
    for order, expected in (("-buildid", [8, 7, 6, 5, 4, 3, 2, 1]), ("buildid", [1, 2, 3, 4, 5, 6, 7, 8])):
        path, seen = f"/api/v2/builds?order={order}&limit=3&field=number", []
        while path:
            code, body, response = await api.get(path)
            assert code == 200
            seen += [b["number"] for b in body["builds"]]
            links = response.headers.getRawHeaders("link") or []
            path = None
            if links:
                target, rel = links[0].split(";")
                assert rel.strip() == 'rel="next"' and "offset" not in target
                path = target.strip()[1:-1].removeprefix("http://127.0.0.1:8010")
        numbers = {b: n for b, n in zip(range(1, 9), [1, 2, 3, 4, 5, 6, 1, 2], strict=True)}
        assert seen == [numbers[b] for b in expected]
    _, _, response = await api.get("/api/v2/builds?order=-number&limit=3")
    assert response.headers.getRawHeaders("link") is None  # not ordered by id: no keyset link
    _, _, response = await api.get("/api/v2/builds?order=-buildid&limit=20")
    assert response.headers.getRawHeaders("link") is None  # the last page


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/api/v2/builds/1", "/api/v2/builds?limit=3", "/api/v2/", "/api/v2/openapi.json"])
async def test_etag_and_if_none_match(api: Api, path: str) -> None:
    code, body, response = await api.get_raw(path)
    (etag,) = response.headers.getRawHeaders("etag")
    assert code == 200 and body and etag.startswith('"') and etag.endswith('"')
    for header in (etag, f'"other", W/{etag}', f'"a",{etag} , "b"', "*"):
        code, body, response = await api.get_raw(path, headers={"If-None-Match": header})
        assert code == 304 and body == b"", header
        assert response.headers.getRawHeaders("etag") == [etag]
    code, body, _ = await api.get_raw(path, headers={"If-None-Match": '"other", "tags"'})
    assert code == 200 and body
    if path == "/api/v2/builds/1":  # a change gives another tag
        await api.data.updates.finish_build(5, 2)
        code, body, response = await api.get_raw("/api/v2/builds/5", headers={"If-None-Match": etag})
        assert code == 200 and response.headers.getRawHeaders("etag") != [etag]


def test_migration_counts_existing_rows_and_indexes(db_url: str) -> None:
    migrate.upgrade(db_url, progress=lambda line: None, target="0003")
    run_sql(
        db_url,
        sa.insert(schema.builders).values(id=1, name="b"),
        sa.insert(schema.buildsets).values(id=1, submitted_at=1),
        sa.insert(schema.buildrequests).values(id=1, buildsetid=1, builderid=1, submitted_at=1),
        *[sa.insert(schema.builds).values(id=n, number=n, builderid=1, buildrequestid=1, started_at=n,
                                          complete_at=n if n < 3 else None) for n in range(1, 5)],
    )
    lines: list[str] = []
    migrate.upgrade(db_url, progress=lines.append)
    assert any("indexing builds (4 rows)" in line for line in lines), lines
    assert any("counted builds" in line for line in lines), lines
    counters = {r["name"]: r["n"] for r in fetch_sql(db_url, sa.select(schema.row_counts))}
    assert counters["builds"] == 4 and counters["builds/builderid=1/complete=1"] == 2
    assert counters["buildrequests/builderid=1"] == 1 and counters["buildsets"] == 1
    # the triggers run from now on
    run_sql(db_url, sa.insert(schema.builds).values(id=5, number=5, builderid=1, buildrequestid=1, started_at=5))
    counters = {r["name"]: r["n"] for r in fetch_sql(db_url, sa.select(schema.row_counts))}
    assert counters["builds"] == 5 and counters["builds/builderid=1/complete=0"] == 3
