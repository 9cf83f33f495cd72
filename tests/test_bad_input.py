"""Hostile input through real HTTP on both backends: integers beyond 64 bits and NUL characters.

Every answer is a JSON 400 (or 404 for a path naming what cannot exist) with a message
naming the parameter, never a 500, whatever the backend.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from apiclient import Api, serve

from master.data.base import Action, Param
from master.data.connector import DataAPI, check_params
from master.data.errors import InvalidParams
from master.data.resources import core_resource_types
from master.data.types import String
from master.db import schema

BIG = str(10**20)
JUST_OVER = str(2**63)


@pytest_twisted.async_yield_fixture()
async def api(storage: Any) -> AsyncIterator[Api]:
    """A builder with one build, one step and one log of three lines, and one build request."""
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    builderid = await data.updates.update_builder("a", description="builder a", tags=[])
    await storage.execute(sa.insert(schema.buildsets).values(submitted_at=1, reason="test"))
    await storage.execute(sa.insert(schema.buildrequests).values(buildsetid=1, builderid=builderid, submitted_at=1))
    buildid, _ = await data.updates.add_build(builderid, 1, None, None)
    stepid, _, _ = await data.updates.add_step(buildid, "compile")
    logid = await data.updates.add_log(stepid, "stdio", "s")
    await data.updates.append_log(logid, "one\ntwo\nthree\n")
    async with serve(data, in_memory=True) as served:
        yield served


async def _get(api: Api, path: str) -> tuple[int, Any]:
    code, raw, response = await api.get_raw(path)
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"], raw[:200]
    return code, json.loads(raw)


@pytest.mark.parametrize(("path", "status", "words"), [
    (f"/api/v2/builds/{BIG}", 404, "invalid path"),
    (f"/api/v2/builds/{JUST_OVER}", 404, "invalid path"),
    (f"/api/v2/builders/{BIG}/builds", 404, "invalid path"),
    (f"/api/v2/logs/{BIG}/contents", 404, "invalid path"),
    (f"/api/v2/builds?buildid={BIG}", 400, "'buildid'"),
    (f"/api/v2/builds?buildid={JUST_OVER}", 400, "out of range"),
    (f"/api/v2/builds?buildid=-{JUST_OVER}1", 400, "out of range"),
    (f"/api/v2/builds?buildid__gt={BIG}", 400, "'buildid__gt'"),
    (f"/api/v2/builds?buildid__in=1,{BIG}", 400, "'buildid__in'"),
    (f"/api/v2/builds?offset={BIG}", 400, "offset"),
    (f"/api/v2/builds?limit={BIG}", 400, "limit"),
    (f"/api/v2/logs/1/contents?offset={BIG}", 400, "offset"),
    (f"/api/v2/logs/1/contents?limit={BIG}", 400, "limit"),
    ("/api/v2/builders?name=a%00b", 400, "'name': must not contain a NUL"),
    ("/api/v2/builders?name__contains=a%00b", 400, "'name__contains'"),
    ("/api/v2/builders?name__in=a,b%00", 400, "NUL"),
    ("/api/v2/builders/a%00b", 404, "invalid path"),
])
@pytest_twisted.ensureDeferred
async def test_out_of_range_and_nul_in_reads(api: Api, path: str, status: int, words: str) -> None:
    code, body = await _get(api, path)
    assert code == status and words in body["error"], body


@pytest_twisted.ensureDeferred
async def test_largest_offsets_still_answer(api: Api) -> None:
    """The largest 64-bit offset and limit are valid: an empty page or an empty range, not an overflow."""
    top = str(2**63 - 1)
    code, body = await _get(api, f"/api/v2/builds?offset={top}")
    assert code == 200 and body["builds"] == [] and body["meta"]["total"] == 1
    code, body = await _get(api, f"/api/v2/logs/1/contents?offset={top}&limit={top}")
    assert code == 200 and body["logchunks"][0]["content"] == ""
    code, body = await _get(api, "/api/v2/logs/1/contents?offset=1&limit=" + top)
    assert code == 200 and body["logchunks"][0]["content"] == "two\nthree\n"


def _rpc(method: str, params: dict[str, Any], request_id: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()


@pytest.mark.parametrize(("path", "body", "status", "field", "words"), [
    ("/api/v2/buildrequests/1", _rpc("set_priority", {"priority": 2**63}), 400, "priority", "out of range"),
    ("/api/v2/buildrequests/1", _rpc("set_priority", {"priority": str(10**20)}), 400, "priority", "out of range"),
    ("/api/v2/changes", _rpc("add", {"author": "a\u0000b", "files": []}), 400, "author", "NUL"),
    ("/api/v2/changes", _rpc("add", {"author": "a", "comments": "x\u0000"}), 400, "comments", "NUL"),
    ("/api/v2/changes", _rpc("add", {"author": "a", "files": ["ok", "b\u0000"]}), 400, "files", "NUL"),
    ("/api/v2/changes", _rpc("add", {"author": "a", "when_timestamp": 2**63}), 400, "when_timestamp", "range"),
])
@pytest_twisted.ensureDeferred
async def test_out_of_range_and_nul_in_params(
    api: Api, path: str, body: bytes, status: int, field: str, words: str
) -> None:
    code, answer = await api.rpc(path, body)
    assert code == status, answer
    assert answer["error"]["code"] == -32602 and words in answer["error"]["data"][field], answer
    # nothing was stored
    assert (await _get(api, "/api/v2/changes"))[1]["meta"]["total"] == 0


@pytest_twisted.ensureDeferred
async def test_json_objects_hold_what_json_holds(api: Api) -> None:
    """A declared JSON object is stored as JSON text: NUL characters and unsigned 64-bit integers in it are
    kept alike on both backends (they are escaped text there), not refused."""
    properties = {"k": ["a\u0000b", {"n": 2**64 - 1}]}
    code, answer = await api.rpc("/api/v2/changes", _rpc("add", {"author": "a", "properties": properties}))
    assert code == 200, answer
    code, body = await _get(api, f"/api/v2/changes/{answer['result']['changeid']}")
    assert body["changes"][0]["properties"] == {"k": [["a\u0000b", {"n": 2**64 - 1}], "Change"]}


def test_free_form_parameters_hold_no_nul() -> None:
    """Parameters of no declared type (a force scheduler's own fields) may end up in text columns and commands."""
    action = Action("force", None, {"reason": Param(String())}, open_params=True)
    assert check_params(action, {"reason": "r", "greeting": {"a": [1, "x"]}})["greeting"] == {"a": [1, "x"]}
    for params, name in (({"greeting": "a\u0000b"}, "greeting"), ({"greeting": {"k": ["\u0000"]}}, "greeting"),
                         ({"a\u0000": 1}, "a\u0000"), ({"reason": "\u0000"}, "reason")):
        with pytest.raises(InvalidParams) as raised:
            check_params(action, params)
        assert "NUL" in raised.value.errors[name], raised.value.errors


@pytest_twisted.ensureDeferred
async def test_jsonrpc_ids_and_paths_beyond_64_bits(api: Api) -> None:
    code, answer = await api.rpc("/api/v2/buildrequests/1", _rpc("set_priority", {"priority": 1}, 2**63))
    assert code == 400 and answer["error"]["code"] == -32600 and "64-bit" in answer["error"]["message"]
    code, answer = await api.rpc(f"/api/v2/buildrequests/{BIG}", _rpc("set_priority", {"priority": 1}))
    assert code == 404 and answer["error"]["code"] == -32600
    code, answer = await api.rpc("/api/v2/buildrequests/1", _rpc("set_priority", {"priority": 1}, 2**63 - 1))
    assert code == 200 and answer["id"] == 2**63 - 1
