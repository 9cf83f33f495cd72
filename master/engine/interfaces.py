"""What the engine needs from a connected worker, and what the worker link tells the engine.

The worker link (``workerlink.py``, WebSocket at ``/worker``) provides IWorkerConnection objects;
the engine (builders, builds, steps) uses them and never sees the wire.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zope.interface import Attribute, Interface


@dataclass
class Command:
    """A command for a worker to run: ``argv`` (a list) or ``shell`` (a string for ``/bin/sh -c``)."""

    argv: list[str] | None = None
    shell: str | None = None
    env: dict[str, str | None] = field(default_factory=dict)
    builder: str = ""
    workdir: str = "build"
    timeout: float | None = 1200.0
    max_time: float | None = None
    shown: str | None = None  # how the worker's own log shows the command (secrets redacted), if not as it is


@dataclass
class CommandResult:
    """How a command ended: ``rc`` (None when killed by a signal), the signal, and why."""

    rc: int | None
    signal: str | None = None
    interrupted: bool = False
    timed_out: bool = False
    elapsed: float = 0.0


class WorkerLost(Exception):
    """The worker disconnected while a command ran (the build ends as retry)."""


OutputCallback = Callable[[str, str], Any]
"""Called with (stream 'o' or 'e', text) for each output chunk, in order."""


class IRunningCommand(Interface):
    """A command a worker runs."""

    id = Attribute("the command's id on this connection, e.g. 'c12'")
    result = Attribute("Deferred firing with the CommandResult, or failing with WorkerLost")

    def interrupt(reason: str) -> None:
        """Ask the worker to stop it (SIGTERM to its process group, SIGKILL after a grace period)."""


class IWorkerConnection(Interface):
    """A worker connected to this master."""

    name = Attribute("the worker's name")
    workerid = Attribute("the worker's id in the data API")
    info = Attribute("dict the worker reported: os, python, hostname, ...")
    max_builds = Attribute("how many builds the worker runs at once")

    def run(command: Command, on_output: OutputCallback) -> IRunningCommand:
        """Start *command*; *on_output* gets its output as it comes."""

    def shutdown(graceful: bool) -> None:
        """Ask the worker to leave: after its commands end (graceful) or at once."""

    def notify_on_disconnect(callback: Callable[[], Any]) -> None:
        """Call *callback* once when the worker disconnects."""


class IWorkerListener(Interface):
    """Told by the worker link when workers come and go (the engine implements it)."""

    def worker_attached(connection: IWorkerConnection) -> None:
        """A worker has connected and authenticated."""

    def worker_detached(connection: IWorkerConnection) -> None:
        """A worker has disconnected."""
