"""Steps, logs and log contents: update methods, events, every endpoint, raw downloads over HTTP, both backends."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from apiclient import Api, serve
from twisted.internet import defer

from master.data.connector import DataAPI
from master.data.errors import Conflict, InvalidQuery, NotFound
from master.data.resources import builders, builds, logs, masters, projects, steps
from master.data.resources.logs import MAX_CHUNK_BYTES, MAX_CHUNK_LINES, iter_chunks
from master.db import schema

STDIO, TEXT, HTML = "s", "t", "h"


@pytest_twisted.async_yield_fixture()
async def data(storage: Any) -> AsyncIterator[DataAPI]:
    """Builder 'hello' with build 1 (on worker w1) and build 2 (no worker)."""
    api = DataAPI(storage)
    for rtype in (masters.Masters(), projects.Projects(), builders.Builders(), builds.Builds(),
                  steps.Steps(), logs.Logs(), logs.LogChunks()):
        api.add_resource_type(rtype)
    builderid = await api.updates.update_builder("hello")
    await storage.execute(sa.insert(schema.buildsets).values(submitted_at=1, reason="test"))
    await storage.execute(sa.insert(schema.buildrequests).values(buildsetid=1, builderid=builderid, submitted_at=1))
    await storage.execute(sa.insert(schema.workers).values(name="w1"))
    assert await api.updates.add_build(builderid, 1, 1, None) == (1, 1)
    assert await api.updates.add_build(builderid, 1, None, None) == (2, 2)
    yield api


@pytest_twisted.async_yield_fixture()
async def api(data: DataAPI) -> AsyncIterator[Api]:
    async with serve(data, in_memory=True) as served:
        yield served


def record(data: DataAPI, *patterns: str) -> list[tuple[str, dict[str, Any]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    for pattern in patterns:
        data.events.subscribe(pattern, lambda key, entity: seen.append(("/".join(key), dict(entity))))
    return seen


def stdio_lines(first: int, count: int, stream: str = "o") -> str:
    return "".join(f"{stream}line {n}\n" for n in range(first, first + count))


async def contents(data: DataAPI, path: str, **query: Any) -> dict[str, Any] | None:
    return await data.get(path, query={k: [str(v)] for k, v in query.items()})


async def chunk_rows(data: DataAPI, logid: int) -> list[dict[str, Any]]:
    lc = schema.logchunks
    return await data.storage.fetch_all(
        sa.select(lc.c.first_line, lc.c.last_line, lc.c.content, lc.c.compressed)
        .where(lc.c.logid == logid).order_by(lc.c.first_line)
    )


# -- steps -------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_step_numbers_from_zero_and_unique_names(data: DataAPI) -> None:
    add = data.updates.add_step
    assert await add(1, "compile") == (1, 0, "compile")
    assert await add(1, "test") == (2, 1, "test")
    assert await add(1, "compile") == (3, 2, "compile_2")
    assert await add(1, "compile") == (4, 3, "compile_3")
    assert await add(2, "compile") == (5, 0, "compile")  # numbers and names are per build
    step = await data.get("steps/3")
    assert step == {
        "stepid": 3, "number": 2, "name": "compile_2", "buildid": 1, "started_at": None,
        "locks_acquired_at": None, "complete": False, "complete_at": None, "state_string": "pending",
        "results": None, "urls": [], "hidden": False,
    }
    long_name = "x" * 255
    assert (await add(2, long_name))[2] == long_name
    assert (await add(2, long_name))[2] == "x" * 253 + "_2"  # still fits the column


@pytest_twisted.ensureDeferred
async def test_step_lifecycle_and_events(data: DataAPI) -> None:
    seen = record(data, "builds/*/steps/*/*", "steps/*/*")
    stepid, _, _ = await data.updates.add_step(1, "compile")
    await data.updates.start_step(stepid)
    started = await data.get(f"steps/{stepid}")
    assert started["started_at"] is not None and started["locks_acquired_at"] is None
    await data.updates.set_step_locks_acquired(stepid)
    await data.updates.set_step_state_string(stepid, "compiling")
    await data.updates.add_step_url(stepid, "report", "http://example.org/r")
    await data.updates.add_step_url(stepid, "report", "http://example.org/r")  # already there: no change
    await data.updates.add_step_url(stepid, "coverage", "http://example.org/c")
    await data.updates.finish_step(stepid, 2, hidden=True)
    await data.updates.finish_step(stepid, 0)  # finished already: ignored
    events = ["new", "started", "updated", "updated", "updated", "updated", "finished"]
    assert [key for key, _ in seen] == [
        key for event in events for key in (f"builds/1/steps/{stepid}/{event}", f"steps/{stepid}/{event}")
    ]
    final = seen[-1][1]
    assert final["complete"] is True and final["results"] == 2 and final["hidden"] is True
    assert final["state_string"] == "compiling" and final["locks_acquired_at"] is not None
    assert final["urls"] == [
        {"name": "report", "url": "http://example.org/r"}, {"name": "coverage", "url": "http://example.org/c"},
    ]
    assert final == await data.get(f"steps/{stepid}")
    other, _, _ = await data.updates.add_step(1, "test")
    await data.updates.start_step(other, locks_acquired=True)
    started = await data.get(f"steps/{other}")
    assert started["locks_acquired_at"] == started["started_at"] is not None
    for call in (data.updates.add_step(99, "x"), data.updates.start_step(99), data.updates.finish_step(99, 0),
                 data.updates.add_step_url(99, "a", "b"), data.updates.set_step_state_string(99, "x")):
        with pytest.raises(NotFound):
            await call


@pytest_twisted.ensureDeferred
async def test_step_endpoints(api: Api) -> None:
    data = api.data
    for name in ("compile", "test", "upload"):
        await data.updates.add_step(1, name)
    await data.updates.add_step(2, "compile")
    await data.updates.finish_step(1, 0)
    single = {
        "/steps/2": 2,
        "/builds/1/steps/1": 2, "/builds/1/steps/test": 2, "/builds/2/steps/compile": 4,
        "/builders/1/builds/1/steps/2": 3, "/builders/1/builds/1/steps/upload": 3,
        "/builders/hello/builds/2/steps/0": 4, "/builders/hello/builds/1/steps/compile": 1,
    }
    for path, stepid in single.items():
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 200 and [s["stepid"] for s in body["steps"]] == [stepid] and body["meta"] == {}, path
    collections = {
        "/builds/1/steps": [1, 2, 3], "/builders/1/builds/1/steps": [1, 2, 3],
        "/builders/hello/builds/2/steps": [4], "/builds/1/steps?complete=false&order=-number": [3, 2],
        "/builds/1/steps?complete=true": [1], "/builders/1/builds/1/steps?name__contains=o&field=stepid": [1, 3],
    }
    for path, stepids in collections.items():
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 200 and [s["stepid"] for s in body["steps"]] == stepids, path
        assert body["meta"]["total"] == len(stepids)
    code, body, _ = await api.get("/api/v2/builders/1/builds/1/steps?field=stepid")
    assert body["steps"] == [{"stepid": 1}, {"stepid": 2}, {"stepid": 3}]
    for path in ("/steps/99", "/builds/1/steps/nosuch", "/builds/1/steps/7", "/builds/9/steps",
                 "/builders/hello/builds/9/steps", "/builders/nosuch/builds/1/steps/0", "/builders/2/builds/1/steps"):
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 404 and "error" in body, path


# -- logs --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_log_slugs_cycle_and_events(data: DataAPI) -> None:
    stepid, _, _ = await data.updates.add_step(1, "compile")
    seen = record(data, "logs/*/*", "steps/*/logs/*/*")
    slugs = {}
    for name in ("stdio", "stdio", "my log!", "1st", "stdio"):
        logid = await data.updates.add_log(stepid, name, STDIO)
        slugs[logid] = (await data.get(f"logs/{logid}"))["slug"]
    assert list(slugs.values()) == ["stdio", "stdio_2", "my_log_", "_1st", "stdio_3"]
    assert await data.updates.append_log(1, "ohello\n") == (0, 0)
    assert await data.updates.append_log(1, "oa\neb\nhc\n") == (1, 3)
    await data.updates.finish_log(1)
    await data.updates.finish_log(1)  # once only
    assert await data.get("logs/1") == {
        "logid": 1, "name": "stdio", "slug": "stdio", "stepid": stepid, "complete": True, "num_lines": 4, "type": "s",
    }
    log1 = [(key, entity["num_lines"]) for key, entity in seen if key.startswith(("logs/1/", "steps/1/logs/stdio/"))]
    assert log1 == [
        ("logs/1/new", 0), ("steps/1/logs/stdio/new", 0), ("logs/1/append", 1), ("steps/1/logs/stdio/append", 1),
        ("logs/1/append", 4), ("steps/1/logs/stdio/append", 4), ("logs/1/finished", 4),
        ("steps/1/logs/stdio/finished", 4),
    ]
    assert len(seen) == len(log1) + 2 * 4  # four more logs, each one "new" under two keys
    with pytest.raises(Conflict):
        await data.updates.append_log(1, "olate\n")
    for bad in ("no newline", ""):
        with pytest.raises(ValueError):
            await data.updates.append_log(2, bad)
    with pytest.raises(ValueError):
        await data.updates.add_log(stepid, "x", "z")
    with pytest.raises(NotFound):
        await data.updates.add_log(99, "stdio", STDIO)
    with pytest.raises(NotFound):
        await data.updates.append_log(99, "x\n")
    with pytest.raises(NotFound):
        await data.updates.finish_log(99)
    assert (await data.get("logs/1"))["num_lines"] == 4  # refused appends changed nothing
    assert (await data.get("logs/2"))["num_lines"] == 0


@pytest_twisted.ensureDeferred
async def test_log_endpoints(api: Api) -> None:
    data = api.data
    await data.updates.add_step(1, "setup")
    stepid, _, _ = await data.updates.add_step(1, "compile")  # number 1
    await data.updates.add_log(stepid, "stdio", STDIO)
    await data.updates.add_log(stepid, "warnings", TEXT)
    other, _, _ = await data.updates.add_step(2, "compile")
    await data.updates.add_log(other, "stdio", STDIO)
    collections = {
        f"/steps/{stepid}/logs": [1, 2], "/builds/1/steps/1/logs": [1, 2], "/builds/1/steps/compile/logs": [1, 2],
        "/builders/1/builds/1/steps/1/logs": [1, 2], "/builders/1/builds/2/steps/compile/logs": [3],
        "/builders/hello/builds/1/steps/1/logs?type=t": [2], "/builders/hello/builds/1/steps/compile/logs": [1, 2],
        "/builds/1/steps/0/logs": [],
    }
    for path, logids in collections.items():
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 200 and [log["logid"] for log in body["logs"]] == logids, path
        assert body["meta"]["total"] == len(logids)
    single = {
        "/logs/2": 2, f"/steps/{stepid}/logs/warnings": 2, "/builds/1/steps/1/logs/stdio": 1,
        "/builds/2/steps/compile/logs/stdio": 3, "/builders/1/builds/1/steps/1/logs/warnings": 2,
        "/builders/1/builds/1/steps/compile/logs/stdio": 1, "/builders/hello/builds/2/steps/0/logs/stdio": 3,
        "/builders/hello/builds/1/steps/compile/logs/warnings": 2,
    }
    for path, logid in single.items():
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 200 and [log["logid"] for log in body["logs"]] == [logid], path
    code, body, _ = await api.get("/api/v2/logs/1")
    assert body["logs"] == [
        {"logid": 1, "name": "stdio", "slug": "stdio", "stepid": stepid, "complete": False, "num_lines": 0, "type": "s"}
    ]
    for path in ("/logs/99", f"/steps/{stepid}/logs/nosuch", "/steps/99/logs", "/builds/1/steps/5/logs",
                 "/builders/hello/builds/1/steps/nosuch/logs/stdio", "/builders/1/builds/3/steps/0/logs"):
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 404 and "error" in body, path


# -- chunks and contents -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_appends_are_split_into_bounded_chunks(data: DataAPI) -> None:
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    assert await data.updates.append_log(logid, stdio_lines(0, 2500)) == (0, 2499)
    rows = await chunk_rows(data, logid)
    assert [(r["first_line"], r["last_line"]) for r in rows] == [(0, 999), (1000, 1999), (2000, 2499)]
    wide = "".join(f"o{n:05d}" + "x" * 93 + "\n" for n in range(2000))  # 100-byte lines, 200 kB
    assert await data.updates.append_log(logid, wide) == (2500, 4499)
    rows = await chunk_rows(data, logid)
    assert all(len(r["content"]) <= MAX_CHUNK_BYTES for r in rows) and len(rows) > 5
    assert all(r["last_line"] - r["first_line"] < MAX_CHUNK_LINES for r in rows)
    assert [r["first_line"] for r in rows[1:]] == [r["last_line"] + 1 for r in rows[:-1]]
    # one line longer than a chunk is cut at a character boundary; the lines around it are whole
    huge = "o" + "é" * 40000 + "\n"
    assert await data.updates.append_log(logid, "obefore\n" + huge + "oafter\n") == (4500, 4502)
    assert (await data.get(f"logs/{logid}"))["num_lines"] == 4503
    chunk = await contents(data, f"logs/{logid}/contents", offset=4500, limit=3)
    lines = chunk["content"].split("\n")
    assert lines[0] == "obefore" and lines[2] == "oafter" and lines[3] == ""
    assert lines[1].startswith("oéé") and set(lines[1][1:]) == {"é"} and len(lines[1].encode()) < MAX_CHUNK_BYTES
    full = (await data.get(f"logs/{logid}/contents"))["content"]
    assert full.startswith(stdio_lines(0, 2500) + wide) and full.count("\n") == 4503


async def _range_checks(data: DataAPI, logid: int, expected: list[str]) -> None:
    """Check many line ranges of log *logid* against the *expected* lines."""
    total = len(expected)
    path = f"logs/{logid}/contents"
    assert await contents(data, path) == {"logid": logid, "firstline": 0, "content": "".join(expected)}
    for offset, limit in ((0, 1), (0, 5), (998, 4), (999, 2), (1000, 1), (1499, 3), (1500, 7), (1503, 20),
                          (total - 2, 10), (total - 1, 1), (500, 1000), (1, total)):
        chunk = await contents(data, path, offset=offset, limit=limit)
        assert chunk == {"logid": logid, "firstline": offset, "content": "".join(expected[offset:offset + limit])}, (
            offset, limit)
    assert await contents(data, path, offset=1498) == {
        "logid": logid, "firstline": 1498, "content": "".join(expected[1498:])
    }
    assert await contents(data, path, offset=total + 100, limit=5) == {
        "logid": logid, "firstline": total + 100, "content": ""
    }
    assert (await contents(data, path, offset=3, limit=0))["content"] == ""


@pytest_twisted.ensureDeferred
async def test_contents_line_ranges_plain_and_compressed(data: DataAPI) -> None:
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    await data.updates.append_log(logid, stdio_lines(0, 1500))  # chunks 0-999, 1000-1499
    for n in range(10):  # ten small chunks of 3 lines
        await data.updates.append_log(logid, stdio_lines(1500 + 3 * n, 3, "e"))
    expected = (stdio_lines(0, 1500) + "".join(stdio_lines(1500 + 3 * n, 3, "e") for n in range(10))).splitlines(True)
    await _range_checks(data, logid, expected)
    saved = await data.updates.compress_log(logid)
    rows = await chunk_rows(data, logid)
    assert saved == 12 - len(rows) and len(rows) < 12
    assert [(r["first_line"], r["last_line"]) for r in rows][-1] == (1000, 1529)  # small chunks merged
    assert all(r["compressed"] == 1 for r in rows)
    assert zlib.decompress(bytes(rows[0]["content"])).decode() == "".join(expected[:1000])
    await _range_checks(data, logid, expected)
    assert await data.updates.compress_log(logid) == 0  # nothing left to do
    # lines appended after compression: ranges span compressed and plain chunks
    await data.updates.append_log(logid, "hdone\n")
    assert (await contents(data, f"logs/{logid}/contents", offset=1528, limit=5))["content"] == (
        expected[1528] + expected[1529] + "hdone\n"
    )
    await _range_checks(data, logid, [*expected, "hdone\n"])
    for query in ({"offset": ["-1"]}, {"limit": ["x"]}, {"offset": ["1", "2"]}, {"order": ["logid"]}):
        with pytest.raises(InvalidQuery):
            await data.get(f"logs/{logid}/contents", query=query)
    assert await data.get(f"logs/{logid}/contents", query={"field": ["firstline"], "offset": ["4"]}) == {"firstline": 4}


@pytest_twisted.ensureDeferred
async def test_contents_reads_only_the_chunks_of_the_range(data: DataAPI) -> None:
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    for n in range(5):
        await data.updates.append_log(logid, stdio_lines(10 * n, 10))
    # spoil chunk 20..29: any read touching it fails, so reads that succeed never read it
    lc = schema.logchunks
    await data.storage.execute(
        sa.update(lc).where(lc.c.logid == logid, lc.c.first_line == 20).values(content=b"not zlib", compressed=1)
    )
    path = f"logs/{logid}/contents"
    assert (await contents(data, path, offset=0, limit=20))["content"] == stdio_lines(0, 20)
    assert (await contents(data, path, offset=30, limit=20))["content"] == stdio_lines(30, 20)
    assert (await contents(data, path, offset=45))["content"] == stdio_lines(45, 5)
    for offset, limit in ((19, 2), (29, 1), (0, 50)):
        with pytest.raises(zlib.error):
            await contents(data, path, offset=offset, limit=limit)


@pytest_twisted.ensureDeferred
async def test_contents_endpoints(api: Api) -> None:
    data = api.data
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    empty = await data.updates.add_log(stepid, "empty", TEXT)
    await data.updates.append_log(logid, stdio_lines(0, 12))
    expected = {"logchunks": [{"logid": logid, "firstline": 1, "content": stdio_lines(1, 2)}], "meta": {}}
    for path in (f"/logs/{logid}", f"/steps/{stepid}/logs/stdio", "/builds/1/steps/0/logs/stdio",
                 "/builds/1/steps/compile/logs/stdio", "/builders/1/builds/1/steps/0/logs/stdio",
                 "/builders/1/builds/1/steps/compile/logs/stdio", "/builders/hello/builds/1/steps/0/logs/stdio",
                 "/builders/hello/builds/1/steps/compile/logs/stdio"):
        code, body, _ = await api.get(f"/api/v2{path}/contents?offset=1&limit=2")
        assert (code, body) == (200, expected), path
    code, body, _ = await api.get(f"/api/v2/logs/{logid}/contents")
    assert code == 200 and body["logchunks"][0]["content"] == stdio_lines(0, 12)
    code, body, _ = await api.get(f"/api/v2/logs/{empty}/contents")
    assert code == 200 and body == {"logchunks": [{"logid": empty, "firstline": 0, "content": ""}], "meta": {}}
    code, body, _ = await api.get(f"/api/v2/logs/{logid}/contents?offset=-3")
    assert code == 400 and "offset" in body["error"]
    code, body, _ = await api.get(f"/api/v2/logs/{logid}/contents?content=x")
    assert code == 400
    for path in ("/logs/99/contents", f"/steps/{stepid}/logs/nosuch/contents?offset=0&limit=5",
                 "/builds/1/steps/3/logs/stdio/contents", "/builders/hello/builds/7/steps/0/logs/stdio/contents"):
        code, body, _ = await api.get("/api/v2" + path)
        assert code == 404 and "error" in body, path


# -- raw ---------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_raw_and_raw_inline_over_http(api: Api) -> None:
    data = api.data
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    await data.updates.append_log(logid, stdio_lines(0, 1500))
    for n in range(60):  # more chunks than one page of the raw stream
        await data.updates.append_log(logid, stdio_lines(1500 + 2 * n, 1, "e") + stdio_lines(1501 + 2 * n, 1, "h"))
    await data.updates.append_log(logid, "o\noünïcode ✓\n")
    await data.updates.finish_log(logid)
    assert len(await chunk_rows(data, logid)) == 63
    plain = "".join(f"line {n}\n" for n in range(1620)) + "\nünïcode ✓\n"
    expected = ("Builder: hello\nBuild number: 1\nWorker name: w1\n" + plain).encode()

    code, body, response = await api.get_raw(f"/api/v2/logs/{logid}/raw")
    assert code == 200 and body == expected
    headers = response.headers
    assert headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    disposition = headers.getRawHeaders("content-disposition")[0]
    name = "hello_build_1_step_compile_log_stdio"
    assert disposition == f"attachment; filename=\"{name}\"; filename*=UTF-8''{name}"
    code, inline, response = await api.get_raw(f"/api/v2/logs/{logid}/raw_inline")
    assert code == 200 and inline == expected
    assert response.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert not response.headers.hasHeader("content-disposition")
    for path in (f"/steps/{stepid}/logs/stdio/raw", "/builds/1/steps/0/logs/stdio/raw_inline",
                 "/builders/hello/builds/1/steps/compile/logs/stdio/raw",
                 "/builders/1/builds/1/steps/0/logs/stdio/raw_inline"):
        code, body, _ = await api.get_raw("/api/v2" + path)
        assert (code, body) == (200, expected), path

    await data.updates.compress_log(logid)
    assert len(await chunk_rows(data, logid)) < 63
    code, body, _ = await api.get_raw(f"/api/v2/logs/{logid}/raw")
    assert (code, body) == (200, expected)

    # a text log keeps its lines as they are, with no header; html is served as html
    text = await data.updates.add_log(stepid, "summary", TEXT)
    await data.updates.append_log(text, "one\ntwo\n")
    code, body, response = await api.get_raw(f"/api/v2/logs/{text}/raw")
    assert (code, body) == (200, b"one\ntwo\n")
    assert "hello_build_1_step_compile_log_summary" in response.headers.getRawHeaders("content-disposition")[0]
    html = await data.updates.add_log(stepid, "report", HTML)
    await data.updates.append_log(html, "<p>hi</p>\n")
    code, body, response = await api.get_raw(f"/api/v2/logs/{html}/raw_inline")
    assert (code, body) == (200, b"<p>hi</p>\n")
    assert response.headers.getRawHeaders("content-type") == ["text/html; charset=utf-8"]

    # a build with no worker has no worker line
    other, _, _ = await data.updates.add_step(2, "test")
    nowork = await data.updates.add_log(other, "stdio", STDIO)
    await data.updates.append_log(nowork, "oyes\n")
    code, body, response = await api.get_raw(f"/api/v2/logs/{nowork}/raw")
    assert (code, body) == (200, b"Builder: hello\nBuild number: 2\nyes\n")
    assert "hello_build_2_step_test_log_stdio" in response.headers.getRawHeaders("content-disposition")[0]

    for path in ("/logs/99/raw", "/logs/99/raw_inline", f"/steps/{stepid}/logs/nosuch/raw",
                 "/builds/1/steps/9/logs/stdio/raw_inline", "/builders/nosuch/builds/1/steps/0/logs/stdio/raw"):
        code, body, response = await api.get("/api/v2" + path)
        assert code == 404 and "error" in body, path
        assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    code, body, _ = await api.get(f"/api/v2/logs/{logid}/raw?offset=2")
    assert code == 400


@pytest_twisted.ensureDeferred
async def test_raw_stream_survives_compression_between_pages(data: DataAPI) -> None:
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    for n in range(12):
        await data.updates.append_log(logid, stdio_lines(3 * n, 3))
    stream = iter_chunks(data, logid, page=4)
    parts = [await stream.__anext__() for _ in range(5)]  # one page and one chunk of the next
    assert await data.updates.compress_log(logid) == 11  # all twelve chunks became one
    parts += [part async for part in stream]
    assert b"".join(parts) == stdio_lines(0, 36).encode()


@pytest_twisted.ensureDeferred
async def test_compress_log_twice_at_once_and_small_logs(data: DataAPI) -> None:
    stepid, _, _ = await data.updates.add_step(1, "compile")
    logid = await data.updates.add_log(stepid, "stdio", STDIO)
    for n in range(12):
        await data.updates.append_log(logid, stdio_lines(3 * n, 3))
    both = await defer.gatherResults([
        defer.ensureDeferred(data.updates.compress_log(logid)), defer.ensureDeferred(data.updates.compress_log(logid)),
    ])
    assert sum(both) == 11 and len(await chunk_rows(data, logid)) == 1
    assert (await contents(data, f"logs/{logid}/contents"))["content"] == stdio_lines(0, 36)
    tiny = await data.updates.add_log(stepid, "tiny", TEXT)
    await data.updates.append_log(tiny, "x\n")
    assert await data.updates.compress_log(tiny) == 0  # zlib would only make it bigger
    assert [(bytes(r["content"]), r["compressed"]) for r in await chunk_rows(data, tiny)] == [(b"x\n", 0)]
