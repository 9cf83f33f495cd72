"""The worker link: real WebSocket workers (Autobahn clients) against /worker on a real port, on both backends."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from apiclient import Api, serve
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from waiting import within
from zope.interface.verify import verifyObject

from ci_common import protocol as P
from master.config import WorkerConfig
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.engine.interfaces import Command, CommandResult, IRunningCommand, IWorkerConnection, WorkerLost
from master.engine.workerlink import BAD_CREDENTIALS, WorkerConnection, WorkerLink, WorkerProtocol
from master.security import hash_password
from master.www.rest import RestApi
from master.www.site import build_site

INFO = {"os": "Linux", "python": "3.11.7", "hostname": "box1"}
HELLO_TIMEOUT = 0.5
WAIT = 5.0  # no single step of a test should take near this long
# w2 and w3 have their passwords configured already hashed (made once: scrypt is slow)
W2_HASH = hash_password("pw2")
W3_HASH = hash_password("pw3")


def hello(name: str = "w1", password: str = "pw1", **extra: Any) -> dict[str, Any]:
    return {"type": "hello", "protocol": 1, "name": name, "password": password, "info": INFO, "max_builds": 2,
            **extra}


class Peer(WebSocketClientProtocol):
    """A worker: messages received go to a queue, and ``closed`` fires with (code, reason)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: defer.DeferredQueue = defer.DeferredQueue()
        self.closed: defer.Deferred = defer.Deferred()

    def onOpen(self) -> None:  # noqa: N802
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        self.messages.put(json.loads(payload))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:  # noqa: N802, N803
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"not opened: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback((code, reason))

    def send(self, message: Any) -> None:
        self.sendMessage(message if isinstance(message, bytes) else json.dumps(message).encode())

    async def receive(self) -> dict[str, Any]:
        return await within(self.messages.get())

    async def close_code(self) -> int | None:
        return (await within(self.closed))[0]


class Recorder:
    """The engine's side (IWorkerListener): what was attached and detached, as a queue of events."""

    def __init__(self) -> None:
        self.events: defer.DeferredQueue = defer.DeferredQueue()

    def worker_attached(self, connection: WorkerConnection) -> None:
        self.events.put(("attached", connection))

    def worker_detached(self, connection: WorkerConnection) -> None:
        self.events.put(("detached", connection))

    async def next(self) -> tuple[str, WorkerConnection]:
        return await within(self.events.get())

    def pending(self) -> list[Any]:
        return list(self.events.pending)


class Env:
    """A served WorkerLink and what the tests need around it."""

    def __init__(self, api: Api, link: WorkerLink, listener: Recorder, masterid: int) -> None:
        self.api, self.link, self.listener, self.masterid = api, link, listener, masterid
        self.ws_url = api.url.replace("http://", "ws://") + "/worker"

    async def connect(self) -> Peer:
        factory = WebSocketClientFactory(self.ws_url)
        factory.protocol = Peer
        factory.opened = defer.Deferred()
        host, port = self.api.url.removeprefix("http://").split(":")
        reactor.connectTCP(host, int(port), factory)
        return await within(factory.opened)

    async def attach(self, name: str = "w1", password: str = "pw1") -> tuple[Peer, WorkerConnection]:
        peer = await self.connect()
        peer.send(hello(name, password))
        welcome = await peer.receive()
        assert welcome["type"] == "welcome", welcome
        event, connection = await self.listener.next()
        assert event == "attached" and connection.name == name and welcome["workerid"] == connection.workerid
        return peer, connection

    async def connected_to(self, name: str) -> list[dict[str, int]]:
        code, body, _ = await self.api.get(f"/api/v2/workers/{name}?field=connected_to,workerinfo")
        assert code == 200, body
        return body["workers"][0]["connected_to"]


async def make_env(storage: Any, **options: Any) -> tuple[DataAPI, WorkerLink, Recorder, int]:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    masterid = await data.updates.master_active("m1")
    listener = Recorder()
    workers = {"w1": WorkerConfig("w1", "pw1"), "w2": WorkerConfig("w2", W2_HASH), "w3": WorkerConfig("w3", W3_HASH)}
    link = WorkerLink(data, masterid, workers, listener, hello_timeout=HELLO_TIMEOUT, **options)
    return data, link, listener, masterid


@pytest_twisted.async_yield_fixture()
async def env(storage: Any, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    options = getattr(request, "param", {})
    data, link, listener, masterid = await make_env(storage, **options)
    site = build_site({"api": RestApi(data).resource(), "worker": link.resource()})
    async with serve(data, site) as api:
        try:
            yield Env(api, link, listener, masterid)
        finally:
            await link.stop()


# -- connecting --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_hello_welcome_and_disconnect(env: Env) -> None:
    code, body, _ = await env.api.get("/api/v2/workers")
    assert body["workers"] == []  # a worker is recorded when it first connects
    peer, connection = await env.attach()
    assert env.link.connections == {"w1": connection}
    assert (connection.info, connection.max_builds) == (INFO, 2)
    code, body, _ = await env.api.get(f"/api/v2/workers/{connection.workerid}")
    assert body["workers"][0]["name"] == "w1"
    assert body["workers"][0]["connected_to"] == [{"masterid": env.masterid}]
    assert body["workers"][0]["workerinfo"] == INFO
    # a password configured as a hash works the same
    peer2, connection2 = await env.attach("w2", "pw2")
    assert set(env.link.connections) == {"w1", "w2"}

    called = []
    connection.notify_on_disconnect(lambda: called.append("w1"))
    peer.sendClose(P.CLOSE_NORMAL)
    assert await env.listener.next() == ("detached", connection)
    assert not connection.connected and env.link.connections == {"w2": connection2}
    assert await env.connected_to("w1") == []
    assert called == ["w1"]  # the disconnect callbacks run right after worker_detached
    # once disconnected, callbacks run at once
    connection.notify_on_disconnect(lambda: called.append("late"))
    assert called == ["w1", "late"]
    assert await env.connected_to("w2") == [{"masterid": env.masterid}]


@pytest_twisted.ensureDeferred
async def test_bad_credentials(env: Env) -> None:
    errors = []
    for name, password in [("w1", "wrong"), ("nobody", "pw1"), ("w2", W2_HASH)]:
        peer = await env.connect()
        peer.send(hello(name, password))
        message = await peer.receive()
        assert message["type"] == "error"
        errors.append(message["message"])
        assert await peer.close_code() == P.CLOSE_BAD_CREDENTIALS
    # the same words whether the name is unknown or the password wrong
    assert errors == [BAD_CREDENTIALS] * 3
    assert env.listener.pending() == [] and env.link.connections == {}
    code, body, _ = await env.api.get("/api/v2/workers")
    assert body["workers"] == []  # nothing recorded for refused peers


@pytest.mark.slow  # waits for the hello timeout in real time
@pytest_twisted.ensureDeferred
async def test_hello_timeout(env: Env) -> None:
    peer = await env.connect()
    started = reactor.seconds()
    message = await peer.receive()
    assert message == {"type": "error", "message": f"no hello within {HELLO_TIMEOUT:g} seconds"}
    assert await peer.close_code() == P.CLOSE_PROTOCOL
    assert HELLO_TIMEOUT * 0.9 <= reactor.seconds() - started < HELLO_TIMEOUT + 2


MALFORMED = [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b"{\"type\": 3}", "string 'type'"),
    (b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ({"type": "nope"}, "expected a hello"),
    ({"type": "output", "cmd": "c1", "stream": "o", "text": "x"}, "expected a hello"),
    (hello(protocol=2), "unsupported protocol version 2"),
    (hello(protocol="1"), "'protocol' must be int"),
    ({k: v for k, v in hello().items() if k != "name"}, "missing field 'name'"),
    (hello(name=""), "must not be empty"),
    (hello(password=None), "'password' must be str"),
    (hello(info=["x"]), "'info' must be dict"),
    (json.dumps(hello(name="\ud800")).encode(), "not valid JSON"),  # a lone surrogate
    (hello(info=json.loads("[" * 300 + "]" * 300)), "'info' must be dict"),
    (hello(info={"deep": json.loads("[" * 300 + "]" * 300)}), "cannot be stored as JSON"),
    (hello(max_builds=True), "'max_builds' must be int"),
    (hello(max_builds=0), "at least 1"),
]


@pytest_twisted.ensureDeferred
async def test_malformed_hello(env: Env) -> None:
    for payload, words in MALFORMED:
        peer = await env.connect()
        peer.send(payload)
        message = await peer.receive()
        assert message["type"] == "error" and words in message["message"], (payload[:40], message)
        assert await peer.close_code() == P.CLOSE_PROTOCOL
    peer = await env.connect()
    peer.sendMessage(b"\x00\x01", isBinary=True)
    assert "binary" in (await peer.receive())["message"]
    assert await peer.close_code() == P.CLOSE_PROTOCOL
    # bigger than the bound: Autobahn refuses it with "message too big"
    peer = await env.connect()
    peer.send(hello(info={"pad": "x" * (1024 * 1024)}))
    assert await peer.close_code() == 1009
    assert env.listener.pending() == [] and env.link.connections == {}


@pytest_twisted.ensureDeferred
async def test_malformed_after_welcome(env: Env) -> None:
    bad = [
        hello(),
        {"type": "run", "cmd": "c1", "argv": ["x"]},
        {"type": "weird"},
        {"type": "output", "cmd": "c9", "stream": "o", "text": "x"},
        {"type": "output", "cmd": "c1", "stream": "x", "text": "x"},
        {"type": "exit", "cmd": "c1", "rc": "0", "signal": None, "interrupted": False, "timed_out": False,
         "elapsed": 1},
        {"type": "exit", "cmd": "c1", "rc": 0, "signal": None, "interrupted": False, "timed_out": False},
    ]
    for message in bad:
        peer, connection = await env.attach()
        running = connection.run(Command(argv=["true"]), lambda stream, text: None)
        assert (await peer.receive())["type"] == "run"
        peer.send(message)
        error = await peer.receive()
        assert error["type"] == "error", (message, error)
        assert await peer.close_code() == P.CLOSE_PROTOCOL
        assert await env.listener.next() == ("detached", connection)
        with pytest.raises(WorkerLost):
            await within(running.result)
    assert await env.connected_to("w1") == []


@pytest_twisted.ensureDeferred
async def test_duplicate_name(env: Env) -> None:
    peer, connection = await env.attach()
    second = await env.connect()
    second.send(hello())
    message = await second.receive()
    assert message["type"] == "error" and "connected already" in message["message"]
    assert await second.close_code() == P.CLOSE_DUPLICATE
    # the first one is untouched
    assert env.link.connections == {"w1": connection} and connection.connected
    assert env.listener.pending() == []
    assert await env.connected_to("w1") == [{"masterid": env.masterid}]


@pytest_twisted.ensureDeferred
async def test_quick_reconnect_is_not_a_duplicate(env: Env) -> None:
    peer, connection = await env.attach()
    peer.transport.abortConnection()  # the TCP connection dies; the worker reconnects at once
    again = await env.connect()
    again.send(hello())
    assert (await again.receive())["type"] == "welcome"
    assert await env.listener.next() == ("detached", connection)
    event, new = await env.listener.next()
    assert event == "attached" and new is not connection and env.link.connections == {"w1": new}
    assert await env.connected_to("w1") == [{"masterid": env.masterid}]
    # a connection the master is closing does not make a quick reconnect a duplicate either
    again.send({"type": "bogus"})
    third = await env.connect()
    third.send(hello())
    assert (await third.receive())["type"] == "welcome"
    assert await again.close_code() == P.CLOSE_PROTOCOL
    assert await env.listener.next() == ("detached", new)
    assert (await env.listener.next())[0] == "attached"


# -- commands ----------------------------------------------------------------------------------


def exit_message(cmd: str, rc: int | None = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "exit", "cmd": cmd, "rc": rc, "signal": None, "interrupted": False, "timed_out": False,
            "elapsed": 1.25, **extra}


@pytest_twisted.ensureDeferred
async def test_run_command(env: Env) -> None:
    peer, connection = await env.attach()
    seen: list[tuple[str, str]] = []
    command = Command(argv=["make", "test"], env={"A": "1", "B": None}, builder="b1", workdir="src", timeout=60)
    running = connection.run(command, lambda stream, text: seen.append((stream, text)))
    assert running.id == "c1"
    assert verifyObject(IWorkerConnection, connection) and verifyObject(IRunningCommand, running)
    assert await peer.receive() == {
        "type": "run", "cmd": "c1", "argv": ["make", "test"], "env": {"A": "1", "B": None}, "workdir": "src",
        "builder": "b1", "timeout": 60, "max_time": None,
    }
    chunks = [("o", f"line {i}\n") for i in range(50)] + [("e", "warning: é\n"), ("o", "done\n")]
    for stream, text in chunks:
        peer.send({"type": "output", "cmd": "c1", "stream": stream, "text": text})
    peer.send(exit_message("c1", 0))
    assert await within(running.result) == CommandResult(rc=0, signal=None, interrupted=False, timed_out=False,
                                                          elapsed=1.25)
    assert seen == chunks

    # a shell command, interrupted; output callbacks returning Deferreds are waited for, in order
    slow: list[str] = []

    def on_output(stream: str, text: str) -> defer.Deferred:
        return deferLater(reactor, 0.01, slow.append, text)

    running = connection.run(Command(shell="sleep 100", timeout=None), on_output)
    assert running.id == "c2"
    message = await peer.receive()
    assert message["shell"] == "sleep 100" and "argv" not in message and message["timeout"] is None
    running.interrupt("cancelled by alice")
    assert await peer.receive() == {"type": "interrupt", "cmd": "c2", "reason": "cancelled by alice"}
    for i in range(5):
        peer.send({"type": "output", "cmd": "c2", "stream": "o", "text": str(i)})
    peer.send(exit_message("c2", None, signal="SIGTERM", interrupted=True))
    result = await within(running.result)
    assert (result.rc, result.signal, result.interrupted) == (None, "SIGTERM", True)
    assert slow == ["0", "1", "2", "3", "4"]  # all delivered before the result
    running.interrupt("too late")  # nothing is sent for a command that ended

    # a failing output callback is logged; the command and the connection carry on
    def broken(stream: str, text: str) -> None:
        raise RuntimeError("engine bug")

    running = connection.run(Command(argv=["x"]), broken)
    assert (await peer.receive())["cmd"] == "c3"
    peer.send({"type": "output", "cmd": "c3", "stream": "o", "text": "x"})
    peer.send(exit_message("c3", 2))
    assert (await within(running.result)).rc == 2
    connection.shutdown(graceful=True)
    assert await peer.receive() == {"type": "shutdown", "graceful": True}
    with pytest.raises(ValueError):
        connection.run(Command(), broken)
    assert connection.connected


@pytest_twisted.ensureDeferred
async def test_disconnect_mid_command(env: Env) -> None:
    peer, connection = await env.attach()
    seen: list[str] = []
    running = connection.run(Command(argv=["sleep", "100"]), lambda stream, text: seen.append(text))
    other = connection.run(Command(argv=["sleep", "200"]), lambda stream, text: None)
    await peer.receive()
    await peer.receive()
    peer.send({"type": "output", "cmd": "c1", "stream": "o", "text": "started\n"})
    called = []
    connection.notify_on_disconnect(lambda: called.append(True))
    await deferLater(reactor, 0.05, lambda: None)  # let the output arrive before the connection dies
    peer.transport.abortConnection()
    with pytest.raises(WorkerLost):
        await within(running.result)
    with pytest.raises(WorkerLost):
        await within(other.result)
    assert seen == ["started\n"]
    assert await env.listener.next() == ("detached", connection)
    assert env.link.connections == {}
    assert await env.connected_to("w1") == []
    assert called == [True]
    # running on a lost connection fails at once, without raising
    late = connection.run(Command(argv=["x"]), lambda stream, text: None)
    with pytest.raises(WorkerLost):
        await within(late.result)


@pytest.mark.slow  # waits for pings in real time
@pytest.mark.parametrize("env", [{"ping_interval": 1, "ping_timeout": 1}], indirect=True)
@pytest_twisted.ensureDeferred
async def test_dead_peer_noticed_by_ping(env: Env) -> None:
    peer, connection = await env.attach()
    running = connection.run(Command(argv=["sleep", "100"]), lambda stream, text: None)
    await peer.receive()
    peer.transport.pauseProducing()  # the peer reads nothing more: pings go unanswered
    try:
        with pytest.raises(WorkerLost):
            await within(running.result, "the result", timeout=4)  # Autobahn's timers tick in whole seconds
        assert await env.listener.next() == ("detached", connection)
        assert await env.connected_to("w1") == []
    finally:
        peer.transport.resumeProducing()


# -- reconfig and stop -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_reconfig(env: Env) -> None:
    peer1, connection1 = await env.attach("w1", "pw1")
    peer2, connection2 = await env.attach("w2", "pw2")
    running = connection1.run(Command(argv=["x"]), lambda stream, text: None)
    await peer1.receive()
    env.link.reconfig({"w2": WorkerConfig("w2", "new2"), "w3": WorkerConfig("w3", "pw3")})
    message = await peer1.receive()
    assert message["type"] == "error" and "removed" in message["message"]
    assert await peer1.close_code() == P.CLOSE_BAD_CREDENTIALS
    with pytest.raises(WorkerLost):
        await within(running.result)
    assert await env.listener.next() == ("detached", connection1)
    assert env.link.connections == {"w2": connection2}
    assert await env.connected_to("w1") == []
    # w1 is refused from now on
    peer = await env.connect()
    peer.send(hello("w1", "pw1"))
    assert (await peer.receive())["message"] == BAD_CREDENTIALS
    assert await peer.close_code() == P.CLOSE_BAD_CREDENTIALS
    # w2's new password applies on its next connection; the open one stays
    assert connection2.connected
    peer2.sendClose(P.CLOSE_NORMAL)
    assert await env.listener.next() == ("detached", connection2)
    peer = await env.connect()
    peer.send(hello("w2", "pw2"))
    assert await peer.close_code() == P.CLOSE_BAD_CREDENTIALS
    await env.attach("w2", "new2")


@pytest_twisted.ensureDeferred
async def test_stop(env: Env) -> None:
    peer1, connection1 = await env.attach("w1", "pw1")
    peer3, connection3 = await env.attach("w3", "pw3")
    waiting = await env.connect()  # has not said hello yet
    running = connection1.run(Command(argv=["x"]), lambda stream, text: None)
    await peer1.receive()
    await within(defer.ensureDeferred(env.link.stop()))
    # everything is recorded by the time stop() returns
    assert env.link.connections == {}
    assert running.result.called
    with pytest.raises(WorkerLost):
        await running.result
    events = {(await env.listener.next()) for _ in range(2)}
    assert events == {("detached", connection1), ("detached", connection3)}
    assert await env.connected_to("w1") == [] and await env.connected_to("w3") == []
    for peer in (peer1, peer3, waiting):
        assert await peer.close_code() == P.CLOSE_SHUTDOWN
    # no one gets in any more
    with pytest.raises(ConnectionError):
        await env.connect()


def test_sending_while_the_peer_closes_is_dropped_not_raised() -> None:
    """A control (e.g. a second ``kill``) sent after the worker started closing must not raise Disconnected."""
    protocol = WorkerProtocol()
    protocol.state = WorkerProtocol.STATE_CLOSING  # the peer's close frame arrived; onClose has not run yet
    sent: list[bytes] = []
    protocol.sendMessage = lambda payload, isBinary=False: sent.append(payload)  # type: ignore[method-assign]
    protocol.send({"type": P.INTERRUPT, "cmd": "c1"})
    assert sent == []
    protocol.state = WorkerProtocol.STATE_OPEN
    protocol.send({"type": P.INTERRUPT, "cmd": "c1"})
    assert len(sent) == 1
