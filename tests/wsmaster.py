"""A stand-in for the master's side of the worker protocol, for the worker's tests only.

An Autobahn WebSocket server on 127.0.0.1 that checks ``hello`` against a name -> password map,
welcomes or refuses (``error`` then a close with ``CLOSE_BAD_CREDENTIALS``, ``CLOSE_DUPLICATE`` or
``CLOSE_PROTOCOL``, as ``ci_common.protocol`` says), and lets a test send ``run``,
``interrupt`` and ``shutdown`` and collect what comes back.
"""

from __future__ import annotations

import json
import time
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, reactor
from waiting import within

from ci_common import protocol


class CommandRecord:
    """What the worker sent about one command: its outputs in order and its exit."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd
        self.output: list[tuple[str, str]] = []
        self.exit: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.exit_message: dict[str, Any] | None = None

    def text(self, stream: str | None = None) -> str:
        return "".join(text for s, text in self.output if stream is None or s == stream)

    async def wait(self, timeout: float = 15.0) -> dict[str, Any]:
        """The exit message, waiting at most *timeout* seconds."""
        if self.exit_message is not None:
            return self.exit_message
        return await within(self.exit, f"exit of {self.cmd}", timeout=timeout)


class WorkerLink:
    """One welcomed worker connection, seen from the master."""

    def __init__(self, peer: MasterPeer, hello: dict[str, Any], workerid: int) -> None:
        self.peer = peer
        self.hello = hello
        self.workerid = workerid
        self.commands: dict[str, CommandRecord] = {}
        self.unexpected: list[dict[str, Any]] = []
        self.closed: defer.Deferred[tuple[bool, int | None, str | None]] = defer.Deferred()
        self._numbers = iter(range(1, 1_000_000))

    def send(self, message: dict[str, Any]) -> None:
        self.peer.sendMessage(json.dumps(message).encode(), isBinary=False)

    def run(self, **fields: Any) -> CommandRecord:
        """Send a ``run`` with *fields* (argv or shell, env, builder, workdir, timeout, max_time)."""
        cmd = f"c{next(self._numbers)}"
        record = self.commands[cmd] = CommandRecord(cmd)
        self.send({"type": protocol.RUN, "cmd": cmd, **fields})
        return record

    def interrupt(self, cmd: str, reason: str = "test") -> None:
        self.send({"type": protocol.INTERRUPT, "cmd": cmd, "reason": reason})

    def shutdown(self, graceful: bool) -> None:
        self.send({"type": protocol.SHUTDOWN, "graceful": graceful})

    def received(self, message: dict[str, Any]) -> None:
        record = self.commands.get(message.get("cmd"))  # type: ignore[arg-type]
        if record is None or record.exit_message is not None:
            self.unexpected.append(message)
        elif message["type"] == protocol.OUTPUT:
            record.output.append((message["stream"], message["text"]))
        elif message["type"] == protocol.EXIT:
            record.exit_message = message
            record.exit.callback(message)
        else:
            self.unexpected.append(message)

    async def wait_closed(self, timeout: float = 10.0) -> tuple[bool, int | None, str | None]:
        return await within(self.closed, "the close", timeout=timeout)


class MasterPeer(WebSocketServerProtocol):
    """The master's end of one worker connection."""

    link: WorkerLink | None = None

    def onConnect(self, request: Any) -> None:  # noqa: N802
        if request.path != "/" + protocol.PATH.decode():
            raise ConnectionDeny(404, "no such endpoint")
        self.factory.fake.attempts.append(time.monotonic())

    def onOpen(self) -> None:  # noqa: N802
        self.factory.fake.open_peers.add(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        message = json.loads(payload)
        fake: FakeMaster = self.factory.fake
        if self.link is not None:
            self.link.received(message)
            return
        fake.hellos.append(message)
        if message.get("type") != protocol.HELLO or message.get("protocol") != protocol.PROTOCOL_VERSION:
            self._refuse(protocol.CLOSE_PROTOCOL, "expected hello, protocol 1")
        elif fake.workers.get(message.get("name")) != message.get("password"):
            self._refuse(protocol.CLOSE_BAD_CREDENTIALS, "unknown worker name or wrong password")
        elif any(link.hello["name"] == message["name"] for link in fake.connected()):
            self._refuse(protocol.CLOSE_DUPLICATE, "a worker of that name is connected already")
        else:
            self.link = WorkerLink(self, message, fake.workerid)
            self.link.send({"type": protocol.WELCOME, "workerid": fake.workerid})
            fake.links.put(self.link)

    def _refuse(self, code: int, text: str) -> None:
        self.sendMessage(json.dumps({"type": protocol.ERROR, "message": text}).encode(), isBinary=False)
        self.factory.fake.refusals.append(code)
        self.sendClose(code, text)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        self.factory.fake.open_peers.discard(self)
        self.factory.fake.closes.append(code)
        if self.link is not None and not self.link.closed.called:
            self.link.closed.callback((wasClean, code, reason))


class FakeMaster:
    """The server: ``await start()``, a worker connects, ``await next_link()`` gives its :class:`WorkerLink`."""

    def __init__(self, workers: dict[str, str], workerid: int = 7) -> None:
        self.workers = workers
        self.workerid = workerid
        self.port = 0
        self.links: defer.DeferredQueue[WorkerLink] = defer.DeferredQueue()
        self.hellos: list[dict[str, Any]] = []
        self.refusals: list[int] = []
        self.closes: list[int | None] = []
        self.attempts: list[float] = []
        self.open_peers: set[MasterPeer] = set()
        self._listening: Any = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/worker"

    def connected(self) -> list[WorkerLink]:
        return [peer.link for peer in self.open_peers if peer.link is not None]

    def start(self, port: int = 0) -> None:
        factory = WebSocketServerFactory()
        factory.protocol = MasterPeer
        factory.fake = self
        self._listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        self.port = self._listening.getHost().port

    async def stop(self) -> None:
        """Stop listening and drop every connection, as a master that dies would."""
        if self._listening is not None:
            await self._listening.stopListening()
            self._listening = None
        for peer in list(self.open_peers):
            peer.dropConnection(abort=True)

    async def next_link(self, timeout: float = 10.0) -> WorkerLink:
        return await within(self.links.get(), "a worker connection", timeout=timeout)

