"""The master's side of the worker link: the WebSocket at ``/worker`` that workers connect to.

:class:`WorkerLink` accepts workers speaking :mod:`ci_common.protocol`, authenticates
them against the configured workers, records them connected through the data API and hands
each one to the engine as a :class:`WorkerConnection` (``IWorkerConnection``).  Everything a
peer sends is checked before it is used; a message that breaks the protocol gets an
``error`` and a close, never an exception in the reactor.

A connection goes through these phases::

    hello -> auth -> attaching -> attached -> closed
      (any phase may go straight to closed when the peer leaves or is refused)
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, reactor, threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ci_common import protocol as P
from master.engine.filelink import FileTransfers, TransferProtocolError
from master.engine.interfaces import (
    Command,
    CommandResult,
    IRunningCommand,
    IWorkerConnection,
    IWorkerListener,
    OutputCallback,
    WorkerLost,
)
from master.security import check_password, hash_password, is_password_hash

if TYPE_CHECKING:
    from master.data.connector import DataAPI

log = Logger()

# WebSocket pings every PING_INTERVAL seconds, the connection dropped when the pong is
# PING_TIMEOUT late: a dead peer (cable pulled, VM frozen) is noticed within 50 s.  Autobahn
# rounds these timers to whole seconds (txaio's batched timers), so use at least 1.
PING_INTERVAL = 25.0
PING_TIMEOUT = 25.0
# An output message carries at most OUTPUT_CHUNK (64 KiB) of text, which JSON escaping can
# grow up to 6 times (\u00XX); 1 MiB holds that with room to spare and bounds what one peer
# can make the master buffer.  Bigger messages are refused by Autobahn with close code 1009.
MAX_MESSAGE_SIZE = 1024 * 1024
# How long a peer may take to answer our close before the TCP connection is dropped.
CLOSE_TIMEOUT = 5.0
# scrypt checks run in threads (about 60 ms each); at most this many at once, so that a
# flood of bad hellos cannot take every thread of the reactor's pool from the database.
AUTH_CONCURRENCY = 2

BAD_CREDENTIALS = "unknown worker or wrong password"

class _ProtocolError(Exception):
    """The peer broke the protocol; the message is sent to it in an ``error``."""


# -- passwords ------------------------------------------------------------------------------


def _hashed(password: str) -> str:
    """*password* as kept in memory: configured hashes as they are, plaintext hashed once here."""
    return password if is_password_hash(password) else hash_password(password)


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches, made once when first needed."""
    return hash_password(os.urandom(16).hex())


def _check_password(password: str, stored: str | None) -> bool:
    """Whether *password* matches the *stored* hash; False for an unknown worker (*stored* None).

    An unknown name is checked against a dummy hash all the same, so that it takes as long
    as a wrong password and the time taken does not tell which names exist.
    """
    ok = check_password(password, stored if stored is not None else _dummy_hash())
    return ok and stored is not None


def _worker_passwords(workers: Mapping[str, Any] | Sequence[Any]) -> dict[str, str]:
    """The password hash of each worker, from a mapping name -> WorkerConfig or an iterable of them."""
    if isinstance(workers, Mapping):
        items = list(workers.items())
    else:
        items = [(worker.name, worker) for worker in workers]
    return {name: _hashed(worker.password) for name, worker in items}


# -- message checks -------------------------------------------------------------------------


def _field(message: dict[str, Any], key: str, types: type | tuple[type, ...], nullable: bool = False) -> Any:
    """``message[key]``, which must be present and of *types* (None allowed if *nullable*; bool is no int)."""
    if key not in message:
        raise _ProtocolError(f"{message['type']}: missing field {key!r}")
    value = message[key]
    if value is None and nullable:
        return None
    wanted = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in wanted or not isinstance(value, wanted):
        names = " or ".join(t.__name__ for t in wanted) + (" or null" if nullable else "")
        raise _ProtocolError(f"{message['type']}: field {key!r} must be {names}")
    return value


def _parse(payload: bytes, is_binary: bool) -> dict[str, Any]:
    """The JSON object of one message, with a string ``type``."""
    if is_binary:
        raise _ProtocolError("binary messages are not part of the protocol; send JSON text")
    try:
        # orjson also refuses lone surrogates and nesting beyond 1024 levels, which would
        # otherwise get as far as the database
        message = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise _ProtocolError("a message is not valid JSON") from None
    if not isinstance(message, dict):
        raise _ProtocolError("a message must be a JSON object")
    if not isinstance(message.get("type"), str):
        raise _ProtocolError("a message must have a string 'type'")
    return message


def _check_hello(message: dict[str, Any]) -> tuple[str, str, dict[str, Any], int]:
    """(name, password, info, max_builds) of a valid hello."""
    version = _field(message, "protocol", int)
    if version != P.PROTOCOL_VERSION:
        raise _ProtocolError(f"unsupported protocol version {version}; this master speaks {P.PROTOCOL_VERSION}")
    name = _field(message, "name", str)
    if not name:
        raise _ProtocolError("hello: 'name' must not be empty")
    password = _field(message, "password", str)
    info = _field(message, "info", dict)
    try:
        # stored as JSON through orjson, which writes at most 254 levels of nesting
        orjson.dumps(info)
    except TypeError:
        raise _ProtocolError("hello: 'info' cannot be stored as JSON (nested too deeply)") from None
    max_builds = _field(message, "max_builds", int)
    if max_builds < 1:
        raise _ProtocolError("hello: 'max_builds' must be at least 1")
    return name, password, info, max_builds


def _check_exit(message: dict[str, Any]) -> CommandResult:
    """The CommandResult of a valid exit message."""
    return CommandResult(
        rc=_field(message, "rc", int, nullable=True),
        signal=_field(message, "signal", str, nullable=True),
        interrupted=_field(message, "interrupted", bool),
        timed_out=_field(message, "timed_out", bool),
        elapsed=float(_field(message, "elapsed", (int, float))),
    )


# -- commands and connections ---------------------------------------------------------------


@implementer(IRunningCommand)
class RunningCommand:
    """A command running on a worker: ``result`` fires with its CommandResult or fails with WorkerLost.

    Output reaches ``on_output`` in order.  When ``on_output`` returns a Deferred, the next
    chunk waits for it, and ``result`` fires only once every chunk has been handled, so the
    engine never sees the end of a command before the end of its output.
    """

    def __init__(self, connection: WorkerConnection, cmd_id: str, on_output: OutputCallback) -> None:
        self.id = cmd_id
        self.result: defer.Deferred = defer.Deferred()
        self.done = False
        self._connection = connection
        self._on_output = on_output
        self._delivered: defer.Deferred = defer.succeed(None)

    def interrupt(self, reason: str) -> None:
        """Ask the worker to stop the command; its ``exit`` follows (nothing to do once it ended)."""
        if not self.done:
            self._connection._send({"type": P.INTERRUPT, "cmd": self.id, "reason": str(reason)})

    def _output(self, stream: str, text: str) -> None:
        self._delivered.addCallback(lambda _: self._deliver(stream, text))

    def _deliver(self, stream: str, text: str) -> defer.Deferred:
        d = defer.maybeDeferred(self._on_output, stream, text)
        # a failing output callback is the engine's bug: log it, keep the command and the connection
        d.addErrback(lambda f: log.failure("output callback of command {cmd} failed", f, cmd=self.id))
        return d

    def _finish(self, outcome: CommandResult | Failure) -> None:
        if self.done:
            return
        self.done = True

        def fire(_: Any) -> None:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)

        self._delivered.addCallback(fire)


@implementer(IWorkerConnection)
class WorkerConnection:
    """A worker connected and authenticated: runs commands on it (``IWorkerConnection``)."""

    def __init__(self, protocol: WorkerProtocol, name: str, workerid: int, info: dict[str, Any],
                 max_builds: int, features: tuple[str, ...] = ()) -> None:
        self.name = name
        self.workerid = workerid
        self.info = info
        self.max_builds = max_builds
        self.connected = True
        self.commands: dict[str, RunningCommand] = {}
        self._protocol = protocol
        self._ids = itertools.count(1)
        self._on_disconnect: list[Callable[[], Any]] = []
        # file transfers (master/engine/filelink.py): steps call conn.files.upload / download
        self.files = FileTransfers(self._send, name, P.TRANSFER_FEATURE in features)

    def __repr__(self) -> str:
        return f"<WorkerConnection {self.name} workerid={self.workerid}{'' if self.connected else ' (lost)'}>"

    def run(self, command: Command, on_output: OutputCallback) -> RunningCommand:
        """Start *command* on the worker; its result fails with WorkerLost at once if the worker has gone."""
        if (command.argv is None) == (command.shell is None):
            raise ValueError("a Command needs exactly one of argv and shell")
        running = RunningCommand(self, f"c{next(self._ids)}", on_output)
        if not self.connected:
            running._finish(Failure(WorkerLost(f"worker {self.name} is not connected")))
            return running
        self.commands[running.id] = running
        message: dict[str, Any] = {"type": P.RUN, "cmd": running.id}
        if command.argv is not None:
            message["argv"] = list(command.argv)
        else:
            message["shell"] = command.shell
        message.update(env=dict(command.env), workdir=command.workdir, builder=command.builder,
                       timeout=command.timeout, max_time=command.max_time)
        if command.shown is not None:
            message["shown"] = command.shown
        self._send(message)
        return running

    def shutdown(self, graceful: bool) -> None:
        """Ask the worker to leave: after its commands end (*graceful*) or interrupting them."""
        self._send({"type": P.SHUTDOWN, "graceful": bool(graceful)})

    def notify_on_disconnect(self, callback: Callable[[], Any]) -> None:
        """Call *callback* once when the worker disconnects (at once if it has already)."""
        if self.connected:
            self._on_disconnect.append(callback)
        else:
            _call_safely(callback, "disconnect callback")

    def disconnect(self, code: int = P.CLOSE_NORMAL, reason: str = "disconnected by the master") -> None:
        """Close the connection with *code*; the usual disconnect handling follows."""
        self._protocol.refuse(code, reason)

    def _send(self, message: dict[str, Any]) -> None:
        if self.connected:
            self._protocol.send(message)

    def _output(self, message: dict[str, Any]) -> None:
        command = self._command(message)
        stream = _field(message, "stream", str)
        if stream not in ("o", "e"):
            raise _ProtocolError("output: 'stream' must be 'o' or 'e'")
        command._output(stream, _field(message, "text", str))

    def _exit(self, message: dict[str, Any]) -> None:
        command = self._command(message)
        result = _check_exit(message)
        del self.commands[command.id]
        command._finish(result)

    def _command(self, message: dict[str, Any]) -> RunningCommand:
        cmd = _field(message, "cmd", str)
        command = self.commands.get(cmd)
        if command is None:
            raise _ProtocolError(f"{message['type']}: no command {cmd!r} is running")
        return command

    def _lost(self) -> None:
        """The worker is gone: fail what runs, then tell whoever asked."""
        self.connected = False
        self.files.lost()
        commands, self.commands = self.commands, {}
        for command in commands.values():
            command._finish(Failure(WorkerLost(f"worker {self.name} disconnected while command {command.id} ran")))

    def _run_disconnect_callbacks(self) -> None:
        callbacks, self._on_disconnect = self._on_disconnect, []
        for callback in callbacks:
            _call_safely(callback, "disconnect callback")


def _call_safely(function: Callable[..., Any], what: str, *args: Any) -> None:
    """Call *function*; log what it raises or what its Deferred fails with, never propagate it."""
    try:
        result = function(*args)
    except Exception:
        log.failure(f"{what} failed")
        return
    if isinstance(result, defer.Deferred):
        result.addErrback(lambda f: log.failure(f"{what} failed", f))


# -- the WebSocket protocol -----------------------------------------------------------------


class WorkerProtocol(WebSocketServerProtocol):
    """One worker's WebSocket on the master: the hello, then commands' output and exits."""

    factory: _WorkerFactory

    def __init__(self) -> None:
        super().__init__()
        self.phase = "hello"  # ours; Autobahn uses self.state for the WebSocket
        self.closing = False
        self.name: str | None = None
        self.features: tuple[str, ...] = ()
        self.connection: WorkerConnection | None = None
        self._hello_timer: Any = None
        self._finished = False
        self._finished_waiters: list[defer.Deferred] = []

    @property
    def link(self) -> WorkerLink:
        """The WorkerLink this connection belongs to."""
        return self.factory.link

    # Autobahn's callbacks

    def onConnect(self, request: Any) -> None:  # noqa: N802 (Autobahn's name)
        """Refuse the WebSocket upgrade while the master stops."""
        if self.link.stopping:
            raise ConnectionDeny(ConnectionDeny.SERVICE_UNAVAILABLE, "the master is shutting down")

    def onOpen(self) -> None:  # noqa: N802
        """Start waiting for the hello."""
        if self.link.stopping:  # stop() began during the opening handshake
            self.refuse(P.CLOSE_SHUTDOWN, "the master is shutting down")
            return
        self.link._protocols.add(self)
        self._hello_timer = reactor.callLater(self.link.hello_timeout, self._hello_timed_out)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        """Handle one message; a protocol error closes the connection, nothing is raised to the reactor."""
        if self.closing or self.phase == "closed":
            return  # what a peer sends after we closed cannot change anything
        try:
            self._handle(_parse(payload, isBinary))
        except _ProtocolError as e:
            self.refuse(P.CLOSE_PROTOCOL, str(e))
        except Exception:
            log.failure("worker {name}: error handling a message", name=self.name or self.peer)
            self.refuse(P.CLOSE_SHUTDOWN, "internal error on the master; try again later")

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        """The connection is gone, however it ended: record it and tell the engine."""
        if self._hello_timer is not None and self._hello_timer.active():
            self._hello_timer.cancel()
        previous, self.phase = self.phase, "closed"
        if previous == "attached":
            d = defer.ensureDeferred(self._detach())
            d.addErrback(lambda f: log.failure("worker {name}: error while detaching", f, name=self.name))
        elif previous != "attaching":  # an attaching connection is cleaned up by _attach when it resumes
            self._finish()

    # sending and closing

    def send(self, message: dict[str, Any]) -> None:
        """Send *message* as JSON text, unless the connection is closing."""
        # A close the peer started puts Autobahn's state in CLOSING before onClose runs, and
        # sendMessage then raises Disconnected: what was to be sent no longer matters.
        if not self.closing and self.phase != "closed" and self.state == self.STATE_OPEN:
            self.sendMessage(orjson.dumps(message), isBinary=False)

    def refuse(self, code: int, reason: str) -> None:
        """Send an ``error`` saying *reason*, then close with *code* (once; later calls do nothing)."""
        if self.closing or self.phase == "closed":
            return
        if code != P.CLOSE_NORMAL:
            self.send({"type": P.ERROR, "message": reason})
        self.closing = True
        self.sendClose(code, reason)

    def when_finished(self) -> defer.Deferred:
        """A Deferred firing once the connection is closed and every consequence of that is done."""
        d: defer.Deferred = defer.Deferred()
        if self._finished:
            d.callback(None)
        else:
            self._finished_waiters.append(d)
        return d

    def _finish(self) -> None:
        self._finished = True
        self.link._protocols.discard(self)
        waiters, self._finished_waiters = self._finished_waiters, []
        for d in waiters:
            d.callback(None)

    # the protocol

    def _hello_timed_out(self) -> None:
        self._hello_timer = None
        if self.phase == "hello":
            self.refuse(P.CLOSE_PROTOCOL, f"no hello within {self.link.hello_timeout:g} seconds")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.phase == "hello":
            if kind != P.HELLO:
                raise _ProtocolError(f"expected a hello, got {kind!r}")
            name, password, info, max_builds = _check_hello(message)
            features = message.get("features")
            self.features = tuple(f for f in features if isinstance(f, str)) if isinstance(features, list) else ()
            self._hello_timer.cancel()
            self._hello_timer = None
            self.phase, self.name = "auth", name
            d = defer.ensureDeferred(self._attach(name, password, info, max_builds))
            d.addErrback(self._attach_failed)
        elif self.phase in ("auth", "attaching"):
            raise _ProtocolError(f"{kind!r} before the welcome")
        elif kind == P.OUTPUT:
            self._attached._output(message)
        elif kind == P.EXIT:
            self._attached._exit(message)
        elif kind in P.TRANSFER_MESSAGES:
            try:
                self._attached.files.received(message)
            except TransferProtocolError as e:
                raise _ProtocolError(str(e)) from None
        elif kind in (P.HELLO, P.WELCOME, P.ERROR, P.RUN, P.INTERRUPT, P.SHUTDOWN, P.UPLOAD, P.DOWNLOAD):
            raise _ProtocolError(f"a worker does not send {kind!r} now")
        else:
            raise _ProtocolError(f"unknown message type {kind!r}")

    async def _attach(self, name: str, password: str, info: dict[str, Any], max_builds: int) -> None:
        link = self.link
        if not await link._check_credentials(name, password):
            self.refuse(P.CLOSE_BAD_CREDENTIALS, BAD_CREDENTIALS)
            return
        # another connection of the same name that is going away (closed, or being closed by us)
        # holds the name until its disconnection is recorded: wait for that, so that a worker
        # reconnecting at once is not taken for a duplicate
        while (other := link._claims.get(name)) is not None and (other.phase == "closed" or other.closing):
            await other.when_finished()
        if self.phase == "closed" or self.closing:
            return
        if link.stopping:
            self.refuse(P.CLOSE_SHUTDOWN, "the master is shutting down")
            return
        if name not in link._passwords:  # removed by a reconfig while the password was checked
            self.refuse(P.CLOSE_BAD_CREDENTIALS, BAD_CREDENTIALS)
            return
        if name in link._claims:
            self.refuse(P.CLOSE_DUPLICATE, f"a worker named {name!r} is connected already")
            return
        link._claims[name] = self
        self.phase = "attaching"
        try:
            workerid = await link.data.updates.find_worker_id(name)
            await link.data.updates.worker_connected(workerid, link.masterid, info)
        except Exception:
            log.failure("worker {name}: could not record the connection", name=name)
            self._release()
            if self.phase == "closed":
                self._finish()
            else:
                self.phase = "auth"  # so that the close below goes through the ordinary path
                self.refuse(P.CLOSE_SHUTDOWN, "the master could not record the connection; try again later")
            return
        self.connection = WorkerConnection(self, name, workerid, info, max_builds, self.features)
        if self.phase == "closed":  # the peer left (or stop() closed it) while we wrote to the database
            await self._detach(attached=False)
            return
        self.phase = "attached"
        link.connections[name] = self.connection
        # the welcome goes first: worker_attached may start a command at once
        self.send({"type": P.WELCOME, "workerid": workerid})
        log.info("worker {name} connected from {peer} (workerid {workerid})", name=name, peer=self.peer,
                 workerid=workerid)
        _call_safely(link.listener.worker_attached, "worker_attached", self.connection)

    def _attach_failed(self, failure: Failure) -> None:
        log.failure("worker {name}: error while connecting", failure, name=self.name)
        self._release()
        if self.phase == "closed":
            self._finish()
        else:
            self.phase = "auth"
            self.refuse(P.CLOSE_SHUTDOWN, "internal error on the master; try again later")

    @property
    def _attached(self) -> WorkerConnection:
        """The worker's connection, once it is attached (RuntimeError before)."""
        if self.connection is None:
            raise RuntimeError(f"worker {self.name!r} is not attached")
        return self.connection

    async def _detach(self, attached: bool = True) -> None:
        """Record the disconnection, fail running commands, tell the engine, run the callbacks."""
        link, connection = self.link, self._attached
        try:
            if link.connections.get(connection.name) is connection:
                del link.connections[connection.name]
            connection.connected = False  # from now on, run() fails at once
            try:
                await link.data.updates.worker_disconnected(connection.workerid, link.masterid)
            except Exception:
                log.failure("worker {name}: could not record the disconnection", name=connection.name)
            connection._lost()
            if attached:
                log.info("worker {name} disconnected", name=connection.name)
                _call_safely(link.listener.worker_detached, "worker_detached", connection)
            connection._run_disconnect_callbacks()
        finally:
            self._release()
            self._finish()

    def _release(self) -> None:
        if self.name is not None and self.link._claims.get(self.name) is self:
            del self.link._claims[self.name]


class _WorkerFactory(WebSocketServerFactory):
    """Builds a WorkerProtocol per connection; knows its WorkerLink."""

    # Twisted's Factory[P] takes protocols whose factory is typed Factory[Self]; ours says _WorkerFactory
    protocol = WorkerProtocol  # type: ignore[assignment]

    def __init__(self, link: WorkerLink) -> None:
        super().__init__()
        self.link = link


# -- the link -------------------------------------------------------------------------------


class WorkerLink:
    """The workers' WebSocket endpoint: authenticates workers and hands them to *listener*.

    *workers* maps each allowed name to an object with a ``password`` (a ``WorkerConfig``);
    an iterable of ``WorkerConfig`` is accepted too.  A password given in plaintext is
    hashed here once; one that is already a ``hash_password`` hash is used as it is.  Only
    hashes are kept.
    """

    def __init__(
        self,
        data: DataAPI,
        masterid: int,
        workers: Mapping[str, Any] | Sequence[Any],
        listener: IWorkerListener,
        *,
        hello_timeout: float = P.HELLO_TIMEOUT,
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.data = data
        self.masterid = masterid
        self.listener = listener
        self.hello_timeout = hello_timeout
        self.connections: dict[str, WorkerConnection] = {}
        self.stopping = False
        self._passwords = _worker_passwords(workers)
        self._auth_slots = defer.DeferredSemaphore(AUTH_CONCURRENCY)
        self._claims: dict[str, WorkerProtocol] = {}  # name -> the connection attaching, attached or detaching
        self._protocols: set[WorkerProtocol] = set()  # every open connection, for stop()
        self._factory = _WorkerFactory(self)
        self._factory.setProtocolOptions(
            autoPingInterval=ping_interval,
            autoPingTimeout=ping_timeout,
            maxMessagePayloadSize=max_message_size,
            maxFramePayloadSize=max_message_size,
            # twisted.web has read the whole upgrade request before this resource runs, so the
            # opening handshake ends at once; this only bounds a stuck one
            openHandshakeTimeout=P.HELLO_TIMEOUT,
            closeHandshakeTimeout=CLOSE_TIMEOUT,
            # a peer breaking WebSocket rules (a message too big...) gets a close frame saying why,
            # not a bare TCP drop
            failByDrop=False,
        )

    def resource(self) -> WebSocketResource:
        """The twisted.web resource to mount at ``/worker``."""
        return WebSocketResource(self._factory)

    def reconfig(self, workers: Mapping[str, Any] | Sequence[Any]) -> None:
        """Replace the allowed workers; connected workers no longer allowed are disconnected.

        A changed password applies from the worker's next connection on.
        """
        old = self._passwords
        self._passwords = _worker_passwords(workers)
        for name in old.keys() - self._passwords.keys():
            protocol = self._claims.get(name)
            if protocol is not None:
                log.info("worker {name} was removed from the configuration: disconnecting it", name=name)
                protocol.refuse(P.CLOSE_BAD_CREDENTIALS, "this worker was removed from the master's configuration")

    async def stop(self) -> None:
        """Refuse new workers, close every connection and wait until each disconnection is recorded."""
        self.stopping = True
        protocols = list(self._protocols)
        for protocol in protocols:
            protocol.refuse(P.CLOSE_SHUTDOWN, "the master is shutting down")
        await defer.gatherResults([protocol.when_finished() for protocol in protocols])

    async def _check_credentials(self, name: str, password: str) -> bool:
        stored = self._passwords.get(name)
        # scrypt is slow by design: off the reactor thread
        return await self._auth_slots.run(threads.deferToThread, _check_password, password, stored)
