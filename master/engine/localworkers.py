"""Local workers: ``ci-worker`` processes that the master starts, watches and stops itself.

``master.cfg`` lists them as ``LocalWorker(name, max_builds=1)`` in ``workers``; each gets a
directory ``DIR/workers/<name>`` and a random password made on first use (kept, like any
worker's, only as a hash on the master's side; the worker's copy is in its ``worker.cfg``,
readable by its owner only).  The process runs in the foreground under the master, its output
logged by the master; if it dies, it is started again after a pause.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, protocol, reactor
from twisted.logger import Logger

from ci_common.workerconfig import WorkerConfig, load_config, write_config

log = Logger()

RESTART_DELAY = 5.0
STOP_GRACE = 15.0


@dataclass
class LocalWorker:
    """A worker the master runs as a subprocess of its own, on the same machine."""

    name: str
    max_builds: int = 1

    def password_for(self, basedir: Path) -> str:
        """The password of the worker: read from its worker.cfg, made and saved on first use."""
        directory = basedir / "workers" / self.name
        try:
            return load_config(directory).password
        except Exception:  # no worker.cfg yet (or a broken one): make it afresh
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "worker.cfg").unlink(missing_ok=True)
            config = WorkerConfig(master="ws://127.0.0.1:1/worker", name=self.name, password=secrets.token_urlsafe(24),
                                  max_builds=self.max_builds)
            write_config(directory, config)
            return config.password


class _WorkerProcess(protocol.ProcessProtocol):
    def __init__(self, name: str, ended: defer.Deferred) -> None:
        self.name = name
        self.ended = ended

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        for line in data.decode(errors="replace").splitlines():
            log.info("worker {name}: {line}", name=self.name, line=line)

    errReceived = outReceived  # noqa: N815

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        self.ended.callback(reason.value)


class LocalWorkers(service.Service):
    """Starts each LocalWorker once the master listens, restarts one that dies, stops them with the master."""

    def __init__(self, basedir: Path, workers: list[LocalWorker], master_url: str) -> None:
        self.basedir = basedir
        self.workers = {w.name: w for w in workers}
        self.master_url = master_url
        self.processes: dict[str, Any] = {}
        self._ended: dict[str, defer.Deferred] = {}
        self._stopping = False

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start every local worker."""
        super().startService()
        self._stopping = False
        for worker in self.workers.values():
            self._spawn(worker)

    def _spawn(self, worker: LocalWorker) -> None:
        directory = self.basedir / "workers" / worker.name
        password = worker.password_for(self.basedir)
        (directory / "worker.cfg").unlink(missing_ok=True)
        write_config(directory, WorkerConfig(master=self.master_url, name=worker.name, password=password,
                                             max_builds=worker.max_builds))
        ended: defer.Deferred = defer.Deferred()
        self._ended[worker.name] = ended
        argv = [sys.executable, "-m", "worker.cli", "start", "--nodaemon", str(directory)]
        self.processes[worker.name] = reactor.spawnProcess(
            _WorkerProcess(worker.name, ended), sys.executable, argv, env=dict(os.environ), path=str(directory)
        )
        log.info("local worker {name} started (pid {pid})", name=worker.name, pid=self.processes[worker.name].pid)
        ended.addCallback(self._ended_, worker)

    def _ended_(self, reason: Any, worker: LocalWorker) -> None:
        self.processes.pop(worker.name, None)
        if self._stopping or worker.name not in self.workers:
            return
        log.warn("local worker {name} exited ({reason}); restarting it in {delay:.0f}s",
                 name=worker.name, reason=reason, delay=RESTART_DELAY)
        reactor.callLater(RESTART_DELAY, self._respawn, worker)

    def _respawn(self, worker: LocalWorker) -> None:
        if not self._stopping and worker.name in self.workers and worker.name not in self.processes:
            self._spawn(worker)

    async def _stop_one(self, name: str) -> None:
        process = self.processes.get(name)
        ended = self._ended.get(name)
        if process is None or ended is None or ended.called:
            return
        process.signalProcess(signal.SIGTERM)
        timer = reactor.callLater(STOP_GRACE, lambda: name in self.processes and process.signalProcess("KILL"))
        await ended
        if timer.active():
            timer.cancel()

    async def reconfig(self, workers: list[LocalWorker]) -> None:
        """Stop local workers no longer listed, start new ones, restart those whose settings changed."""
        new = {w.name: w for w in workers}
        for name, old in list(self.workers.items()):
            if new.get(name) != old:
                del self.workers[name]
                await self._stop_one(name)
        for name, worker in new.items():
            if name not in self.workers:
                self.workers[name] = worker
                if self.running:
                    self._spawn(worker)

    def stopService(self) -> defer.Deferred:  # noqa: N802
        """SIGTERM every local worker (their commands are interrupted) and wait for them to exit."""
        super().stopService()
        self._stopping = True
        return defer.ensureDeferred(self._stop_all())

    async def _stop_all(self) -> None:
        await defer.gatherResults([defer.ensureDeferred(self._stop_one(name)) for name in list(self.processes)])
