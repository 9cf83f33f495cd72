"""Live-update benchmark: 1,000 websocket subscribers on ``builds/*/*`` while builds are forced.

Usage::

    python bench/bench_live.py [--clients 1000] [--builds 40] [--spacing 0.25] [--held 20000]

A real master (``ci-master create-master`` + ``start``, SQLite, a local worker, a builder whose
one step runs ``true``) serves ``/ws``.  This process opens the clients (Autobahn, one reactor),
each subscribing to ``builds/*/*``, then forces builds one at a time through JSON-RPC, spaced so
that each build's events are out before the next force.  It reports:

* delivery latency: from just before each force call to the receipt of that build's ``new``
  event, at every client (clients x builds samples): median and p99;
* events missed: every client must have received exactly the ids of the ``builds/*/*`` events
  the journal holds for the run (read back with ``since`` by one more client at the end);
* the master's RSS (``/proc/<pid>/status``) before the clients connect, with them connected,
  and after the run.

With ``--held N`` (default 20,000; 0 for none) more connections hold N subscriptions
``builds/<id>/*`` of builds that do not exist, 1,000 per connection (``ws_max_subscriptions``),
beside the clients, for the whole run: what one abusive client could do to the master (issue 16).
Matching an event must not cost more for them, so the targets stay the same.

Targets (issues 5 and 16): p99 under 100 ms on loopback, 0 events missed, RSS growth under 100 MB.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from twisted.internet import defer, protocol, reactor, task

ROOT = Path(__file__).resolve().parent.parent
MASTER_CLI = [sys.executable, "-P", "-m", "master.cli"]
CLIENTS = [0]  # how many clients the run has
FINISHED: dict[int, list[Any]] = {}  # brid -> [clients still to see it finish, Deferred]
CONNECT_BATCH = 50  # connections opened at once (the listen backlog is 50)
HELD_PER_CONNECTION = 1000  # the default ws_max_subscriptions
HELD_FIRST_ID = 10_000_000  # held subscriptions name builds from this id on (none of the run's)
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 100.0

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}, "ws_max_connections_per_ip": {max_connections}}},
    workers=[LocalWorker("local")],
    builders=[BuilderConfig(name="quick", workernames=["local"], steps=[ShellCommand(name="true", command=["true"])])],
    schedulers=[ForceScheduler(name="force", builderNames=["quick"])],
)
"""


def free_port() -> int:
    """A free TCP port of 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """The resident set size of process *pid* in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def force(port: int) -> int:
    """Force one build; return its build request id."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "force", "params": {"builderid": 1}}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/forceschedulers/force", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        result = json.load(response)["result"]
    return next(iter(result[1].values()))


class Subscriber(protocol.Protocol):
    """A lean WebSocket client (handshake, masked commands, unmasked server frames) recording events.

    The master's fan-out is what is measured; Autobahn's pure-Python frame parsing would make
    this one process of 1,000 clients the bottleneck, so frames are parsed here with the
    least work: (receipt time, event id, key, buildrequestid) per event.
    """

    def connectionMade(self) -> None:  # noqa: N802
        self.received: list[tuple[float, int, str, int | None]] = []
        self._buffer = b""
        self._open = False
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def send_frame(self, payload: bytes, opcode: int = 1) -> None:
        """Send one masked frame (clients must mask)."""
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x80 | opcode])
        if length < 126:
            header += bytes([0x80 | length])
        elif length < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", length)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(header + mask + masked)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        now = time.monotonic()
        buffer = self._buffer + data
        if not self._open:
            head, sep, rest = buffer.partition(b"\r\n\r\n")
            if not sep:
                self._buffer = buffer
                return
            if b" 101 " not in head.split(b"\r\n", 1)[0]:
                raise RuntimeError(f"handshake refused: {head[:100]!r}")
            self._open = True
            buffer = rest
            paths = self.factory.path if isinstance(self.factory.path, list) else [self.factory.path]
            self._unanswered = len(paths)
            for n, path in enumerate(paths, 1):
                command = {"cmd": "startConsuming", "path": path, "_id": n}
                if self.factory.since is not None:
                    command["since"] = self.factory.since
                self.send_frame(orjson.dumps(command))
        position = 0
        while True:
            if len(buffer) - position < 2:
                break
            opcode = buffer[position] & 0x0F
            length = buffer[position + 1] & 0x7F
            start = position + 2
            if length == 126:
                if len(buffer) - start < 2:
                    break
                length = struct.unpack_from("!H", buffer, start)[0]
                start += 2
            elif length == 127:
                if len(buffer) - start < 8:
                    break
                length = struct.unpack_from("!Q", buffer, start)[0]
                start += 8
            if len(buffer) - start < length:
                break
            payload = buffer[start:start + length]
            position = start + length
            if opcode == 1:
                self._message(now, orjson.loads(payload))
            elif opcode == 9:
                self.send_frame(payload, opcode=10)  # pong
        self._buffer = buffer[position:]

    def _message(self, now: float, message: dict[str, Any]) -> None:
        if "k" not in message:
            if message.get("code") != 200:
                raise RuntimeError(f"startConsuming refused: {message}")
            self._unanswered -= 1
            if self._unanswered == 0 and not self.factory.ready.called:
                self.factory.ready.callback(self)
            return
        brid = message["m"].get("buildrequestid")
        self.received.append((now, message["id"], message["k"], brid))
        if message["k"].endswith("/finished"):
            waiters = FINISHED.setdefault(brid, [CLIENTS[0], defer.Deferred()])
            if waiters[0] > 0:
                waiters[0] -= 1
                if waiters[0] == 0:
                    waiters[1].callback(None)

    def close(self) -> None:
        """Send a close frame and drop the connection."""
        self.send_frame(struct.pack("!H", 1000), opcode=8)
        self.transport.loseConnection()


async def connect(port: int, path: str | list[str] = "builds/*/*", since: int | None = None) -> Subscriber:
    """One subscribed client."""
    factory = protocol.ClientFactory()
    factory.protocol = Subscriber
    factory.path, factory.since, factory.ready = path, since, defer.Deferred()
    reactor.connectTCP("127.0.0.1", port, factory, timeout=30)
    return await factory.ready


async def run(args: argparse.Namespace) -> int:
    """Start the master, connect the clients, force the builds, report."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the master inherits it too
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    master_dir = workdir / "master"
    port = free_port()
    subprocess.run([*MASTER_CLI, "create-master", str(master_dir)], check=True, capture_output=True)
    holders = -(-args.held // HELD_PER_CONNECTION)
    max_connections = args.clients + holders + 10
    (master_dir / "master.cfg").write_text(CONFIG.format(port=port, max_connections=max_connections))
    subprocess.run([*MASTER_CLI, "start", str(master_dir)], check=True, capture_output=True)
    pid = int((master_dir / "twistd.pid").read_text())
    try:
        force(port)  # warm up: the worker connected, a first build run
        await task.deferLater(reactor, 2.0, lambda: None)
        rss_before = rss_mb(pid)
        started = time.monotonic()
        clients: list[Subscriber] = []
        CLIENTS[0] = args.clients
        for first in range(0, args.clients, CONNECT_BATCH):
            batch = range(first, min(first + CONNECT_BATCH, args.clients))
            clients += await defer.gatherResults([defer.ensureDeferred(connect(port)) for _ in batch])
        connect_s = time.monotonic() - started
        held: list[Subscriber] = []
        for first in range(0, args.held, HELD_PER_CONNECTION):
            # builds that will not exist: held, never matched, as an abusive client would hold them
            paths = [f"builds/{HELD_FIRST_ID + n}/*" for n in range(first, min(first + HELD_PER_CONNECTION, args.held))]
            held.append(await connect(port, paths))
        rss_connected = rss_mb(pid)
        forced: dict[int, float] = {}
        for _ in range(args.builds):
            t0 = time.monotonic()
            brid = await defer.Deferred.fromCoroutine(_in_thread(force, port))
            forced[brid] = t0
            done = FINISHED.setdefault(brid, [len(clients), defer.Deferred()])
            # the next build starts once every client has seen this one finish (or after 30 s)
            timer = reactor.callLater(30, lambda d=done[1]: d.called or d.callback(None))
            await done[1]
            if timer.active():
                timer.cancel()
            await task.deferLater(reactor, args.spacing, lambda: None)
        await task.deferLater(reactor, 2.0, lambda: None)  # the last build's events
        rss_after = rss_mb(pid)
        reference = await connect(port, since=0)  # the journal's own account of the run
        await task.deferLater(reactor, 2.0, lambda: None)
        expected = [event_id for _, event_id, key, brid in reference.received if brid in forced]
        latencies = []
        missed = 0
        for client in clients:
            ids = [event_id for _, event_id, key, brid in client.received if brid in forced]
            missed += len(set(expected) - set(ids)) + abs(len(ids) - len(set(ids)))
            for t, _, key, brid in client.received:
                if brid in forced and key.endswith("/new"):
                    latencies.append((t - forced[brid]) * 1000)
        first_receipt: dict[int, float] = {}
        last_receipt: dict[int, float] = {}
        for client in clients:
            for t, _, key, brid in client.received:
                if brid in forced and key.endswith("/new"):
                    first_receipt[brid] = min(first_receipt.get(brid, t), t)
                    last_receipt[brid] = max(last_receipt.get(brid, t), t)
        to_first = statistics.median((first_receipt[b] - forced[b]) * 1000 for b in first_receipt)
        spread = statistics.median((last_receipt[b] - first_receipt[b]) * 1000 for b in first_receipt)
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"== live updates: {args.clients} clients on builds/*/*, {args.builds} builds forced "
              f"{args.spacing:g}s apart; master on SQLite with a local worker ==")
        print(f"clients connected and subscribed in {connect_s:.1f}s")
        print(f"subscriptions held beside them: {args.held:,} builds/<id>/* on {len(held)} connections")
        print(f"events per client: {len(expected)} ({len(expected) // max(1, args.builds)} per build);"
              f" deliveries: {len(expected) * args.clients:,}")
        print(f"latency force -> 'new' at every client: p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
              f" max {latencies[-1]:.1f} ms ({len(latencies):,} samples)")
        print(f"  of which: force -> first client {to_first:.1f} ms (median); first -> last client {spread:.1f} ms"
              " (median fan-out time over all clients)")
        print(f"events missed: {missed}")
        print(f"master RSS: {rss_before:.1f} MB before clients, {rss_connected:.1f} MB with them,"
              f" {rss_after:.1f} MB after the run (growth {rss_after - rss_before:+.1f} MB)")
        checks = [
            (f"p99 latency < {TARGET_P99_MS:g} ms", p99 < TARGET_P99_MS, f"{p99:.1f} ms"),
            ("no event missed", missed == 0 and len(latencies) == args.clients * args.builds, str(missed)),
            (f"RSS growth < {TARGET_RSS_MB:g} MB", rss_after - rss_before < TARGET_RSS_MB,
             f"{rss_after - rss_before:+.1f} MB"),
        ]
        for name, ok, value in checks:
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
        for client in clients + held:
            client.close()
        if not all(ok for _, ok, _ in checks):
            raise SystemExit(1)
        return 0
    finally:
        subprocess.run([*MASTER_CLI, "stop", str(master_dir)], capture_output=True)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _in_thread(fn: Any, *args: Any) -> Any:
    from twisted.internet import threads

    return await threads.deferToThread(fn, *args)


def main() -> None:
    """Parse the arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--builds", type=int, default=40)
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between two forces")
    parser.add_argument("--held", type=int, default=20_000, help="subscriptions held beside the clients")
    args = parser.parse_args()
    task.react(lambda _reactor: defer.ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
