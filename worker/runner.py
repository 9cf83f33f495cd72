"""Running one command of the master: a process group of its own, batched output, timeouts and interrupts.

Each command runs as the leader of a new session (hence of a new process group whose id is its
pid), so that an interrupt reaches everything it started: ``make`` and the compilers under it, a
shell and its pipelines.  :mod:`worker.spawn` starts it so with ``posix_spawn`` (no helper
process, no ``fork`` of the worker), in its working directory; a command that cannot be started
(not found, permission denied, not an executable) is reported with that exact reason, not with an
exit code a command could also have returned.
"""

from __future__ import annotations

import codecs
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from ci_common import protocol
from worker.spawn import SessionProcess

log = Logger()

STREAMS = {1: "o", 2: "e"}


class CommandRejected(Exception):
    """A ``run`` message that cannot be run as given; the message says why."""


@dataclass
class CommandSpec:
    """A ``run`` message, checked."""

    cmd: str
    argv: list[str] | None = None
    shell: str | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    builder: str = ""
    workdir: str = "build"
    timeout: float | None = None
    max_time: float | None = None
    shown: str | None = None

    @property
    def description(self) -> str:
        """The command as a person would type it (or as the master says to show it), for log lines."""
        if self.shown is not None:
            return self.shown
        return self.shell if self.shell is not None else " ".join(self.argv or [])


def _seconds(message: dict[str, Any], key: str) -> float | None:
    value = message.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise CommandRejected(f"{key}: must be a positive number of seconds or null")
    return float(value)


def parse_run(message: dict[str, Any]) -> CommandSpec:
    """The :class:`CommandSpec` of a ``run`` message (whose ``cmd`` the caller has checked)."""
    argv, shell = message.get("argv"), message.get("shell")
    if (argv is None) == (shell is None):
        raise CommandRejected("a run message needs exactly one of argv and shell")
    if argv is not None and (
        not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
    ):
        raise CommandRejected("argv: must be a non-empty list of strings")
    if shell is not None and not isinstance(shell, str):
        raise CommandRejected("shell: must be a string")
    env = message.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and k and "=" not in k and (v is None or isinstance(v, str)) for k, v in env.items()
    ):
        raise CommandRejected("env: must map variable names to strings or null")
    builder = message.get("builder") or ""
    workdir = message.get("workdir")
    workdir = "build" if workdir is None else workdir
    if not isinstance(builder, str) or not isinstance(workdir, str):
        raise CommandRejected("builder and workdir: must be strings")
    return CommandSpec(
        cmd=message["cmd"], argv=argv, shell=shell, env=env, builder=builder, workdir=workdir,
        timeout=_seconds(message, "timeout"), max_time=_seconds(message, "max_time"),
        shown=message["shown"] if isinstance(message.get("shown"), str) else None,
    )


def resolve_workdir(basedir: Path, builder: str, workdir: str) -> Path:
    """``<basedir>/<builder>/<workdir>``, refused if it would lead outside the worker directory."""
    base = basedir.resolve()
    path = (base / builder / workdir).resolve()
    # a builder or workdir of "..", or an absolute one, must not let the master write anywhere
    if path != base and base not in path.parents:
        raise CommandRejected(f"workdir {builder}/{workdir} is outside the worker directory")
    return path


def merged_env(changes: dict[str, str | None], base: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment (or *base*) with *changes* applied: a None value removes the variable."""
    env = dict(os.environ if base is None else base)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _cut(data: bytes | bytearray, start: int, limit: int) -> int:
    """Where a chunk of at most *limit* bytes of *data* from *start* should end.

    After its last newline, if it has one; otherwise (a line longer than a chunk) on the last UTF-8
    character boundary, since *data* is valid UTF-8 and each chunk is decoded on its own.
    """
    end = start + limit
    if end >= len(data):
        return len(data)
    newline = data.rfind(b"\n", start, end)
    if newline >= 0:
        return newline + 1
    while end > start + 1 and (data[end] & 0xC0) == 0x80:  # a continuation byte: not a boundary
        end -= 1
    return end


class OutputBatcher:
    """Turns the bytes of stdout and stderr into ``output`` texts as the protocol wants them.

    Bytes are decoded as UTF-8 with replacement (incrementally, so a character split between two
    reads survives) and re-encoded, so sizes are those of the text sent.  Complete lines are queued
    in the order they were completed, across both streams; a partial line waits for its end (or
    until it fills a chunk, or the command ends), so a chunk always ends on a line boundary.  The
    queue goes out as soon as it holds a full chunk, and otherwise ``interval`` seconds after the
    first byte was queued.
    """

    def __init__(
        self, send: Callable[[str, str], None], clock: IReactorTime,
        chunk: int = protocol.OUTPUT_CHUNK, interval: float = protocol.OUTPUT_INTERVAL,
    ) -> None:
        self._send = send
        self._clock = clock
        self._chunk = chunk
        self._interval = interval
        self._decoders = {s: codecs.getincrementaldecoder("utf-8")(errors="replace") for s in ("o", "e")}
        self._partial = {"o": bytearray(), "e": bytearray()}
        self._queue: list[tuple[str, bytearray]] = []
        self._queued = 0
        self._timer: IDelayedCall | None = None

    def feed(self, stream: str, data: bytes) -> None:
        """Take *data* read from *stream* ('o' or 'e')."""
        text = self._decoders[stream].decode(data)
        if text:
            self._take(stream, text.encode("utf-8"))

    def _take(self, stream: str, data: bytes) -> None:
        partial = self._partial[stream]
        partial += data
        end = partial.rfind(b"\n") + 1
        # a line longer than a chunk: send it a chunk at a time rather than hold it whole
        while len(partial) - end >= self._chunk:
            end = _cut(partial, end, self._chunk)
        if end:
            self._enqueue(stream, partial[:end])
            del partial[:end]

    def _enqueue(self, stream: str, data: bytes | bytearray) -> None:
        if self._queue and self._queue[-1][0] == stream:
            self._queue[-1][1].extend(data)
        else:
            self._queue.append((stream, bytearray(data)))
        self._queued += len(data)
        if self._queued >= self._chunk:
            self._flush(whole_chunks_only=True)
        if self._queued and self._timer is None:
            self._timer = self._clock.callLater(self._interval, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._flush(whole_chunks_only=False)

    def _flush(self, whole_chunks_only: bool) -> None:
        while self._queue:
            stream, data = self._queue[0]
            last = len(self._queue) == 1
            start = 0
            while start < len(data):
                if whole_chunks_only and last and len(data) - start < self._chunk:
                    break  # the rest waits for more lines or for the timer: no needlessly small message
                end = _cut(data, start, self._chunk)
                self._send(stream, data[start:end].decode("utf-8"))
                start = end
            del data[:start]
            self._queued -= start
            if data:
                return
            self._queue.pop(0)

    def close(self) -> None:
        """The command has ended: send everything, partial lines and undecodable tails included."""
        for stream in ("o", "e"):
            tail = self._decoders[stream].decode(b"", final=True)
            if tail:
                self._take(stream, tail.encode("utf-8"))
            if self._partial[stream]:
                self._enqueue(stream, self._partial[stream])
                self._partial[stream] = bytearray()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._flush(whole_chunks_only=False)


class RunningCommand(ProcessProtocol):
    """One command: spawns it, reports its output and its ``exit`` through *send*, and stops it on demand.

    ``done`` fires (with the exit message) once the ``exit`` has been handed to *send*; it never fails.
    """

    def __init__(
        self, spec: CommandSpec, basedir: Path, send: Callable[[dict[str, Any]], None],
        reactor: Any, kill_grace: float = protocol.KILL_GRACE,
    ) -> None:
        self.spec = spec
        self.basedir = basedir
        self._send = send
        self._reactor = reactor
        self._kill_grace = kill_grace
        self.done: defer.Deferred[dict[str, Any]] = defer.Deferred()
        self.pid: int | None = None
        self.interrupted = False
        self.timed_out = False
        self._stopping = False
        self._ended = False
        self._started = 0.0
        self._batcher = OutputBatcher(self._send_output, reactor)
        self._idle_call: IDelayedCall | None = None
        self._max_call: IDelayedCall | None = None
        self._kill_call: IDelayedCall | None = None

    @property
    def ended(self) -> bool:
        """Whether the exit has been sent."""
        return self._ended

    def _send_output(self, stream: str, text: str) -> None:
        self._send({"type": protocol.OUTPUT, "cmd": self.spec.cmd, "stream": stream, "text": text})

    def start(self) -> None:
        """Start the process; a command that cannot start ends at once with rc -1 and the reason on 'e'."""
        self._started = time.monotonic()
        spec = self.spec
        try:
            workdir = resolve_workdir(self.basedir, spec.builder, spec.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        except (CommandRejected, OSError) as e:
            self._fail_to_start(f"cannot make the working directory: {e}")
            return
        argv = list(spec.argv) if spec.argv is not None else ["/bin/sh", "-c", spec.shell or ""]
        try:
            process = SessionProcess(
                self._reactor, self, argv, merged_env(spec.env), str(workdir), {0: "w", 1: "r", 2: "r"}
            )
        except OSError as e:
            self._fail_to_start(f"cannot run {argv[0]!r}: {e.strerror or e}")
            return
        self.pid = process.pid
        # commands get an empty stdin: nobody answers a prompt on a worker
        process.closeStdin()
        log.info("{cmd}: started pid {pid} in {workdir}: {what}", cmd=spec.cmd, pid=self.pid, workdir=workdir,
                 what=spec.description)
        if spec.timeout is not None:
            self._idle_call = self._reactor.callLater(spec.timeout, self._timed_out, "timeout")
        if spec.max_time is not None:
            self._max_call = self._reactor.callLater(spec.max_time, self._timed_out, "max_time")

    def _fail_to_start(self, why: str) -> None:
        log.warn("{cmd}: {why}", cmd=self.spec.cmd, why=why)
        self._batcher.feed("e", (why + "\n").encode())
        self._finish(rc=-1, signal_name=None)

    def childDataReceived(self, childFD: int, data: bytes) -> None:  # noqa: N802 - Twisted's name
        """Output from the command."""
        stream = STREAMS.get(childFD)
        if stream is None:
            return
        if self._idle_call is not None and self._idle_call.active() and self.spec.timeout is not None:
            self._idle_call.reset(self.spec.timeout)
        self._batcher.feed(stream, data)

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        """The process has exited and every pipe to it is closed."""
        code = getattr(reason.value, "exitCode", None)
        signum = getattr(reason.value, "signal", None)
        if signum is not None:
            self._finish(rc=None, signal_name=_signal_name(signum))
        else:
            self._finish(rc=code if code is not None else 0, signal_name=None)

    def _finish(self, rc: int | None, signal_name: str | None) -> None:
        for call in (self._idle_call, self._max_call, self._kill_call):
            if call is not None and call.active():
                call.cancel()
        self._batcher.close()
        message = {
            "type": protocol.EXIT, "cmd": self.spec.cmd, "rc": rc, "signal": signal_name,
            "interrupted": self.interrupted, "timed_out": self.timed_out,
            "elapsed": round(time.monotonic() - self._started, 3),
        }
        self._ended = True
        log.info("{cmd}: ended: rc {rc}, signal {signal}, interrupted {interrupted}, timed out {timed_out}, "
                 "{elapsed}s", **{k: v for k, v in message.items() if k != "type"})
        self._send(message)
        self.done.callback(message)

    def _timed_out(self, which: str) -> None:
        if self._ended or self._stopping:
            return
        self.timed_out = True
        if which == "timeout":
            why = f"command timed out: no output for {self.spec.timeout:g} s"
        else:
            why = f"command timed out: still running after {self.spec.max_time:g} s (max_time)"
        self._batcher.feed("e", f"\n{why}; terminating its process group\n".encode())
        self._stop()

    def interrupt(self, reason: str) -> None:
        """Stop the command for the master (or because the worker leaves): SIGTERM, then SIGKILL."""
        if self._ended:
            return
        log.info("{cmd}: interrupting: {reason}", cmd=self.spec.cmd, reason=reason)
        self.interrupted = True
        self._stop()

    def _stop(self) -> None:
        if self._stopping or self.pid is None:
            return
        self._stopping = True
        self._signal(signal.SIGTERM)
        self._kill_call = self._reactor.callLater(self._kill_grace, self._signal, signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self._ended or self.pid is None:
            return
        try:
            # the group outlives its leader while children hold on, so the group is what is signalled
            os.killpg(self.pid, signum)
        except ProcessLookupError:
            pass  # the whole group has gone already
        except PermissionError as e:
            log.warn("{cmd}: cannot signal process group {pid}: {e}", cmd=self.spec.cmd, pid=self.pid, e=e)

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        """Stop reading the command's output while the connection to the master is backed up."""
        if self.transport is not None and not self._ended:
            cast(IPushProducer, self.transport).pauseProducing()  # a process transport produces its output

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        """Read the command's output again."""
        if self.transport is not None and not self._ended:
            cast(IPushProducer, self.transport).resumeProducing()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def rejected(cmd: str, why: str) -> list[dict[str, Any]]:
    """The messages answering a ``run`` that cannot be run: the reason on 'e', then an exit with rc -1."""
    return [
        {"type": protocol.OUTPUT, "cmd": cmd, "stream": "e", "text": why + "\n"},
        {"type": protocol.EXIT, "cmd": cmd, "rc": -1, "signal": None, "interrupted": False, "timed_out": False,
         "elapsed": 0.0},
    ]

