"""A real HTTP client for the REST layer, and a helper serving a DataAPI on a real port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import treq
from twisted.internet import reactor
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from master.data.connector import DataAPI
from master.www.rest import RestApi
from master.www.site import build_site


@dataclass
class Api:
    """``get``/``rpc`` against ``url`` through treq; ``data`` is the DataAPI being served."""

    url: str
    data: DataAPI
    pool: HTTPConnectionPool

    async def get(self, path: str, **kw: Any) -> tuple[int, Any, Any]:
        """GET *path*: (status, decoded JSON body or None, the treq response)."""
        response = await treq.get(self.url + path, pool=self.pool, **kw)
        body = await response.content()
        return response.code, json.loads(body) if body else None, response

    async def get_raw(self, path: str, **kw: Any) -> tuple[int, bytes, Any]:
        """GET *path*: (status, body bytes, the treq response)."""
        response = await treq.get(self.url + path, pool=self.pool, **kw)
        return response.code, await response.content(), response

    async def rpc(self, path: str, body: Any, content_type: str = "application/json") -> tuple[int, Any]:
        """POST a JSON-RPC body (a dict, or raw bytes) to *path*: (status, decoded JSON body)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = await treq.post(self.url + path, data=raw, headers={"Content-Type": content_type}, pool=self.pool)
        return response.code, json.loads(await response.content())

    async def call(self, path: str, method: str, **params: Any) -> Any:
        """Call action *method* on *path*; return its result or raise AssertionError with the error."""
        code, body = await self.rpc(path, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        if "error" in body:
            raise AssertionError(f"{method} on {path}: HTTP {code}: {body['error']}")
        return body["result"]


@asynccontextmanager
async def serve(data: DataAPI, site: Site | None = None) -> AsyncIterator[Api]:
    """Serve *site* (by default *data*'s REST API at /api) on a free port of 127.0.0.1 during the block."""
    site = site if site is not None else build_site({"api": RestApi(data).resource()})
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        yield Api(f"http://127.0.0.1:{port.getHost().port}", data, pool)
    finally:
        await port.stopListening()
