"""The plugin SDK: the template plugin's own routes, and the one error mapping every JsonApi answers with."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import Api, serve
from notes_plugin import NotesPlugin
from notes_plugin import metadata as notes_metadata
from twisted.logger import globalLogPublisher
from twisted.web.iweb import IRequest

from master import sdk
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.www.auth import Auth, Authenticator, ControlRule, UserStore
from master.www.rest import RestApi
from master.www.site import build_site

MAX_BODY = 4096


class Faulty(sdk.JsonApi):
    """Routes that fail in each way the mapping knows, with Evergreen's error shape."""

    app = sdk.JsonApi.klein()

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "code": status}

    @app.route("/<kind>", methods=["GET"])
    @sdk.handler
    async def fail(self, request: IRequest, kind: str) -> Any:
        if kind == "query":
            raise sdk.InvalidQuery("unknown field 'colour'", "colour")
        if kind == "missing":
            raise sdk.NotFound("no widget 7")
        if kind == "forbidden":
            raise sdk.AuthError(403, "user 'ann' may not read widgets")
        if kind == "teapot":
            raise sdk.HttpError(418, {"whole": "body"}, {"X-Kind": "teapot"})
        if kind == "raw":
            return sdk.Response(b"\x00raw", 200, {"Content-Type": "application/octet-stream"})
        raise RuntimeError("secret detail of a bug")


@pytest_twisted.async_yield_fixture()
async def served(storage: Any, migrated_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    migrate.create_plugin_tables(migrated_url, [notes_metadata])
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    plugin = NotesPlugin()
    data.add_plugin(plugin)
    await data.updates.add_note("first", 1)
    mounts = {"api": RestApi(data).resource(), **plugin.web_resources(data), "faulty": Faulty(data).resource()}
    site = build_site(mounts, max_body_bytes=MAX_BODY)
    async with serve(data, site) as api:
        yield api


async def _request(api: Api, method: str, path: str, body: bytes | None = None, **kw: Any) -> tuple[int, Any, Any]:
    response = await treq.request(method, api.url + path, data=body, pool=api.pool, **kw)
    raw = await response.content()
    return response.code, json.loads(raw) if raw else None, response


@pytest_twisted.ensureDeferred
async def test_the_template_plugin_serves_its_own_routes(served: Api) -> None:
    code, body, _ = await _request(served, "GET", "/notes/1")
    assert code == 200 and body["note"]["text"] == "first" and body["note"]["rank"] == 1
    code, body, _ = await _request(served, "POST", "/notes", b'{"text": "second", "rank": 2}')
    assert code == 201 and body == {"noteid": 2}
    code, body, _ = await served.get("/api/v2/notes/2")
    assert body["notes"][0]["text"] == "second"
    # the resource type's action, by JSON-RPC, refuses a no-op with the data API's Conflict
    assert (await served.call("/api/v2/notes/2", "pin", pinned=True))["pinned"] is True
    code, body = await served.rpc("/api/v2/notes/2", {"jsonrpc": "2.0", "id": 1, "method": "pin",
                                                     "params": {"pinned": True}})
    assert "already pinned" in body["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_the_template_answers_bad_requests_in_its_shape(served: Api) -> None:
    assert (await _request(served, "GET", "/notes/99"))[:2] == (404, {"error": "no note 99"})
    code, body, _ = await _request(served, "GET", "/notes/abc")
    assert code == 404 and body == {"error": "no such path: /notes/abc"}
    code, body, response = await _request(served, "DELETE", "/notes/1")
    assert code == 405 and "use GET" in body["error"] and b"GET" in response.headers.getRawHeaders(b"allow")[0]
    code, body, _ = await _request(served, "POST", "/notes", b"{not json")
    assert code == 400 and body["error"].startswith("the body is not JSON")
    code, body, _ = await _request(served, "POST", "/notes", b"[1, 2]")
    assert code == 400 and body == {"error": "the body must be a JSON object, not list"}
    code, body, _ = await _request(served, "POST", "/notes", b'{"text": "x", "rank": "high"}')
    assert code == 400 and "rank (an integer)" in body["error"]
    code, body, _ = await _request(served, "POST", "/notes", b'{"text": "' + b"x" * MAX_BODY + b'"}')
    assert code == 413 and str(MAX_BODY) in body["error"]
    assert (await served.get("/api/v2/notes"))[1]["meta"]["total"] == 1  # nothing was added


@pytest_twisted.ensureDeferred
async def test_the_context_gives_the_masters_auth_policy(served: Api, tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add_user("ann", "annpw", ["dev"])
    store.add_user("root", "rootpw", ["admin"])
    served.data.auth = Authenticator(Auth(rules=[ControlRule(roles=["admin"])]), tmp_path)
    code, body, response = await _request(served, "POST", "/notes", b'{"text": "t"}')
    assert code == 401 and body == {"error": "authentication required to call 'add' on notes"}
    code, body, _ = await _request(served, "POST", "/notes", b'{"text": "t"}', auth=("ann", "annpw"))
    assert code == 403 and body == {"error": "user 'ann' may not call 'add' on notes"}
    code, body, _ = await _request(served, "POST", "/notes", b'{"text": "t"}', auth=("ann", "wrong"))
    assert code == 401 and "wrong user name or password" in body["error"]
    code, body, _ = await _request(served, "POST", "/notes", b'{"text": "t"}', auth=("root", "rootpw"))
    assert code == 201


@pytest_twisted.ensureDeferred
async def test_one_error_mapping_with_the_apis_own_shape(served: Api) -> None:
    assert (await _request(served, "GET", "/faulty/query"))[:2] == (400, {"message": "unknown field 'colour'",
                                                                          "code": 400})
    assert (await _request(served, "GET", "/faulty/missing"))[:2] == (404, {"message": "no widget 7", "code": 404})
    assert (await _request(served, "GET", "/faulty/forbidden"))[:2] == (
        403, {"message": "user 'ann' may not read widgets", "code": 403})
    code, body, response = await _request(served, "GET", "/faulty/teapot")
    assert (code, body) == (418, {"whole": "body"}) and response.headers.getRawHeaders(b"x-kind") == [b"teapot"]
    response = await treq.get(served.url + "/faulty/raw", pool=served.pool)
    assert await response.content() == b"\x00raw"
    logged: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        code, body, response = await _request(served, "GET", "/faulty/bug")
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert code == 500 and body == {"message": "internal error (logged on the master)", "code": 500}
    assert response.headers.getRawHeaders(b"content-type") == [b"application/json; charset=utf-8"]
    failures = [event["log_failure"] for event in logged if "log_failure" in event]
    assert [str(failure.value) for failure in failures] == ["secret detail of a bug"]  # in the log, not the answer


def test_the_context_is_frozen_and_the_sdk_says_what_it_exports() -> None:
    ctx = sdk.PluginContext.of(DataAPI(None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.data = None  # type: ignore[misc]
    assert ctx.basedir == Path(".") and not ctx.auth.wired and not ctx.auth.enabled
    assert set(sdk.__all__) <= set(vars(sdk)) and "Plugin" in sdk.__all__ and "JsonApi" in sdk.__all__
