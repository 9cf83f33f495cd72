"""``/ws``: live updates over a WebSocket, in Buildbot's protocol, with resumption.

Client frames are JSON objects ``{"cmd": ..., "_id": n, ...}``:

- ``{"cmd": "startConsuming", "path": "builds/*/*", "_id": 1}`` subscribes to the events
  whose key matches *path* (``*`` matches one segment; the last segment is the event name).
  With ``"since": id`` the events after that id that match are sent first, in order, then
  live ones: a client that reconnects loses nothing.  If the journal no longer holds them
  the reply is code 410 and the client should reload what it shows.
- ``{"cmd": "stopConsuming", "path": ..., "_id": 2}`` ends a subscription.
- ``{"cmd": "ping", "_id": 3}`` is answered ``{"msg": "pong", "code": 200, "_id": 3}``.

Replies: ``{"msg": "OK", "code": 200, "_id": n}``; errors ``{"error": text, "code": c, "_id": n}``
with 400 (not JSON, missing ``_id``, ``cmd`` or ``path``, a path that is neither an event path nor
a REST path, stopping what was not started, a bad ``since``), 401/403 (auth is on and the user
may not read that resource type), 404 (unknown command), 410 (``since`` too old) and 429 (the
connection already holds ``ws_max_subscriptions`` subscriptions).

Limits (``www`` keys): each connection holds at most ``ws_max_subscriptions`` subscriptions, and
one client address at most ``ws_max_connections_per_ip`` connections; the handshake of one more
is answered HTTP 429 with a JSON body.  Matching an event costs the same however many
subscriptions are held (:class:`master.data.events.PatternIndex`).

Events: ``{"k": "builds/12/finished", "m": {the whole resource}, "id": 1234}``; a log's
``append`` event carries the appended lines in ``m.appended``.  Each event is encoded once
for all its receivers.  Each connection has a bounded queue for when its socket is full; a
client that falls further behind is closed with code 4008 (it may reconnect with ``since``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from master.data.base import Kind
from master.data.connector import DataAPI
from master.data.events import Event, Key, PatternIndex, TooOld, key_matches, split_key
from master.data.types import INT64_MAX
from master.www.auth import Authenticator, AuthError
from master.www.transport import connection

log = Logger()

CLOSE_TOO_SLOW = 4008
"""Close code for a client whose queue of unsent events overflowed."""

CLOSE_GOING_AWAY = 4001
"""Close code when the master stops (Autobahn lets servers send only 1000 or 3000-4999)."""

SLOW_CLOSE_GRACE = 10.0
"""Seconds a client closed for being too slow has to read the close frame before the socket is cut."""

MAX_QUEUED = 2000
"""Events queued for one connection while its socket is full, before it is closed."""

MAX_SUBSCRIPTIONS = 1000
"""Subscriptions one connection may hold (``www["ws_max_subscriptions"]``)."""

MAX_CONNECTIONS_PER_IP = 200
"""Connections one client address may hold (``www["ws_max_connections_per_ip"]``)."""

PING_INTERVAL = 30.0
PING_TIMEOUT = 60.0


@implementer(IPushProducer)
class LiveProtocol(WebSocketServerProtocol):
    """One browser or client: its subscriptions and its queue of events to send."""

    factory: LiveFactory
    peer_host: str | None = None

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        """Count the connection against its client address (before the handshake: a refusal must be cheap)."""
        self.peer_host = getattr(connection(self).getPeer(), "host", None)
        self.factory.per_host[self.peer_host] = self.factory.per_host.get(self.peer_host, 0) + 1
        super().connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Stop counting the connection."""
        count = self.factory.per_host.get(self.peer_host, 0) - 1
        if count > 0:
            self.factory.per_host[self.peer_host] = count
        else:
            self.factory.per_host.pop(self.peer_host, None)
        super().connectionLost(reason)

    def onConnect(self, request: Any) -> None:  # noqa: N802 (Autobahn's name)
        """Remember who connects (auth is checked per subscription)."""
        self.patterns: set[Key] = set()
        self.user: Any = None
        self.auth_error: AuthError | None = None
        self._queue: deque[Any] = deque()
        self._paused = False
        self._resuming: dict[Key, list[tuple[Event, Any]]] = {}
        auth = self.factory.auth
        if auth is not None and auth.restricts_reads:
            try:
                self.user = auth.authenticate(_HandshakeRequest(request))
            except AuthError as e:
                self.auth_error = e

    def onOpen(self) -> None:  # noqa: N802
        """Join the fan-out and watch the socket's buffer."""
        if getattr(self.transport, "producer", None) is not None:
            # the HTTP channel that carried the upgrade registered itself; it is done with the socket
            connection(self).unregisterProducer()
        connection(self).registerProducer(self, True)
        # events are small and must go out at once, not wait for the peer's delayed ACK (Nagle)
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.factory.connections.add(self)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        """Leave the fan-out."""
        self.factory.connections.discard(self)
        for pattern in getattr(self, "patterns", ()):
            self.factory.unsubscribe(pattern, self)
        self.patterns = set()
        getattr(self, "_queue", deque()).clear()

    # -- flow control (the transport calls these) ------------------------------------------

    def pauseProducing(self) -> None:  # noqa: N802
        """The socket's buffer is full: queue what comes next."""
        self._paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        """The socket drained: send what was queued, until it fills again."""
        self._paused = False
        while self._queue and not self._paused:
            self._write(self._queue.popleft())

    def stopProducing(self) -> None:  # noqa: N802
        """The connection is going away."""
        self._queue.clear()

    def send_event(self, prepared: Any) -> None:
        """Send one prepared event message, or queue it while the socket is full."""
        if self._paused or self._queue:
            if len(self._queue) >= self.factory.max_queued:
                self._overflowed()
                return
            self._queue.append(prepared)
            return
        self._write(prepared)

    def _overflowed(self) -> None:
        """Too far behind: leave the fan-out at once, say why, and cut the connection if it stays stuck."""
        self._queue.clear()
        self.factory.connections.discard(self)
        for pattern in self.patterns:
            self.factory.unsubscribe(pattern, self)
        self.patterns = set()
        self.sendClose(CLOSE_TOO_SLOW, "too slow: events overflowed; reconnect with since")
        from twisted.internet import reactor

        reactor.callLater(SLOW_CLOSE_GRACE, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self.transport is not None and self.state != WebSocketServerProtocol.STATE_CLOSED:
            connection(self).abortConnection()

    def _write(self, prepared: Any) -> None:
        # a prepared message is a whole frame: written as it is, it skips Autobahn's per-send
        # bookkeeping, which is most of the cost of a fan-out to many clients
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            connection(self).write(prepared.payloadHybi)

    def deliver(self, pattern: Key, event: Event, prepared: Any) -> None:
        """An event for *pattern*: sent now, or held while that subscription replays the journal."""
        held = self._resuming.get(pattern)
        if held is not None:
            held.append((event, prepared))
        else:
            self.send_event(prepared)

    # -- commands ---------------------------------------------------------------------------

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        """Parse one command and answer it."""
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self._reply(None, 400, "the frame is not JSON")
            return
        if not isinstance(frame, dict):
            self._reply(None, 400, "the frame must be a JSON object")
            return
        msg_id = frame.get("_id")
        if msg_id is None:
            self._reply(None, 400, "missing '_id'")
            return
        cmd = frame.get("cmd")
        if cmd is None:
            self._reply(msg_id, 400, "missing 'cmd'")
            return
        if cmd == "ping":
            self._send_json({"msg": "pong", "code": 200, "_id": msg_id})
        elif cmd in ("startConsuming", "stopConsuming"):
            defer.ensureDeferred(self._consuming(cmd, frame, msg_id))
        else:
            self._reply(msg_id, 404, f"unknown command {cmd!r} (use startConsuming, stopConsuming or ping)")

    async def _consuming(self, cmd: str, frame: dict[str, Any], msg_id: Any) -> None:
        path = frame.get("path")
        if not isinstance(path, str) or not path.strip("/"):
            self._reply(msg_id, 400, "missing 'path'")
            return
        pattern = split_key(path)
        if cmd == "stopConsuming":
            if pattern not in self.patterns:
                self._reply(msg_id, 400, f"not consuming {path!r}")
                return
            self.patterns.discard(pattern)
            self.factory.unsubscribe(pattern, self)
            self._reply(msg_id, 200)
            return
        plurals = self.factory.resource_types_at(pattern)
        if not plurals:
            self._reply(msg_id, 400, f"nothing is published under {path!r}")
            return
        try:
            self.factory.authorize_read(self, plurals)
        except AuthError as e:
            self._reply(msg_id, e.status, e.message)
            return
        since = frame.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or not 0 <= since <= INT64_MAX):
            self._reply(msg_id, 400, "'since' must be an event id (a 64-bit integer >= 0)")
            return
        if pattern in self.patterns:
            self._reply(msg_id, 200)  # already consuming: nothing to do
            return
        if len(self.patterns) >= self.factory.max_subscriptions:
            self._reply(
                msg_id, 429,
                f"too many subscriptions: this connection holds {len(self.patterns)}, the limit"
                f" (www ws_max_subscriptions) is {self.factory.max_subscriptions}; stopConsuming some"
                " or subscribe with '*' patterns",
            )
            return
        if since is None:
            self.patterns.add(pattern)
            self.factory.subscribe(pattern, self)
            self._reply(msg_id, 200)
            return
        # resume: hold live events for this pattern while the journal's are sent
        self._resuming[pattern] = []
        self.patterns.add(pattern)
        self.factory.subscribe(pattern, self)
        through = self.factory.data.events.delivered or 0
        try:
            missed = await self.factory.data.events.replay(since, through)
        except TooOld as e:
            self._resuming.pop(pattern, None)
            self.patterns.discard(pattern)
            self.factory.unsubscribe(pattern, self)
            self._reply(msg_id, 410, f"{e}: reload")
            return
        self._reply(msg_id, 200)
        for event in missed:
            for key in event.keys:
                if key_matches(pattern, key):
                    self.send_event(self.factory.prepare(key, event))
        for event, prepared in self._resuming.pop(pattern, []):
            if event.id > through:
                self.send_event(prepared)

    def _reply(self, msg_id: Any, code: int, error: str | None = None) -> None:
        if error is None:
            self._send_json({"msg": "OK", "code": code, "_id": msg_id})
        else:
            self._send_json({"error": error, "code": code, "_id": msg_id})

    def _send_json(self, message: dict[str, Any]) -> None:
        # not _send: that is Autobahn's own (it flushes its send queue), which a method of that name overrode
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendMessage(orjson.dumps(message), isBinary=False)


class _HandshakeRequest:
    """What Authenticator reads of a request (headers and cookies), from Autobahn's ConnectionRequest."""

    def __init__(self, request: Any) -> None:
        self._headers = request.headers

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 (twisted.web's name)
        value = self._headers.get(name.decode().lower())
        return value.encode("latin-1") if value is not None else None

    def getCookie(self, name: bytes) -> bytes | None:  # noqa: N802
        for part in (self._headers.get("cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            if key == name.decode():
                return value.encode("latin-1")
        return None


class LiveFactory(WebSocketServerFactory):
    """All live connections of one master, and the index of their subscriptions."""

    # Twisted's Factory[P] takes protocols whose factory is typed Factory[Self]; ours says LiveFactory
    protocol = LiveProtocol  # type: ignore[assignment]

    def __init__(
        self,
        data: DataAPI,
        auth: Authenticator | None,
        max_queued: int,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
    ) -> None:
        super().__init__()
        self.data = data
        self.auth = auth
        self.max_queued = max_queued
        self.max_subscriptions = max_subscriptions
        self.max_connections_per_ip = max_connections_per_ip
        self.connections: set[LiveProtocol] = set()
        self.per_host: dict[str | None, int] = {}  # client address -> its open connections
        # matching an event costs the same however many patterns are held (issue 16: one client
        # subscribing 20,000 times must not slow every event down)
        self._index = PatternIndex()

    def subscribe(self, pattern: Key, connection: LiveProtocol) -> None:
        """Add *connection* to the receivers of *pattern*."""
        self._index.add(pattern, connection)

    def unsubscribe(self, pattern: Key, connection: LiveProtocol) -> None:
        """Remove *connection* from the receivers of *pattern*."""
        self._index.discard(pattern, connection)

    def prepare(self, key: Key, event: Event) -> Any:
        """The event's message for *key*, encoded once for every receiver."""
        payload = orjson.dumps({"k": "/".join(key), "m": event.entity, "id": event.id}, default=str)
        return self.prepareMessage(payload, isBinary=False)

    def on_event(self, event: Event) -> None:
        """Fan one event out: each key's message encoded once, sent once to each connection matching it."""
        for key in event.keys:
            matching = self._index.match(key)
            if not matching:
                continue
            prepared = self.prepare(key, event)
            if len(matching) == 1:  # the common case: no connection can be reached twice
                pattern, receivers = matching[0]
                for connection in list(receivers):
                    connection.deliver(pattern, event, prepared)
                continue
            sent: set[LiveProtocol] = set()
            for pattern, receivers in matching:
                for connection in list(receivers):
                    if connection not in sent:
                        sent.add(connection)
                        connection.deliver(pattern, event, prepared)

    def resource_types_at(self, pattern: Key) -> list[str]:
        """The resource types publishing events under keys *pattern* can match (none: a bad path)."""
        found = []
        for plural, rtype in self.data.rtypes.items():
            for template in rtype.event_paths:
                parts = split_key(template)
                if len(parts) + 1 != len(pattern):
                    continue
                if all(p == "*" or t.startswith(":") or p == t for p, t in zip(pattern, parts, strict=False)):
                    found.append(plural)
                    break
        if not found:
            # Buildbot's UI subscribes to every REST path it reads (a collection C as C/*/*, an entity
            # E as E/*), even where nothing is published: such a path is accepted, and stays quiet
            for endpoint in self.data.endpoints():
                parts = split_key(endpoint.pattern)
                extra = 2 if endpoint.kind is Kind.COLLECTION else 1
                if len(parts) + extra == len(pattern) and all(
                    p == "*" or ":" in t or p == t for p, t in zip(pattern, parts, strict=False)
                ):
                    found.append(endpoint.rtype.plural)
            found = sorted(set(found))
        return found

    def authorize_read(self, connection: LiveProtocol, plurals: Iterable[str]) -> None:
        """Raise AuthError unless the connection's user may read every resource type *plurals* names."""
        auth = self.auth
        if auth is None or not auth.restricts_reads:
            return
        if connection.auth_error is not None:
            raise connection.auth_error
        for plural in plurals:
            auth.authorize_read(connection.user, plural)


class LiveUpdates:
    """The ``/ws`` endpoint of one master, fed by its EventHub."""

    def __init__(
        self,
        data: DataAPI,
        auth: Authenticator | None = None,
        *,
        max_queued: int = MAX_QUEUED,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        max_subscriptions: int = MAX_SUBSCRIPTIONS,
        max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP,
    ) -> None:
        self.factory = LiveFactory(data, auth, max_queued, max_subscriptions, max_connections_per_ip)
        self.factory.setProtocolOptions(
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            maxMessagePayloadSize=64 * 1024,
            maxFramePayloadSize=64 * 1024,
            failByDrop=False,
        )
        self._remove = data.events.add_listener(self.factory.on_event)

    def resource(self) -> WebSocketResource:
        """The twisted.web resource to mount at ``/ws``."""
        return _LimitedResource(self.factory)

    def set_limits(self, max_subscriptions: int, max_connections_per_ip: int) -> None:
        """Apply new limits (a reconfig); connections over them keep what they hold."""
        self.factory.max_subscriptions = max_subscriptions
        self.factory.max_connections_per_ip = max_connections_per_ip

    def stop(self) -> None:
        """Stop feeding and close every connection."""
        self._remove()
        for live in list(self.factory.connections):
            live.sendClose(CLOSE_GOING_AWAY, "master stopping")


class _LimitedResource(WebSocketResource):
    """``/ws``, refusing the upgrade with HTTP 429 and a JSON message when the client address holds too many."""

    def render(self, request: Any) -> bytes | int:
        """Refuse over the per-address limit; otherwise hand the connection to Autobahn."""
        factory: LiveFactory = self._factory
        host = getattr(request.getClientAddress(), "host", None)
        if factory.per_host.get(host, 0) >= factory.max_connections_per_ip:
            request.setResponseCode(429)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Retry-After", b"10")
            return orjson.dumps({
                "error": f"too many websocket connections from {host}: the limit (www ws_max_connections_per_ip)"
                f" is {factory.max_connections_per_ip}; close some",
                "code": 429,
            })
        answer: bytes | int = super().render(request)  # Autobahn's render has no annotations
        return answer
