"""Error shapes at the HTTP edge, through real sockets: oversized request lines, headers and bodies
(414/431/413 in JSON, not a dropped connection), paths no route takes (a JSON 404), POSTs to
read-only endpoints (405 with Allow), and faults nothing caught (a JSON 500, not Twisted's HTML).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from apiclient import Api, serve
from test_dci import DciSite, _make_topic, dci_site
from twisted.internet import defer, protocol, reactor
from twisted.web import resource

from master.config import ConfigError, MasterConfig, _check
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.db.backends import make_storage
from master.www.httplimits import DEFAULT_MAX_BODY_BYTES, body_limit
from master.www.login import LoginPages
from master.www.rest import RestApi
from master.www.site import build_site

LIMIT = 1000
"""The site's body limit in these tests (``www.max_body_bytes``)."""


class _Broken(resource.Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:  # noqa: N802
        raise RuntimeError("a fault of ours")


class _Uploads(resource.Resource):
    """A mounted resource declaring a larger limit for POST /uploads/big, like DCI's file uploads."""

    isLeaf = True

    def max_body_bytes(self, method: bytes, segments: list[bytes]) -> int | None:
        return 10 * LIMIT if method == b"POST" and segments == [b"big"] else None

    def render_POST(self, request: Any) -> bytes:  # noqa: N802
        return b"%d" % len(request.content.read())


@pytest_twisted.async_yield_fixture()
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The REST API, the login pages and two test resources on SQLite, with a body limit of LIMIT bytes."""
    url = f"sqlite:///{tmp_path}/state.sqlite"
    migrate.create(url)
    storage = make_storage(url)
    await storage.start()
    try:
        data = DataAPI(storage)
        for rtype in core_resource_types():
            data.add_resource_type(rtype)
        await data.updates.update_builder("a", description=None, tags=[])
        mounts = {"api": RestApi(data).resource(), "auth": LoginPages(None).resource(),
                  "broken": _Broken(), "uploads": _Uploads()}
        site = build_site(mounts, max_body_bytes=LIMIT)
        async with serve(data, site) as served:
            served.site = site
            yield served
    finally:
        await storage.stop()


class _Raw(protocol.Protocol):
    """Sends bytes as told and collects all it gets until the server closes."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        self.closed.callback(self.received)


async def _raw(api: Api, data: bytes) -> tuple[int, dict[str, str], Any]:
    """Send *data* on a new connection; return the status, headers and decoded JSON body the server
    answers before it closes the connection (a hung connection fails the test by timeout)."""
    port = int(api.url.rsplit(":", 1)[1])
    client = await protocol.ClientCreator(reactor, _Raw).connectTCP("127.0.0.1", port)
    client.transport.write(data)
    received = await client.closed.addTimeout(20, reactor)
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _post_head(path: str, extra: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_request_line_too_long_is_414_in_json(api: Api) -> None:
    ids = ",".join(str(i) for i in range(5000))  # the example: about 24 KB of ids
    code, headers, body = await _raw(api, f"GET /api/v2/builds?buildid__in={ids} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert code == 414 and headers["content-type"].startswith("application/json")
    assert "request line is longer than 16384 bytes" in body["error"]
    # a long line that is still within the limit is served
    code, body, _ = await api.get("/api/v2/builds?buildid__in=" + ",".join(str(i) for i in range(2000)))
    assert code == 200 and body["meta"]["total"] == 0


@pytest.mark.parametrize("headers", [
    "X-Big: " + "a" * 17000 + "\r\n",  # one line past 16 KiB
    "".join(f"X-H{i}: {'a' * 1000}\r\n" for i in range(20)),  # lines that pass it together
], ids=["one-line", "many-lines"])
@pytest_twisted.ensureDeferred
async def test_headers_too_large_are_431_in_json(api: Api, headers: str) -> None:
    code, answer, body = await _raw(api, f"GET /api/v2/builders HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert code == 431 and answer["content-type"].startswith("application/json") and answer["connection"] == "close"
    assert "header lines are longer than 16384 bytes" in body["error"]


@pytest_twisted.ensureDeferred
async def test_announced_body_too_large_is_413_before_it_is_sent(api: Api) -> None:
    """The answer comes on the headers alone: the client never sends its body (nor gets a 100 Continue)."""
    for expect in ("", "Expect: 100-continue\r\n"):
        code, headers, body = await _raw(api, _post_head("/api/v2/changes", f"Content-Length: {LIMIT + 1}\r\n{expect}"))
        assert code == 413 and headers["content-type"].startswith("application/json"), expect
        assert f"({LIMIT + 1} bytes) is larger than the {LIMIT} bytes allowed here" in body["error"]


@pytest_twisted.ensureDeferred
async def test_chunked_body_too_large_is_413(api: Api) -> None:
    chunk = b"%x\r\n%s\r\n" % (600, b" " * 600)
    code, _, body = await _raw(api, _post_head("/api/v2/changes", "Transfer-Encoding: chunked\r\n") + chunk * 3)
    assert code == 413 and f"larger than the {LIMIT} bytes" in body["error"]


@pytest_twisted.ensureDeferred
async def test_body_limit_for_a_client_that_sends_everything(api: Api) -> None:
    """treq writes the whole body before it reads: it still gets the 413, and the master serves on."""
    big = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"author": "x" * 2_000_000}}).encode()
    response = await treq.post(f"{api.url}/api/v2/changes", data=big, headers={"Content-Type": "application/json"},
                               pool=api.pool)
    assert response.code == 413 and "allowed here" in (await response.json())["error"]
    call = {"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"author": "x" * (LIMIT - 200)}}
    code, answer = await api.rpc("/api/v2/changes", call)
    assert code == 200 and answer["result"]["changeid"] == 1


@pytest_twisted.ensureDeferred
async def test_a_mounted_resource_may_take_larger_bodies_on_its_routes(api: Api) -> None:
    body = b"x" * (5 * LIMIT)
    response = await treq.post(f"{api.url}/uploads/big", data=body, pool=api.pool)
    assert response.code == 200 and await response.content() == b"%d" % len(body)
    response = await treq.post(f"{api.url}/uploads/small", data=body, pool=api.pool)
    assert response.code == 413
    code, _, _ = await _raw(api, _post_head("/uploads/big", f"Content-Length: {10 * LIMIT + 1}\r\n"))
    assert code == 413
    # the limit follows reconfig
    api.site.max_body_bytes = 10 * LIMIT
    response = await treq.post(f"{api.url}/uploads/small", data=body, pool=api.pool)
    assert response.code == 200
    assert body_limit(api.site, b"POST", b"/uploads/big%2F?x=1") == 10 * LIMIT  # not the route: the site's
    assert body_limit(api.site, b"POST", b"/uploads/big?x=1") == 10 * LIMIT


@pytest_twisted.ensureDeferred
async def test_newline_in_a_path_is_a_json_404(api: Api) -> None:
    for path in ("/api/v2/builds/1%0A", "/api/v2/builds%0Abuilds", "/auth/login%0A"):
        code, raw, response = await api.get_raw(path)
        assert code == 404 and response.headers.getRawHeaders("content-type")[0].startswith("application/json")
        assert json.loads(raw)["error"] == f"no such path: {path}"


@pytest_twisted.ensureDeferred
async def test_a_method_a_klein_route_does_not_take_is_a_json_405(api: Api) -> None:
    # sent as a same-site client would (JSON), so that the CSRF check lets it reach the router
    response = await treq.request("DELETE", f"{api.url}/auth/login", pool=api.pool,
                                  headers={"Content-Type": "application/json"})
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET, HEAD, POST"]
    assert "DELETE is not allowed" in (await response.json())["error"]


@pytest_twisted.ensureDeferred
async def test_post_to_a_read_only_endpoint_is_405_with_allow(api: Api) -> None:
    code, body = await api.rpc("/api/v2/builders", {"jsonrpc": "2.0", "id": 7, "method": "x", "params": {}})
    assert code == 405 and body["id"] == 7 and body["error"]["code"] == -32601
    assert body["error"]["message"] == "/builders has no actions: it is read-only (GET)"
    response = await treq.post(f"{api.url}/api/v2/builders/1", data=b"x", pool=api.pool)
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET, HEAD, OPTIONS"]
    response = await treq.request("OPTIONS", f"{api.url}/api/v2/builders", pool=api.pool)
    assert response.code == 204 and response.headers.getRawHeaders("allow") == ["GET, HEAD, OPTIONS"]
    # where there are actions, POST is JSON-RPC (here: a bad body) and OPTIONS says so
    response = await treq.post(f"{api.url}/api/v2/changes", data=b"x", pool=api.pool)
    assert response.code == 400 and (await response.json())["error"]["code"] == -32600
    response = await treq.request("OPTIONS", f"{api.url}/api/v2/changes", pool=api.pool)
    assert response.headers.getRawHeaders("allow") == ["GET, HEAD, POST, OPTIONS"]
    # an unknown path stays a JSON-RPC 404
    code, body = await api.rpc("/api/v2/nothing", {"jsonrpc": "2.0", "id": 1, "method": "x", "params": {}})
    assert code == 404 and body["error"]["code"] == -32600


@pytest_twisted.ensureDeferred
async def test_a_fault_nothing_caught_is_a_json_500(api: Api) -> None:
    code, raw, response = await api.get_raw("/broken")
    assert code == 500 and response.headers.getRawHeaders("content-type")[0].startswith("application/json")
    assert json.loads(raw) == {"error": "internal error (logged on the master)"}


@pytest_twisted.async_yield_fixture()
async def dci(tmp_path: Path) -> AsyncIterator[DciSite]:
    """The DCI API on SQLite, behind a site whose body limit is LIMIT bytes."""
    url = f"sqlite:///{tmp_path}/state.sqlite"
    migrate.create(url)
    async with dci_site(url, tmp_path) as site:
        site.site.max_body_bytes = LIMIT
        yield site


@pytest.mark.slow  # runs dcictl
@pytest_twisted.ensureDeferred
async def test_dci_file_uploads_keep_their_own_limit(dci: DciSite) -> None:
    from dciclient.v1.api import file, job

    ctx = dci.context()
    made, components = await _make_topic(dci)
    created = await dci.call(job.create, ctx, made["id"], components=[components["hwcert-1"]["id"]])
    assert created.status_code == 201, created.text
    job_id = created.json()["job"]["id"]
    content = b"line\n" * (2 * LIMIT)  # 10 KB: past the site's limit, far within the uploads'
    uploaded = await dci.call(file.create, ctx, "log.txt", content=content, mime="text/plain", job_id=job_id)
    assert uploaded.status_code == 201 and uploaded.json()["file"]["size"] == str(len(content))
    # any other route takes the site's limit
    refused = await dci.call(ctx.session.request, "POST", f"{dci.url}/api/v1/jobs", data=b" " * (2 * LIMIT),
                             headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and "allowed here" in refused.json()["error"]


def test_max_body_bytes_is_a_www_key(tmp_path: Path) -> None:
    assert _check(MasterConfig(), tmp_path).www.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 10 * 1024 * 1024
    assert _check(MasterConfig(www={"max_body_bytes": 5}), tmp_path).www.max_body_bytes == 5
    for bad in (0, -1, "10MB", True):
        with pytest.raises(ConfigError, match="www.max_body_bytes: expected a positive number of bytes"):
            _check(MasterConfig(www={"max_body_bytes": bad}), tmp_path)
