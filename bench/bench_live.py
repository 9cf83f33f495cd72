"""Live-update benchmark: 1,000 websocket subscribers on ``builds/*/*`` while builds are forced.

Usage::

    python bench/bench_live.py [--clients 1000] [--builds 40] [--spacing 0.25]

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

Targets (issue 5): p99 under 100 ms on loopback, 0 events missed, RSS growth under 100 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer, reactor, task

ROOT = Path(__file__).resolve().parent.parent
MASTER_CLI = [sys.executable, "-m", "master.cli"]
CONNECT_BATCH = 50  # connections opened at once (the listen backlog is 50)
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 100.0

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}}},
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


class Subscriber(WebSocketClientProtocol):
    """Records (receipt time, event id, key, buildrequestid) of every event."""

    def onOpen(self) -> None:  # noqa: N802
        self.received: list[tuple[float, int, str, int]] = []
        self.sendMessage(orjson.dumps({"cmd": "startConsuming", "path": self.factory.path, "_id": 1,
                                       **({"since": self.factory.since} if self.factory.since is not None else {})}))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        message = orjson.loads(payload)
        if "k" in message:
            self.received.append((time.monotonic(), message["id"], message["k"], message["m"].get("buildrequestid")))
        elif not self.factory.ready.called:
            self.factory.ready.callback(self)


async def connect(port: int, path: str = "builds/*/*", since: int | None = None) -> Subscriber:
    """One subscribed client."""
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}/ws")
    factory.protocol = Subscriber
    factory.path, factory.since, factory.ready = path, since, defer.Deferred()
    connectWS(factory, timeout=30)
    return await factory.ready


async def run(args: argparse.Namespace) -> int:
    """Start the master, connect the clients, force the builds, report."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the master inherits it too
    workdir = Path(tempfile.mkdtemp(prefix="bench-live-"))
    master_dir = workdir / "master"
    port = free_port()
    subprocess.run([*MASTER_CLI, "create-master", str(master_dir)], check=True, capture_output=True)
    (master_dir / "master.cfg").write_text(CONFIG.format(port=port))
    subprocess.run([*MASTER_CLI, "start", str(master_dir)], check=True, capture_output=True)
    pid = int((master_dir / "twistd.pid").read_text())
    try:
        force(port)  # warm up: the worker connected, a first build run
        await task.deferLater(reactor, 2.0, lambda: None)
        rss_before = rss_mb(pid)
        started = time.monotonic()
        clients: list[Subscriber] = []
        for first in range(0, args.clients, CONNECT_BATCH):
            batch = range(first, min(first + CONNECT_BATCH, args.clients))
            clients += await defer.gatherResults([defer.ensureDeferred(connect(port)) for _ in batch])
        connect_s = time.monotonic() - started
        rss_connected = rss_mb(pid)
        forced: dict[int, float] = {}
        for _ in range(args.builds):
            t0 = time.monotonic()
            brid = await defer.Deferred.fromCoroutine(_in_thread(force, port))
            forced[brid] = t0
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
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"== live updates: {args.clients} clients on builds/*/*, {args.builds} builds forced "
              f"{args.spacing:g}s apart; master on SQLite with a local worker ==")
        print(f"clients connected and subscribed in {connect_s:.1f}s")
        print(f"events per client: {len(expected)} ({len(expected) // max(1, args.builds)} per build);"
              f" deliveries: {len(expected) * args.clients:,}")
        print(f"latency force -> 'new' at every client: p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
              f" max {latencies[-1]:.1f} ms ({len(latencies):,} samples)")
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
        for client in clients:
            client.sendClose(1000)
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
    args = parser.parse_args()
    task.react(lambda _reactor: defer.ensureDeferred(run(args)))


if __name__ == "__main__":
    main()
