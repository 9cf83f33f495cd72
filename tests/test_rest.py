"""REST and JSON-RPC through a real HTTP client, on both backends: in memory, and on a real port for the main paths."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
import treq
from apiclient import Api, serve
from notes_plugin import NotesPlugin
from notes_plugin import metadata as notes_metadata
from tiers import ALSO_OVER_TCP, IN_MEMORY
from twisted.web import resource

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.data.resultspec import Limits
from master.db import migrate, schema
from master.www.rest import RestApi
from master.www.site import MountError, build_root, build_site


async def seed(data: DataAPI) -> None:
    """Three builders; builder a has 6 builds alternating results, b has 2, c none; three notes."""
    ids = {}
    for name, tags in (("a", ["linux", "fast"]), ("b", ["windows"]), ("c", [])):
        ids[name] = await data.updates.update_builder(name, description=f"builder {name}", tags=tags)
    storage = data.storage
    await storage.execute(sa.insert(schema.buildsets).values(submitted_at=1, reason="test"))
    for builderid in ids.values():
        await storage.execute(sa.insert(schema.buildrequests).values(buildsetid=1, builderid=builderid, submitted_at=1))
    for index in range(6):
        buildid, _ = await data.updates.add_build(ids["a"], 1, None, None, state_string=f"build a{index}")
        await data.updates.set_build_properties(buildid, {"branch": (f"br{index % 2}", "test")})
        if index < 4:
            await data.updates.finish_build(buildid, index % 3)
    for _ in range(2):
        buildid, _ = await data.updates.add_build(ids["b"], 2, None, None, state_string="100% done_here")
        await data.updates.finish_build(buildid, 0)
    for rank, text in ((3, "first"), (None, "second"), (1, "third")):
        await data.updates.add_note(text, rank)


@pytest_twisted.async_yield_fixture()
async def api(storage: Any, migrated_url: str, transport: str) -> AsyncIterator[Api]:
    migrate.create_plugin_tables(migrated_url, [notes_metadata])
    data = DataAPI(storage, Limits(default=5, maximum=7))
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    data.add_plugin(NotesPlugin())
    await seed(data)
    async with serve(data, in_memory=transport == IN_MEMORY) as api:
        yield api


def ids(body: dict, plural: str = "builds", key: str = "buildid") -> list[int]:
    return [item[key] for item in body[plural]]


# -- discovery ---------------------------------------------------------------------------------


@ALSO_OVER_TCP
@pytest_twisted.ensureDeferred
async def test_api_versions_and_root(api: Api) -> None:
    code, body, response = await api.get("/api")
    assert code == 200 and body["api_versions"]["v2"].endswith("/api/v2")
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    code, body, _ = await api.get("/api/v2", allow_redirects=False)
    assert code == 200  # served, not redirected to /api/v2/ (curl does not follow redirects)
    names = [link["name"] for link in body["rootlinks"]]
    assert "builds" in names and "builders" in names and "notes" in names
    assert body["meta"]["total"] == len(names)
    paths = {e["path"]: e for e in body["endpoints"]}
    assert "/builders/n:builderid/builds/n:number" in paths
    assert paths["/notes/n:noteid"]["actions"] == ["pin"]


@pytest_twisted.ensureDeferred
async def test_other_api_versions_mount_beside_v2(api: Api) -> None:
    """A plugin may serve /api/v1 and /rest/v1: nested prefixes mount under /api and under new parents."""
    site = build_site({"api": RestApi(api.data).resource(), "api/v1": _Text(b"one"), "rest/v1": _Text(b"rest")})
    async with serve(api.data, site, in_memory=True) as other:
        code, body, _ = await other.get("/api")
        assert code == 200 and sorted(body["api_versions"]) == ["v1", "v2"]
        assert (await other.get_raw("/api/v1"))[1] == b"one"
        assert (await other.get_raw("/rest/v1"))[1] == b"rest"
        code, body, _ = await other.get("/api/v3/builds")
        assert code == 404 and "/api/v3/builds" in body["error"]
        code, _, _ = await other.get("/api/v2/builds")
        assert code == 200
    with pytest.raises(MountError, match="taken"):
        build_root({"api": RestApi(api.data).resource(), "api/v2": _Text(b"again")})
    with pytest.raises(MountError, match="without children"):
        build_root({"leaf": _Text(b"x"), "leaf/v1": _Text(b"y")})


class _Text(resource.Resource):
    isLeaf = True

    def __init__(self, text: bytes) -> None:
        super().__init__()
        self.text = text

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        return self.text


@pytest_twisted.ensureDeferred
async def test_openapi_document(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/openapi.json")
    assert code == 200 and body["openapi"].startswith("3.")
    # /builders/n:builderid/... and /builders/i:buildername/... are one OpenAPI path, as OpenAPI requires
    both = body["paths"]["/builders/{builderid_or_buildername}/builds/{number}"]["get"]["parameters"][0]
    assert [s["type"] for s in both["schema"]["anyOf"]] == ["integer", "string"]
    assert "/builders/{builderid}/builds/{number}" not in body["paths"]
    assert "/builders/{buildername}/builds/{number}" not in body["paths"]
    post = body["paths"]["/notes/{noteid}"]["post"]
    variant = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"][0]
    assert variant["properties"]["params"]["required"] == ["pinned"]
    assert body["components"]["schemas"]["build"]["properties"]["results"]["nullable"] is True


# -- reading -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_plain_reads_skip_the_router_and_answer_as_routed_reads(api: Api, monkeypatch: Any) -> None:
    """A plain read (``builds/1``) is answered without Klein's router, exactly as the routed form
    (``builds/1/``, ``builds/%31``) is: status, body, ETag, Link; errors too."""
    from klein.resource import KleinResource

    routed: list[bytes] = []
    original = KleinResource.render

    def counting(self: Any, request: Any) -> Any:
        routed.append(request.path)
        return original(self, request)

    monkeypatch.setattr(KleinResource, "render", counting)
    pairs = [
        ("/api/v2/builds/1", "/api/v2/builds/%31"),
        ("/api/v2/builds?limit=2&order=-buildid", "/api/v2/builds/?limit=2&order=-buildid"),
        ("/api/v2/builds/999", "/api/v2/builds/999/"),
        ("/api/v2/nosuch/1", "/api/v2/nosuch/1/"),
        ("/api/v2/builds?bogus=1", "/api/v2/builds/?bogus=1"),
    ]
    for plain, other in pairs:
        routed.clear()
        code, body, response = await api.get(plain)
        assert routed == [], plain  # not through the router
        code2, body2, response2 = await api.get(other)
        assert routed, other  # through it
        assert (code, body) == (code2, body2), (plain, other)
        for header in ("ETag", "Content-Type", "Link"):
            assert response.headers.getRawHeaders(header) == response2.headers.getRawHeaders(header), header
    head = await treq.head(api.url + "/api/v2/builds/1", pool=api.pool)
    assert head.code == 200 and await head.content() == b""


@ALSO_OVER_TCP
@pytest_twisted.ensureDeferred
async def test_single_and_collection_envelopes(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/builds/1")
    assert code == 200 and body["meta"] == {} and len(body["builds"]) == 1
    build = body["builds"][0]
    assert build["buildid"] == 1 and build["number"] == 1 and build["complete"] is True
    assert build["properties"] == {}
    code, body, _ = await api.get("/api/v2/builders/1/builds/2")
    assert code == 200 and body["builds"][0]["buildid"] == 2
    code, body, _ = await api.get("/api/v2/builders/a/builds/3")
    assert code == 200 and body["builds"][0]["buildid"] == 3
    code, body, _ = await api.get("/api/v2/builders")
    assert code == 200 and body["meta"]["total"] == 3
    assert body["builders"][0] == {
        "builderid": 1, "name": "a", "description": "builder a", "description_format": None,
        "description_html": None, "projectid": None, "tags": ["fast", "linux"], "masterids": [],
    }


@pytest_twisted.ensureDeferred
async def test_default_and_maximum_limit_and_real_total(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/builds")
    assert code == 200 and len(body["builds"]) == 5 and body["meta"]["total"] == 8  # default limit 5
    code, body, _ = await api.get("/api/v2/builds?limit=7")
    assert len(body["builds"]) == 7 and body["meta"]["total"] == 8
    code, body, _ = await api.get("/api/v2/builds?limit=3&offset=6")
    assert ids(body) == [7, 8] and body["meta"]["total"] == 8
    code, body, _ = await api.get("/api/v2/builds?offset=20")
    assert body["builds"] == [] and body["meta"]["total"] == 8
    code, body, _ = await api.get("/api/v2/builds?limit=0")
    assert body["builds"] == [] and body["meta"]["total"] == 8
    code, body, _ = await api.get("/api/v2/builds?builderid=1&limit=2&offset=1&order=-number")
    assert [b["number"] for b in body["builds"]] == [5, 4] and body["meta"]["total"] == 6
    code, body, _ = await api.get("/api/v2/builds?limit=8")
    assert code == 400 and "limit" in body["error"] and "7" in body["error"]


@pytest_twisted.ensureDeferred
async def test_field_selection(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/builds?field=buildid&field=results&limit=2")
    assert body["builds"] == [{"buildid": 1, "results": 0}, {"buildid": 2, "results": 1}]
    code, body, _ = await api.get("/api/v2/builds/2?field=number,complete")
    assert body["builds"] == [{"number": 2, "complete": True}]
    code, body, _ = await api.get("/api/v2/builders?field=name&field=tags&name=a")
    assert body["builders"] == [{"name": "a", "tags": ["fast", "linux"]}]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("builderid=1", [1, 2, 3, 4, 5, 6]),
        ("builderid__eq=2", [7, 8]),
        ("results=0&results=2", [1, 3, 4, 7, 8]),
        ("results__ne=0", [2, 3, 5, 6]),
        ("results__ne=0&results__ne=1", [3, 5, 6]),
        ("number__lt=2", [1, 7]),
        ("number__le=2", [1, 2, 7, 8]),
        ("number__gt=4", [5, 6]),
        ("number__ge=4&builderid=1", [4, 5, 6]),
        ("results__in=1,2", [2, 3]),
        ("results__in=1&results__in=0", [1, 2, 4, 7, 8]),
        ("results__notin=0,1", [3, 5, 6]),
        ("state_string__contains=a1", [2]),
        ("state_string__contains=100%25", [7, 8]),
        ("state_string__contains=_h", [7, 8]),
        ("state_string__contains=A1", []),
        ("state_string__contains=a1&state_string__contains=a2", [2, 3]),
        ("complete=true", [1, 2, 3, 4, 7, 8]),
        ("complete=off", [5, 6]),
        ("complete=No", [5, 6]),
        ("complete=1&builderid=1", [1, 2, 3, 4]),
        ("complete__ne=yes", [5, 6]),
    ],
)
@pytest_twisted.ensureDeferred
async def test_filters(api: Api, query: str, expected: list[int]) -> None:
    code, body, _ = await api.get(f"/api/v2/builds?{query}&limit=7&order=buildid")
    assert code == 200, body
    assert ids(body) == expected
    assert body["meta"]["total"] == len(expected)


@pytest_twisted.ensureDeferred
async def test_filter_on_list_field_and_nested_collection(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/builders?tags__contains=linux")
    assert [b["name"] for b in body["builders"]] == ["a"]
    code, body, _ = await api.get("/api/v2/builders?tags=windows&tags=fast")
    assert [b["name"] for b in body["builders"]] == ["a", "b"]
    code, body, _ = await api.get("/api/v2/builders/2/builds")
    assert ids(body) == [7, 8] and body["meta"]["total"] == 2
    code, body, _ = await api.get("/api/v2/builders/3/builds")
    assert code == 200 and body == {"builds": [], "meta": {"total": 0}}


@pytest_twisted.ensureDeferred
async def test_ordering(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/builds?order=-buildid&limit=3")
    assert ids(body) == [8, 7, 6]
    code, body, _ = await api.get("/api/v2/builds?order=results&order=-number&limit=7")
    # nulls first ascending; ties broken by -number
    assert [(b["results"], b["number"]) for b in body["builds"]] == [
        (None, 6), (None, 5), (0, 4), (0, 2), (0, 1), (0, 1), (1, 2),
    ]
    code, body, _ = await api.get("/api/v2/builds?order=-results&limit=2")
    assert [b["results"] for b in body["builds"]] == [2, 1]
    code, body, _ = await api.get("/api/v2/notes?order=rank")
    assert [n["text"] for n in body["notes"]] == ["second", "third", "first"]
    code, body, _ = await api.get("/api/v2/notes?order=-rank")
    assert [n["text"] for n in body["notes"]] == ["first", "third", "second"]


@pytest_twisted.ensureDeferred
async def test_properties_option(api: Api) -> None:
    code, body, _ = await api.get("/api/v2/builds/2?property=branch")
    assert body["builds"][0]["properties"] == {"branch": ["br1", "test"]}
    code, body, _ = await api.get("/api/v2/builds?property=*&builderid=1&limit=2")
    assert [b["properties"] for b in body["builds"]] == [{"branch": ["br0", "test"]}, {"branch": ["br1", "test"]}]
    code, body, _ = await api.get("/api/v2/builds?property=nosuch&limit=1")
    assert body["builds"][0]["properties"] == {}


@ALSO_OVER_TCP
@pytest_twisted.ensureDeferred
async def test_head(api: Api) -> None:
    response = await treq.head(api.url + "/api/v2/builds/1", pool=api.pool)
    assert response.code == 200
    assert int(response.headers.getRawHeaders("content-length")[0]) > 0
    assert await response.content() == b""


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/api/v2/nosuch", 404, "invalid path"),
        ("/api/v2/builds/999", 404, "not found"),
        ("/api/v2/builds/abc", 404, "invalid path"),
        ("/api/v2/builders/99/builds", 404, "builders/99"),
        ("/api/v2/builders/zz/builds/1", 404, "not found"),
        ("/api/v3/builds", 404, "api/v3"),
        ("/nosuch", 404, "/nosuch"),
        ("/api/v2/builds?foo=1", 400, "'foo'"),
        ("/api/v2/builds?buildid__bogus=1", 400, "'bogus'"),
        ("/api/v2/builds?buildid=abc", 400, "'buildid'"),
        ("/api/v2/builds?complete=maybe", 400, "'complete'"),
        ("/api/v2/builds?limit=abc", 400, "limit"),
        ("/api/v2/builds?limit=-1", 400, "limit"),
        ("/api/v2/builds?offset=-5", 400, "offset"),
        ("/api/v2/builds?limit=1&limit=2", 400, "limit"),
        ("/api/v2/builds?order=nosuch", 400, "'nosuch'"),
        ("/api/v2/builds?order=properties", 400, "'properties'"),
        ("/api/v2/builds?field=nosuch", 400, "'nosuch'"),
        ("/api/v2/builds?properties=x", 400, "'properties'"),
        ("/api/v2/builds?number__lt=1&number__lt=2", 400, "number__lt"),
        ("/api/v2/builds?number__contains=1", 400, "number__contains"),
        ("/api/v2/builds/1?results=0", 400, "single build"),
        ("/api/v2/builds/1?order=buildid", 400, "single build"),
        ("/api/v2/builds?state_string=%ff", 400, "UTF-8"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_read_errors(api: Api, path: str, status: int, words: str) -> None:
    code, body, response = await api.get(path)
    assert code == status, body
    assert response.headers.getRawHeaders("content-type") == ["application/json; charset=utf-8"]
    assert words in body["error"]
    assert "Traceback" not in body["error"] and "ResultSpec" not in body["error"]


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest_twisted.ensureDeferred
async def test_other_methods_are_405(api: Api, method: str) -> None:
    response = await treq.request(method, api.url + "/api/v2/builds/1", pool=api.pool)
    body = json.loads(await response.content())
    assert response.code == 405 and method in body["error"]
    assert "POST" in response.headers.getRawHeaders("allow")[0]


# -- JSON-RPC ----------------------------------------------------------------------------------


def call(method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": request_id}
    if params is not None:
        body["params"] = params
    return body


@ALSO_OVER_TCP
@pytest_twisted.ensureDeferred
async def test_action_success_and_event(api: Api) -> None:
    seen = []
    api.data.events.subscribe("notes/*/*", lambda key, entity: seen.append((key, entity["pinned"])))
    code, body = await api.rpc("/api/v2/notes/2", call("pin", {"pinned": True}, "x1"))
    assert code == 200 and body["id"] == "x1" and body["jsonrpc"] == "2.0"
    assert body["result"]["pinned"] is True and body["result"]["noteid"] == 2
    assert seen == [(("notes", "2", "update"), True)]
    code, body, _ = await api.get("/api/v2/notes?pinned=true")
    assert [n["noteid"] for n in body["notes"]] == [2]


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "code", "words"),
    [
        ("/api/v2/notes/1", call("pin", {"pinned": True}), "text/plain", 400, -32600, "Content-Type"),
        ("/api/v2/notes/1", b'{"jsonrpc": "2.0", "method":', "application/json", 400, -32700, "parse"),
        ("/api/v2/notes/1", [call("pin", {"pinned": True})], "application/json", 400, -32600, "batch"),
        ("/api/v2/notes/1", {**call("pin", {}), "jsonrpc": "1.0"}, "application/json", 400, -32600, "2.0"),
        ("/api/v2/notes/1", call("pin", [True]), "application/json", 400, -32600, "params"),
        ("/api/v2/notes/1", {"jsonrpc": "2.0", "id": 1}, "application/json", 400, -32600, "method"),
        ("/api/v2/notes/1", {"jsonrpc": "2.0", "method": "pin"}, "application/json", 400, -32600, "id"),
        ("/api/v2/notes/1", call("pin", {"pinned": True}, [1]), "application/json", 400, -32600, "id"),
        ("/api/v2/notes/1", "just a string", "application/json", 400, -32600, "object"),
        ("/api/v2/notes/1", call("explode", {}), "application/json", 400, -32601, "explode"),
        ("/api/v2/notes/1", call("pin", {}), "application/json", 400, -32602, "pinned"),
        ("/api/v2/notes/1", call("pin", {"pinned": "perhaps"}), "application/json", 400, -32602, "pinned"),
        ("/api/v2/notes/1", call("pin", {"pinned": True, "x": 1}), "application/json", 400, -32602, "x"),
        ("/api/v2/notes/999", call("pin", {"pinned": True}), "application/json", 404, -32600, "notes/999"),
        ("/api/v2/nosuch/1", call("pin", {"pinned": True}), "application/json", 404, -32600, "nosuch"),
        ("/api/v2/notes", call("pin", {"pinned": True}), "application/json", 405, -32601, "read-only"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_jsonrpc_errors(
    api: Api, path: str, body: Any, content_type: str, status: int, code: int, words: str
) -> None:
    http_code, answer = await api.rpc(path, body, content_type)
    assert http_code == status, answer
    assert answer["jsonrpc"] == "2.0" and answer["error"]["code"] == code
    assert words in answer["error"]["message"] or words in json.dumps(answer["error"].get("data"))
    assert "Traceback" not in answer["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_jsonrpc_invalid_params_name_each_field(api: Api) -> None:
    code, body = await api.rpc("/api/v2/notes/1", call("pin", {"pinned": 3, "colour": "red"}, 7))
    assert code == 400 and body["id"] == 7
    assert set(body["error"]["data"]) == {"pinned", "colour"}


@pytest_twisted.ensureDeferred
async def test_jsonrpc_conflict(api: Api) -> None:
    code, body = await api.rpc("/api/v2/notes/1", call("pin", {"pinned": False}))
    assert code == 409 and body["error"]["code"] == -32000 and "already unpinned" in body["error"]["message"]
