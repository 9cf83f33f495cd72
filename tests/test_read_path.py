"""The read path's one-statement reads (issue 17, item 7), on both backends.

A page carries its total in the same statement, counted only when the page is full; list
loaders (a builder's tags, a change's files) are read by the page query itself as JSON
arrays.  Each gives what the separate queries gave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa

from master.data import query
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import schema
from master.db.interfaces import IStorage, StorageError


@pytest_twisted.async_yield_fixture()
async def data(storage: IStorage) -> AsyncIterator[DataAPI]:
    api = DataAPI(storage)
    for rtype in core_resource_types():
        api.add_resource_type(rtype)
    yield api


async def _builders(data: DataAPI) -> list[int]:
    masterid = await data.updates.master_active("m1")
    ids = [
        await data.updates.update_builder("zulu", tags=["b", "a", "c"]),
        await data.updates.update_builder("alpha", tags=[]),
        await data.updates.update_builder("mike", tags=["only"]),
    ]
    await data.updates.set_master_builders(masterid, ids[:2])
    return ids


@pytest_twisted.ensureDeferred
async def test_inlined_lists_equal_the_loaders(data: DataAPI) -> None:
    ids = await _builders(data)
    rtype = data.rtypes["builders"]
    page = await data.get("builders", query={"order": ["name"]})
    assert [b["name"] for b in page.items] == ["alpha", "mike", "zulu"]
    by_id = {b["builderid"]: b for b in page.items}
    for name in ("tags", "masterids"):
        assert query._inlined(rtype, (name,)) == (name,)  # read by the page query, not the loader
        loaded = await rtype.loaders[name](data, ids, None)  # what the loader's own query says
        assert {i: by_id[i][name] for i in ids} == dict(loaded)
    assert by_id[ids[0]]["tags"] == ["a", "b", "c"]  # in order, whatever the insertion order
    assert by_id[ids[1]]["tags"] == []  # none is an empty list, not null
    single = await data.get(f"builders/{ids[0]}")
    assert single["tags"] == ["a", "b", "c"]
    assert await data.get(f"builders/{ids[0]}", query={"field": ["tags"]}) == {"tags": ["a", "b", "c"]}


@pytest_twisted.ensureDeferred
async def test_change_files_keep_order_and_duplicates_out(data: DataAPI) -> None:
    changeid = await data.updates.add_change(
        author="a", files=["z.c", "b.c", "m.c"], comments="", revision="r1", when_timestamp=1, branch="main",
        category=None, revlink=None, properties={}, repository="https://x/r", codebase="", project="p",
    )
    other = await data.updates.add_change(
        author="a", files=[], comments="", revision="r2", when_timestamp=2, branch="main",
        category=None, revlink=None, properties={}, repository="https://x/r", codebase="", project="p",
    )
    loaded = await data.rtypes["changes"].loaders["files"](data, [changeid, other], None)
    assert (await data.get(f"changes/{changeid}"))["files"] == loaded[changeid] == sorted(loaded[changeid])
    assert (await data.get(f"changes/{other}"))["files"] == [] == loaded[other]


@pytest.mark.parametrize("one_statement", [True, False])
@pytest_twisted.ensureDeferred
async def test_page_total(data: DataAPI, storage: IStorage, one_statement: bool) -> None:
    """One statement (PostgreSQL's way, tried on both) or page and count in one transaction: same totals."""
    for n in range(5):
        await data.updates.update_builder(f"b{n}")
    statements: list[Any] = []
    fetch_all = storage.fetch_all

    async def counting(statement: Any, params: Any = None) -> Any:
        statements.append(statement)
        return await fetch_all(statement, params)

    storage.fetch_all = counting  # type: ignore[method-assign]
    storage.round_trips_cost = one_statement  # type: ignore[attr-defined]
    try:
        for args, size, total in (
            ({"limit": ["2"]}, 2, 5),  # full: counted in the same statement
            ({"limit": ["10"]}, 5, 5),  # short: the page tells
            ({"limit": ["2"], "offset": ["4"]}, 1, 5),
            ({"limit": ["5"]}, 5, 5),  # exactly full: counted
            ({"limit": ["2"], "offset": ["9"]}, 0, 5),  # past the end: a count of its own
            ({"limit": ["0"]}, 0, 5),
            ({"name__contains": ["nothing"]}, 0, 0),  # empty from the start: 0, no count
        ):
            statements.clear()
            page = await data.get("builders", query=args)
            assert (len(page.items), page.total) == (size, total), args
            if one_statement:
                assert len(statements) == (2 if size == 0 and total else 1), args
            assert all(query.TOTAL not in item for item in page.items)
    finally:
        storage.fetch_all = fetch_all  # type: ignore[method-assign]
        del storage.round_trips_cost


@pytest_twisted.ensureDeferred
async def test_paged_order_is_the_page_order(data: DataAPI) -> None:
    for name in ("delta", "alpha", "echo", "charlie", "bravo"):
        await data.updates.update_builder(name, description=str(len(name)))
    for order, names in (
        (["name"], ["alpha", "bravo", "charlie"]),
        (["-name"], ["echo", "delta", "charlie"]),
        (["description", "-name"], ["echo", "delta", "bravo"]),
        (["-builderid"], ["bravo", "charlie", "echo"]),
    ):
        page = await data.get("builders", query={"order": order, "limit": ["3"]})
        assert [b["name"] for b in page.items] == names, order
        assert page.total == 5


@pytest_twisted.ensureDeferred
async def test_read_errors_leave_the_connection_usable(storage: IStorage) -> None:
    for _ in range(3):  # more than once on each pooled connection
        with pytest.raises(StorageError):
            await storage.fetch_all(sa.text("SELECT * FROM no_such_table"))
        rows = await storage.fetch_all(sa.select(sa.func.count().label("n")).select_from(schema.builders))
        assert rows == [{"n": 0}]
