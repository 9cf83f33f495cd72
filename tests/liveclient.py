"""A real Autobahn WebSocket client of ``/ws`` for the tests: commands, replies and events."""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer
from waiting import within

WAIT = 30.0


class _Protocol(WebSocketClientProtocol):
    def onOpen(self) -> None:  # noqa: N802
        self.factory.client._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.factory.client._received(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        self.factory.client._closed(code, reason)


class LiveClient:
    """One connection to ``/ws``: ``command`` waits for the reply; ``next_event`` for the next event."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.protocol: _Protocol | None = None
        self.events: defer.DeferredQueue = defer.DeferredQueue()
        self.replies: dict[Any, defer.Deferred] = {}
        self.unmatched: list[dict[str, Any]] = []  # replies without a known _id
        self.closed: defer.Deferred = defer.Deferred()
        self._open: defer.Deferred = defer.Deferred()
        self._ids = 0

    async def connect(self) -> LiveClient:
        """Open the connection."""
        factory = WebSocketClientFactory(self.url, headers=self.headers)
        factory.protocol = _Protocol
        factory.client = self
        connectWS(factory, timeout=10)
        await within(self._open, what="websocket connection")
        return self

    def _opened(self, protocol: _Protocol) -> None:
        self.protocol = protocol
        self._open.callback(self)

    def _received(self, message: dict[str, Any]) -> None:
        if "k" in message:
            self.events.put(message)
            return
        waiter = self.replies.pop(message.get("_id"), None)
        if waiter is None:
            self.unmatched.append(message)
        else:
            waiter.callback(message)

    def _closed(self, code: int | None, reason: str | None) -> None:
        if not self._open.called:
            self._open.errback(ConnectionError(f"websocket refused: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((code, reason))

    def send_raw(self, payload: bytes) -> None:
        """Send a frame as it is."""
        self.protocol.sendMessage(payload, isBinary=False)

    async def command(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send ``{"cmd": cmd, "_id": n, **fields}`` and return the reply."""
        self._ids += 1
        waiter: defer.Deferred = defer.Deferred()
        self.replies[self._ids] = waiter
        self.send_raw(json.dumps({"cmd": cmd, "_id": self._ids, **fields}).encode())
        return await within(waiter, what=f"reply to {cmd}")

    async def next_event(self, timeout: float = WAIT) -> dict[str, Any]:
        """The next event message."""
        return await within(self.events.get(), "event", timeout=timeout)

    async def events_until(self, done: Any, timeout: float = WAIT) -> list[dict[str, Any]]:
        """Events up to and including the first for which ``done(message)`` is true."""
        seen = []
        while True:
            message = await self.next_event(timeout)
            seen.append(message)
            if done(message):
                return seen

    def close(self) -> None:
        """Close the connection."""
        if self.protocol is not None:
            self.protocol.sendClose(1000)

    def drop(self) -> None:
        """Cut the TCP connection without a closing handshake."""
        if self.protocol is not None:
            self.protocol.transport.abortConnection()
