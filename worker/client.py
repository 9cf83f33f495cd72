"""The worker's side of the worker protocol: one WebSocket to the master, kept up, and the commands sent on it.

:class:`Worker` is a Twisted service.  It connects, says ``hello``, runs what the master sends
and reconnects when the connection goes, waiting longer after each failed attempt (doubling from
``Backoff.initial`` up to ``Backoff.maximum``, back to the start once welcomed).  A master that
refuses the credentials is asked again only after ``Backoff.bad_credentials``: retrying quickly
would not fix a password and would fill both logs.  Commands do not outlive their connection: the
master counts them lost when the worker goes, so they are interrupted rather than left running
for nobody.
"""

from __future__ import annotations

import os
import platform
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.application import service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

import worker
from ci_common import protocol
from ci_common.workerconfig import WorkerConfig
from worker.groups import ProcessGroups
from worker.runner import CommandRejected, RunningCommand, parse_run, rejected
from worker.transfer import WorkerTransfers

log = Logger()

CONNECT_TIMEOUT = 30.0
PING_INTERVAL = 30.0
PING_TIMEOUT = 30.0
STOP_CLOSE_TIMEOUT = 5.0


@dataclass
class Backoff:
    """How long to wait before reconnecting, in seconds."""

    initial: float = 1.0
    maximum: float = 60.0
    bad_credentials: float = 300.0
    factor: float = 2.0
    jitter: float = 0.1  # up to this fraction less, so that workers of a restarted master spread out


def worker_info() -> dict[str, Any]:
    """What the worker tells the master about itself in its ``hello``."""
    return {
        "os": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "worker_version": worker.__version__,
    }


@implementer(IPushProducer)
class _Throttle:
    """Registered on the connection's transport: pauses reading the commands' output while it is backed up.

    Without it a command writing faster than the network carries would pile its output up in memory.
    """

    def __init__(self) -> None:
        self.paused = False
        self.commands: dict[str, RunningCommand] = {}

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        """The transport's buffer is full."""
        self.paused = True
        for command in self.commands.values():
            command.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        """The transport's buffer has drained."""
        self.paused = False
        for command in self.commands.values():
            command.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        """The connection is gone; the worker interrupts the commands itself."""


class WorkerClientProtocol(WebSocketClientProtocol):
    """One connection to the master; the :class:`Worker` does the talking."""

    throttle: _Throttle
    transfers: WorkerTransfers

    def onOpen(self) -> None:  # noqa: N802 - Autobahn's name
        """The WebSocket handshake is done."""
        self.throttle = _Throttle()
        self.factory.worker._opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803 - Autobahn's names
        """A message from the master."""
        self.factory.worker._received(self, payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        """The connection is closed (or its handshake failed)."""
        self.factory.worker._closed(self, wasClean, code, reason)


class WorkerClientFactory(WebSocketClientFactory):
    """Makes the worker's connections; tells it when a connection attempt fails."""

    protocol = WorkerClientProtocol

    def __init__(self, worker: Worker, url: str, ping_interval: float) -> None:
        super().__init__(url, reactor=worker.reactor)
        self.worker = worker
        self.noisy = False  # "Starting factory" at every attempt says nothing the worker's own lines do not
        self.setProtocolOptions(
            autoPingInterval=ping_interval, autoPingTimeout=PING_TIMEOUT,
            openHandshakeTimeout=protocol.HELLO_TIMEOUT, closeHandshakeTimeout=STOP_CLOSE_TIMEOUT,
        )

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """No TCP connection (refused, unreachable, timed out)."""
        self.worker._connect_failed(reason)


class Worker(service.Service):
    """A worker: its connection to the master, kept up, and the commands it runs for it.

    ``first_outcome`` fires once, with a line saying whether the first attempt connected or why
    the worker is retrying (``ci-worker start`` waits for it); ``left`` fires when the worker has
    left on the master's ``shutdown``, after which *on_leave* is called (the daemon stops).
    """

    def __init__(
        self, basedir: Path, config: WorkerConfig, reactor: Any = None, backoff: Backoff | None = None,
        kill_grace: float = protocol.KILL_GRACE, ping_interval: float = PING_INTERVAL,
        on_leave: Callable[[], Any] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.basedir = basedir
        self.config = config
        self.backoff = backoff or Backoff()
        self.kill_grace = kill_grace
        self.on_leave = on_leave
        self.workerid: int | None = None
        self.last_close_code: int | None = None  # of the last connection: what the master meant by closing it
        self.first_outcome: defer.Deferred[str] = defer.Deferred()
        self.left: defer.Deferred[None] = defer.Deferred()
        self.active_commands: set[RunningCommand] = set()
        self.groups = ProcessGroups(basedir)
        self._factory = WorkerClientFactory(self, config.master, ping_interval)
        self._proto: WorkerClientProtocol | None = None
        self._welcomed = False
        self._delay = self.backoff.initial
        self._retry_call: IDelayedCall | None = None
        self._welcome_call: IDelayedCall | None = None
        self._last_error: str | None = None
        self._stopping = False
        self._leaving = False

    @property
    def connected(self) -> bool:
        """Whether the worker is connected and welcomed."""
        return self._proto is not None and self._welcomed

    # -- the connection ------------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 - Twisted's name
        """Connect (and keep connecting)."""
        super().startService()
        # before anything runs: a previous instance killed with -9 must not have its commands running on
        self.groups.start()
        log.info("ci-worker {name} (pid {pid}) connecting to {url}", name=self.config.name, pid=os.getpid(),
                 url=self.config.master)
        self._connect()

    def _connect(self) -> None:
        self._retry_call = None
        if self._stopping or self._leaving:
            return
        context = None
        if self._factory.isSecure:
            # verify the master's certificate against the system's CAs (Autobahn's default would not)
            context = optionsForClientTLS(self._factory.host)
        connectWS(self._factory, contextFactory=context, timeout=CONNECT_TIMEOUT)

    def _opened(self, proto: WorkerClientProtocol) -> None:
        if self._stopping or self._leaving:
            proto.sendClose(protocol.CLOSE_NORMAL, "the worker is stopping")
            return
        self._proto = proto
        self._welcomed = False
        self._last_error = None
        proto.registerProducer(proto.throttle, True)
        proto.transfers = WorkerTransfers(self.basedir, lambda m: self._send(proto, m))
        self._send(proto, {
            "type": protocol.HELLO, "protocol": protocol.PROTOCOL_VERSION, "name": self.config.name,
            "password": self.config.password, "info": worker_info(), "max_builds": self.config.max_builds,
            "features": [protocol.TRANSFER_FEATURE],
        })
        self._welcome_call = self.reactor.callLater(protocol.HELLO_TIMEOUT, self._no_welcome, proto)

    def _no_welcome(self, proto: WorkerClientProtocol) -> None:
        self._welcome_call = None
        self._last_error = f"no welcome from the master within {protocol.HELLO_TIMEOUT:g} s"
        proto.dropConnection(abort=True)

    def _connect_failed(self, reason: Failure) -> None:
        detail = reason.getErrorMessage().rstrip(".")
        self._retry(f"cannot connect to {self.config.master}: {detail}", self._next_delay())

    def _closed(self, proto: WorkerClientProtocol, was_clean: bool, code: int | None, reason: str | None) -> None:
        if self._welcome_call is not None and self._welcome_call.active():
            self._welcome_call.cancel()
        self._welcome_call = None
        was_current, was_welcomed = proto is self._proto, self._welcomed
        self.last_close_code = code
        if was_current:
            self._proto = None
            self._welcomed = False
        for command in list(getattr(proto, "throttle", _Throttle()).commands.values()):
            command.interrupt("the connection to the master was lost")
        if getattr(proto, "transfers", None) is not None:
            proto.transfers.close_all()  # their temporary files go; the master has counted them lost
        if self._stopping or self._leaving:
            return
        detail = self._last_error or reason or "no reason given"
        delay = self._next_delay()
        if code == protocol.CLOSE_BAD_CREDENTIALS:
            delay = self.backoff.bad_credentials
            self._delay = self.backoff.maximum
            why = (f"the master refused worker {self.config.name!r}: {detail}; check name and password in "
                   f"{self.basedir / 'worker.cfg'}")
            log.error("{why}; retrying in {delay:.0f} s", why=why, delay=delay)
            self._retry(why, delay, logged=True)
            return
        if code == protocol.CLOSE_DUPLICATE:
            why = f"the master has a worker named {self.config.name!r} connected already: {detail}"
        elif code == protocol.CLOSE_PROTOCOL:
            why = f"the master closed the connection for a protocol error: {detail}"
        elif code == protocol.CLOSE_SHUTDOWN:
            why = "the master is shutting down"
        elif was_welcomed:
            why = f"lost the connection to the master: {detail}"
        else:
            why = f"the master at {self.config.master} did not accept the connection: {detail}"
        self._retry(why, delay)

    def _next_delay(self) -> float:
        delay = self._delay
        self._delay = min(self._delay * self.backoff.factor, self.backoff.maximum)
        return delay * (1 - self.backoff.jitter * random.random())

    def _retry(self, why: str, delay: float, logged: bool = False) -> None:
        if self._stopping or self._leaving or self._retry_call is not None:
            return
        if not logged:
            log.warn("{why}; retrying in {delay:.1f} s", why=why, delay=delay)
        self._outcome(f"retrying: {why}; next attempt in {delay:.1f} s")
        self._retry_call = self.reactor.callLater(delay, self._connect)

    def _outcome(self, text: str) -> None:
        if not self.first_outcome.called:
            self.first_outcome.callback(text)

    def _send(self, proto: WorkerClientProtocol, message: dict[str, Any]) -> None:
        # a command's messages go to the connection it came on, and nowhere once that is closed
        if proto is self._proto and proto.state == WebSocketProtocol.STATE_OPEN:
            proto.sendMessage(orjson.dumps(message), isBinary=False)

    # -- messages ------------------------------------------------------------------------------------

    def _received(self, proto: WorkerClientProtocol, payload: bytes, is_binary: bool) -> None:
        if proto is not self._proto:
            return
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            message = None
        if is_binary or not isinstance(message, dict) or not isinstance(message.get("type"), str):
            log.error("a message from the master is not a JSON object with a type; closing the connection")
            proto.sendClose(protocol.CLOSE_PROTOCOL, "not a JSON object with a type")
            return
        kind = message["type"]
        if kind == protocol.WELCOME:
            self._welcome(message)
        elif kind == protocol.ERROR:
            self._last_error = str(message.get("message") or "no message")
            log.warn("the master says: {message}", message=self._last_error)
        elif not self._welcomed:
            log.error("the master sent {kind!r} before welcoming the worker; ignored", kind=kind)
        elif kind == protocol.RUN:
            self._run(proto, message)
        elif kind == protocol.INTERRUPT:
            command = proto.throttle.commands.get(message.get("cmd"))  # type: ignore[arg-type]
            if command is None:
                log.info("interrupt of {cmd!r}, which is not running; ignored", cmd=message.get("cmd"))
            else:
                command.interrupt(str(message.get("reason") or "interrupted by the master"))
        elif kind == protocol.SHUTDOWN:
            defer.ensureDeferred(self._leave(proto, bool(message.get("graceful", True))))
        elif kind in (protocol.UPLOAD, protocol.DOWNLOAD, *protocol.TRANSFER_MESSAGES):
            proto.transfers.received(message)
        else:
            # a newer master's message: ignoring it keeps this worker usable
            log.warn("unknown message type {kind!r} from the master; ignored", kind=kind)

    def _welcome(self, message: dict[str, Any]) -> None:
        if self._welcome_call is not None and self._welcome_call.active():
            self._welcome_call.cancel()
        self._welcome_call = None
        self._welcomed = True
        self.workerid = message.get("workerid")
        self._delay = self.backoff.initial
        text = f"connected to {self.config.master} as {self.config.name} (workerid {self.workerid})"
        log.info("{text}", text=text)
        self._outcome(text)

    def _run(self, proto: WorkerClientProtocol, message: dict[str, Any]) -> None:
        cmd = message.get("cmd")
        if not isinstance(cmd, str) or not cmd:
            log.error("a run message without a cmd id; ignored: {message!r}", message=message)
            return
        commands = proto.throttle.commands
        if cmd in commands:
            # answering would mix an exit into the running command's messages: only log it
            log.error("run of {cmd!r}, which is already running; ignored", cmd=cmd)
            return
        try:
            if self._leaving or self._stopping:
                raise CommandRejected("the worker is shutting down and starts no new command")
            spec = parse_run(message)
        except CommandRejected as e:
            log.warn("{cmd}: refused: {why}", cmd=cmd, why=str(e))
            for answer in rejected(cmd, str(e)):
                self._send(proto, answer)
            return
        command = RunningCommand(spec, self.basedir, lambda m: self._send(proto, m), self.reactor, self.kill_grace)
        commands[cmd] = command
        self.active_commands.add(command)

        def ended(result: Any) -> Any:
            commands.pop(cmd, None)
            self.active_commands.discard(command)
            if command.pid is not None:
                self.groups.discard(command.pid)
            return result

        command.done.addBoth(ended)
        command.start()
        if command.pid is not None and not command.ended:
            self.groups.add(command.pid)
        if proto.throttle.paused:
            command.pauseProducing()

    # -- leaving -------------------------------------------------------------------------------------

    async def _wait_for_commands(self, timeout: float | None) -> None:
        pending = [c.done for c in self.active_commands]
        if not pending:
            return
        waiting = defer.DeferredList(pending, consumeErrors=True)
        if timeout is not None:
            waiting.addTimeout(timeout, self.reactor)
        try:
            await waiting
        except defer.TimeoutError:
            log.error("{n} command(s) still running after {t:g} s; leaving anyway", n=len(self.active_commands),
                      t=timeout)

    async def _close(self, reason: str) -> None:
        proto = self._proto
        if proto is None:
            return
        closed: defer.Deferred[None] = defer.Deferred()
        proto.is_closed.addBoth(lambda _: closed.callback(None) if not closed.called else None)
        proto.sendClose(protocol.CLOSE_NORMAL, reason)
        closed.addTimeout(STOP_CLOSE_TIMEOUT, self.reactor, onTimeoutCancel=lambda *_: proto.dropConnection())
        await closed

    async def _leave(self, proto: WorkerClientProtocol, graceful: bool) -> None:
        if self._leaving:
            return
        self._leaving = True
        log.info("the master asked the worker to leave ({how}); {n} command(s) running",
                 how="after its commands end" if graceful else "at once", n=len(self.active_commands))
        if not graceful:
            for command in list(self.active_commands):
                command.interrupt("the worker is shutting down")
        await self._wait_for_commands(None if graceful else self.kill_grace + 5)
        await self._close("shutdown")
        log.info("ci-worker left the master on its request; not reconnecting")
        self.left.callback(None)
        if self.on_leave is not None:
            self.on_leave()

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 - Twisted's name
        """Stop: interrupt running commands, report their exits, close the connection, stop reconnecting."""
        super().stopService()
        self._stopping = True
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        self._retry_call = None
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for command in list(self.active_commands):
            command.interrupt("the worker is stopping")
        await self._wait_for_commands(self.kill_grace + 5)
        self.groups.stop()
        await self._close("the worker is stopping")
