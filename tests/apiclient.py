"""A real HTTP client for the REST layer, and a helper serving a DataAPI on a real port or in memory.

In memory, the site and the client speak the same HTTP/1.1 as over TCP, through Twisted's
in-memory transports (``twisted.test.iosim``, what treq's ``StubTreq`` uses) moved on each reactor
turn: no port, no socket, no timer.  treq calls and Agents given the ``Api``'s ``pool``
reach the site that way whatever host the URL names.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import treq
from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IDelayedCall, IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.test import iosim
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site
from zope.interface import implementer

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


# The address an in-memory site says it has: port 9 (discard), so that a client that bypasses the
# pool (urllib, a WebSocket) fails at once instead of reaching whatever listens on this machine.
MEMORY_ADDRESS = IPv4Address("TCP", "127.0.0.1", 9)
MEMORY_CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


class _Transport(iosim.FakeTransport):
    """An in-memory transport whose writes are delivered on the next reactor turn."""

    connection: _Connection

    def write(self, data: bytes) -> None:
        super().write(data)
        self.connection.soon()

    def loseConnection(self) -> None:  # noqa: N802
        super().loseConnection()
        self.connection.soon()

    def abortConnection(self) -> None:  # noqa: N802
        super().abortConnection()
        self.connection.soon()


class _Connection:
    """A client protocol connected in memory to a protocol of *site*."""

    def __init__(self, site: Site, client: IProtocol) -> None:
        server = site.buildProtocol(MEMORY_CLIENT)
        server_io = _Transport(server, isServer=True, hostAddress=MEMORY_ADDRESS, peerAddress=MEMORY_CLIENT)
        client_io = _Transport(client, isServer=False, hostAddress=MEMORY_CLIENT, peerAddress=MEMORY_ADDRESS)
        server_io.connection = client_io.connection = self
        self._scheduled: IDelayedCall | None = None
        self.pump = iosim.connect(server, server_io, client, client_io, greet=False)
        self.soon()

    def soon(self) -> None:
        """Move the bytes written so far on the next reactor turn (not now: the writer is mid-call)."""
        if self._scheduled is None:
            self._scheduled = reactor.callLater(0, self._move)

    def _move(self) -> None:
        self._scheduled = None
        self.pump.flush(advanceClock=False)


@implementer(IStreamClientEndpoint)
class _MemoryEndpoint:
    """Connects a client factory's protocol to *site* in memory."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        client = factory.buildProtocol(MEMORY_ADDRESS)
        _Connection(self.site, client)
        return defer.succeed(client)


class MemoryPool(HTTPConnectionPool):
    """A connection pool whose every connection goes to *site* in memory, whatever the URL."""

    def __init__(self, site: Site) -> None:
        super().__init__(reactor, persistent=False)
        self._endpoint = _MemoryEndpoint(site)

    def getConnection(self, key: Any, endpoint: Any) -> defer.Deferred:  # noqa: N802
        """A new in-memory connection to the site (*endpoint*, the URL's, is not used)."""
        return super().getConnection(key, self._endpoint)


@asynccontextmanager
async def serve(data: DataAPI, site: Site | None = None, in_memory: bool = False) -> AsyncIterator[Api]:
    """Serve *site* (by default *data*'s REST API at /api) during the block: on a free port of 127.0.0.1,
    or *in_memory* (no port: a fast test; the ``Api``'s URL then names port 9, reached through its pool only)."""
    site = site if site is not None else build_site({"api": RestApi(data).resource()})
    if in_memory:
        yield Api(f"http://{MEMORY_ADDRESS.host}:{MEMORY_ADDRESS.port}", data, MemoryPool(site))
        return
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    pool = HTTPConnectionPool(reactor, persistent=False)
    try:
        yield Api(f"http://127.0.0.1:{port.getHost().port}", data, pool)
    finally:
        await port.stopListening()
