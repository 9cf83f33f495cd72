"""Build steps: what a builder runs, in order, on one worker.

A step in master.cfg is a template: each build runs a fresh copy (``step.fresh()``), whose
``build`` and ``stepid`` the build sets before calling :meth:`BuildStep.run`.  Arguments may
hold renderables (``Interpolate``, ``Property``), rendered when the step starts.

Result flags, as in Buildbot: ``flunkOnFailure`` (a failure fails the build; default
true), ``warnOnFailure`` (a failure only makes the build ``warnings``), ``warnOnWarnings``
and ``flunkOnWarnings``, ``haltOnFailure`` (a failure or exception stops the build: later
steps run only if ``alwaysRun``), ``doStepIf`` (a bool, or a callable given the step, that
skips the step when false) and ``hideStepIf`` (hide the finished step in the UI).
"""

from __future__ import annotations

import shlex
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from master.db.interfaces import DatabaseUnavailable
from master.engine.config import Configured
from master.engine.interfaces import Command, CommandResult, WorkerLost
from master.engine.locks import check_locks
from master.engine.properties import render
from master.metrics import metrics_of
from master.results import CANCELLED, FAILURE, SKIPPED, SUCCESS, WARNINGS, worst_result

if TYPE_CHECKING:
    from master.data.connector import DataAPI
    from master.engine.build import Build

log = Logger()


class StepLog:
    """A log of a step being written: output is cut into whole lines and appended in order.

    At most one ``append_log`` is in flight per log; lines that arrive meanwhile are
    batched into the next one, so a chatty command costs few database writes.
    """

    def __init__(self, data: DataAPI, logid: int, redact: Callable[[str], str] | None = None) -> None:
        self.data = data
        self.logid = logid
        self.redact = redact or str  # whole lines only: a secret split across chunks is joined first
        self._partial: dict[str, str] = {}
        self._pending: list[str] = []
        self._writing = False
        self._waiters: list[defer.Deferred] = []
        self._finished = False

    def add(self, stream: str, text: str) -> None:
        """Add output of *stream* ('o', 'e' or 'h'); an unfinished last line waits for the rest."""
        text = self._partial.pop(stream, "") + text
        lines = text.split("\n")
        if lines[-1]:
            self._partial[stream] = lines[-1]
        self._pending.extend(stream + self.redact(line) + "\n" for line in lines[:-1])
        self._kick()

    def add_header(self, text: str) -> None:
        """Add header lines (the command, its directory, how it ended)."""
        self.add("h", text if text.endswith("\n") else text + "\n")

    def _kick(self) -> None:
        if not self._writing and self._pending:
            self._writing = True
            defer.ensureDeferred(self._write())

    async def _write(self) -> None:
        try:
            while self._pending:
                text = "".join(self._pending)
                self._pending.clear()
                try:
                    await self.data.updates.append_log(self.logid, text)
                    metrics_of(self.data).log_lines.inc(text.count("\n"))
                except DatabaseUnavailable:
                    log.warn("lines of log {logid} lost: the database is unavailable", logid=self.logid)
                except Exception:
                    # lines lost are better than a build stuck on its log
                    log.failure("could not append to log {logid}", logid=self.logid)
        finally:
            self._writing = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def flush(self) -> None:
        """Wait until every complete line given so far is stored."""
        while self._writing or self._pending:
            self._kick()
            waiter: defer.Deferred = defer.Deferred()
            self._waiters.append(waiter)
            await waiter

    async def finish(self) -> None:
        """Store the unfinished last lines too, then mark the log finished.

        Only once: the build finishes every log of a step after the step, which may have
        finished its own already.
        """
        if self._finished and not self._partial and not self._pending:
            return
        for stream, rest in list(self._partial.items()):
            self._pending.append(stream + self.redact(rest) + "\n")
        self._partial.clear()
        await self.flush()
        await self.data.updates.finish_log(self.logid)
        self._finished = True


class BuildStep(Configured):
    """Base class of steps: a name, result flags, and :meth:`run` returning a result code."""

    default_name = "step"

    def __init__(
        self,
        name: str | None = None,
        haltOnFailure: bool = False,  # noqa: N803 (Buildbot's names, which master.cfg writers know)
        flunkOnFailure: bool = True,  # noqa: N803
        warnOnFailure: bool = False,  # noqa: N803
        warnOnWarnings: bool = True,  # noqa: N803
        flunkOnWarnings: bool = False,  # noqa: N803
        alwaysRun: bool = False,  # noqa: N803
        doStepIf: bool | Callable[[BuildStep], bool] = True,  # noqa: N803
        hideStepIf: bool = False,  # noqa: N803
        description: str | None = None,
        descriptionDone: str | None = None,  # noqa: N803
        locks: Sequence[Any] | None = None,
    ) -> None:
        self.name = name or self.default_name
        self.locks = check_locks(locks, f"{type(self).__name__}.locks")
        self.haltOnFailure = haltOnFailure
        self.flunkOnFailure = flunkOnFailure
        self.warnOnFailure = warnOnFailure
        self.warnOnWarnings = warnOnWarnings
        self.flunkOnWarnings = flunkOnWarnings
        self.alwaysRun = alwaysRun
        self.doStepIf = doStepIf
        self.hideStepIf = hideStepIf
        self.description = description
        self.descriptionDone = descriptionDone
        # set by the build that runs this copy
        self._build: Build | None = None
        self.stepid: int | None = None
        self.interrupted: str | None = None
        self.logs: list[StepLog] = []

    # -- what subclasses use ----------------------------------------------------------------

    @property
    def build(self) -> Build:
        """The build running this step (RuntimeError before one has taken it)."""
        if self._build is None:
            raise RuntimeError(f"step {self.name!r} belongs to no build yet")
        return self._build

    @build.setter
    def build(self, build: Build) -> None:
        self._build = build

    @property
    def id(self) -> int:
        """The step's id, once its build has added it (RuntimeError before)."""
        if self.stepid is None:
            raise RuntimeError(f"step {self.name!r} has not been added to its build: it has no id yet")
        return self.stepid

    @property
    def data(self) -> DataAPI:
        """The data API of the build's master."""
        return self.build.data

    def render(self, value: Any) -> Any:
        """*value* rendered against the build's properties."""
        return render(value, self.build.props)

    async def add_log(self, name: str, type: str = "s") -> StepLog:
        """Add a log to this step."""
        logid = await self.data.updates.add_log(self.id, name, type)
        step_log = StepLog(self.data, logid, getattr(self._build, "redact", None))
        self.logs.append(step_log)
        return step_log

    async def set_state(self, text: str) -> None:
        """Say in words what the step is doing."""
        redact = getattr(self._build, "redact", None)
        await self.data.updates.set_step_state_string(self.id, redact(text) if redact else text)

    def describe(self, done: bool) -> str:
        """The state string shown while running and when done."""
        if done and self.descriptionDone:
            return self.descriptionDone
        return self.description or self.name

    async def run(self) -> int:
        """Do the step's work; return a result code.  WorkerLost propagates (the build retries)."""
        raise NotImplementedError

    def interrupt(self, reason: str) -> None:
        """Stop the step (a build stop): the running command is interrupted; run() returns CANCELLED."""
        self.interrupted = reason

    # -- what the build calls ---------------------------------------------------------------

    def should_run(self) -> bool:
        """Whether doStepIf lets the step run."""
        return bool(self.doStepIf(self) if callable(self.doStepIf) else self.doStepIf)

    def contribution(self, result: int) -> int:
        """What this step's *result* makes of the build's result, following the step's flags."""
        if result == FAILURE:
            if self.flunkOnFailure:
                return FAILURE
            return WARNINGS if self.warnOnFailure else SUCCESS
        if result == WARNINGS:
            if self.flunkOnWarnings:
                return FAILURE
            return WARNINGS if self.warnOnWarnings else SUCCESS
        if result == SKIPPED:
            return SUCCESS
        return result

    async def write_exception(self) -> None:
        """Record the current exception's traceback in an ``err.text`` log (steps that crash say why)."""
        try:
            err = await self.add_log("err.text", "t")
            err.add("", traceback.format_exc())
            await err.finish()
        except Exception:
            log.failure("could not write the exception log of step {stepid}", stepid=self.stepid)


class RunsCommands(BuildStep):
    """A step that runs commands on the build's worker, interruptible."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._running: Any = None

    def interrupt(self, reason: str) -> None:
        """Interrupt the running command, if any (its result then says interrupted)."""
        super().interrupt(reason)
        if self._running is not None:
            self._running.interrupt(reason)

    async def run_command(
        self, command: Command, stdio: StepLog, on_output: Callable[[str, str], Any] | None = None
    ) -> CommandResult | None:
        """Run *command* on the worker, writing its output to *stdio*; None if interrupted before it started."""
        if self.interrupted is not None:
            return None

        def output(stream: str, text: str) -> None:
            stdio.add(stream, text)
            if on_output is not None:
                on_output(stream, text)

        self._running = self.build.worker.run(command, output)
        try:
            return await self._running.result
        finally:
            self._running = None


def _describe_command(command: Sequence[str] | str, limit: int = 60) -> str:
    text = command if isinstance(command, str) else " ".join(str(part) for part in command)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ShellCommand(RunsCommands):
    """Run a command on the worker: SUCCESS when it exits 0 (or as *decodeRC* says), else FAILURE.

    *command* is a list (argv, run without a shell) or a string (run by ``/bin/sh -c``);
    *env* adds variables (None removes one); *workdir* is relative to the builder's directory
    on the worker; *timeout* is seconds without output and *max_time* seconds in all before
    the command is interrupted.  Output goes to the ``stdio`` log, after header lines naming
    the command, and followed by one giving how it ended.
    """

    default_name = "shell"

    def __init__(
        self,
        command: Sequence[Any] | str | Any,
        env: dict[str, Any] | None = None,
        workdir: str | Any = "build",
        timeout: float | None = 1200.0,
        max_time: float | None = None,
        decodeRC: dict[int, int] | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.command = command
        self.env = env or {}
        self.workdir = workdir
        self.timeout = timeout
        self.max_time = max_time
        self.decodeRC = decodeRC or {0: SUCCESS}

    def describe(self, done: bool) -> str:
        """The command, quoted (Buildbot's state strings look so)."""
        if self.description or (done and self.descriptionDone):
            return super().describe(done)
        rendered = getattr(self, "_rendered_command", None)
        return f"'{_describe_command(rendered if rendered is not None else self.name)}'"

    def make_command(self) -> Command:
        """The Command for the worker, with every argument rendered."""
        command = self._rendered_command = self.render(self.command)
        env = {str(k): (None if v is None else str(v)) for k, v in self.render(self.env).items()}
        kwargs: dict[str, Any] = {
            "env": env, "builder": self.build.builder.name, "workdir": str(self.render(self.workdir)),
            "timeout": self.timeout, "max_time": self.max_time,
        }
        redact = getattr(self._build, "redact", None)
        if redact:  # the worker's own log (the master's, for a LocalWorker) shows no secret
            kwargs["shown"] = redact(command if isinstance(command, str) else " ".join(str(p) for p in command))
        if isinstance(command, str):
            return Command(shell=command, **kwargs)
        return Command(argv=[str(part) for part in command], **kwargs)

    def on_output(self, stream: str, text: str) -> None:
        """Called with each chunk of output (SetPropertyFromCommand collects it)."""

    async def run(self) -> int:
        """Run the command; the result follows its exit code."""
        command = self.make_command()
        await self.set_state(self.describe(False))
        stdio = await self.add_log("stdio")
        shown = command.shell if command.shell is not None else shlex.join(command.argv or [])
        stdio.add_header(f"{shown}\n in dir {command.workdir} (timeout {command.timeout} secs)")
        for name, value in sorted(command.env.items()):
            stdio.add_header(f" env: {name}={'(removed)' if value is None else value}")
        try:
            result = await self.run_command(command, stdio, self.on_output)
        except WorkerLost:
            stdio.add_header("worker lost while the command ran")
            await stdio.finish()
            raise
        if result is None:
            stdio.add_header(f"not run: {self.interrupted}")
        elif result.rc is None:
            stdio.add_header(f"program killed by {result.signal}" + (" (timed out)" if result.timed_out else ""))
        else:
            stdio.add_header(f"program finished with exit code {result.rc}")
        if result is not None:
            stdio.add_header(f"elapsedTime={result.elapsed:.6f}")
        await stdio.finish()
        if self.interrupted is not None or result is None or (result.interrupted and not result.timed_out):
            return CANCELLED
        if result.rc is None:
            return FAILURE
        return self.evaluate(result)

    def evaluate(self, result: CommandResult) -> int:
        """The step's result from how the command ended."""
        return self.decodeRC.get(result.rc, FAILURE) if result.rc is not None else FAILURE


class SetPropertyFromCommand(ShellCommand):
    """Run a command and set build properties from its output.

    With *property*, that property gets the standard output (stripped if *strip*); with
    *extract_fn*, ``extract_fn(rc, stdout, stderr)`` returns a dict of properties to set.
    Properties are set only when the command succeeds (or, with *extract_fn*, whatever rc).
    """

    default_name = "property"

    def __init__(
        self,
        command: Sequence[Any] | str | Any,
        property: str | None = None,  # noqa: A002 (Buildbot's name)
        extract_fn: Callable[[int | None, str, str], dict[str, Any]] | None = None,
        strip: bool = True,
        **kwargs: Any,
    ) -> None:
        if (property is None) == (extract_fn is None):
            raise ValueError("SetPropertyFromCommand needs exactly one of property= and extract_fn=")
        super().__init__(command, **kwargs)
        self.property = property
        self.extract_fn = extract_fn
        self.strip = strip
        self._out: list[str] = []
        self._err: list[str] = []

    def on_output(self, stream: str, text: str) -> None:
        """Collect the output."""
        (self._out if stream == "o" else self._err).append(text)

    def evaluate(self, result: CommandResult) -> int:
        """Keep the result; the properties are set by :meth:`run`."""
        self._result: CommandResult | None = result
        return super().evaluate(result)

    async def run(self) -> int:
        """Run the command, then set the properties."""
        self._result = None
        results = await super().run()
        result = self._result
        if result is None:
            return results
        stdout, stderr = "".join(self._out), "".join(self._err)
        found: dict[str, Any] = {}
        if self.property is not None:
            if results == SUCCESS:
                found[self.property] = stdout.strip() if self.strip else stdout
        elif self.extract_fn is not None:
            found = dict(self.extract_fn(result.rc, stdout, stderr))
        for name, value in found.items():
            await self.build.set_property(name, value, "SetPropertyFromCommand Step")
        if found:
            self.descriptionDone = self.descriptionDone or "property " + ", ".join(f"'{n}'" for n in found) + " set"
        return results


class Trigger(BuildStep):
    """Start builds through Triggerable schedulers; with *waitForFinish*, wait for them.

    The triggered buildsets get this build as parent, its source stamps, the properties
    *set_properties* (rendered) and those named in *copy_properties*.  Waiting, the step's
    result is the worst of the triggered buildsets' results; not waiting, it succeeds once
    they are submitted.
    """

    default_name = "trigger"

    def __init__(
        self,
        schedulerNames: Iterable[str],  # noqa: N803
        waitForFinish: bool = False,  # noqa: N803
        set_properties: dict[str, Any] | None = None,
        copy_properties: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.schedulerNames = list(schedulerNames)
        if not self.schedulerNames:
            raise ValueError("Trigger needs at least one scheduler name")
        self.waitForFinish = waitForFinish
        self.set_properties = set_properties or {}
        self.copy_properties = list(copy_properties)
        self._waiting: defer.Deferred | None = None

    def describe(self, done: bool) -> str:
        """'triggered a, b' once done."""
        if self.description or (done and self.descriptionDone):
            return super().describe(done)
        return ("triggered " if done else "triggering ") + ", ".join(self.schedulerNames)

    def interrupt(self, reason: str) -> None:
        """Stop waiting (the triggered builds go on)."""
        super().interrupt(reason)
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self) -> int:
        """Submit a buildset to each scheduler, then wait for them if asked to."""
        engine = self.build.engine
        # a secret rendered here would become a property of the triggered builds: never its value
        redact = getattr(self._build, "redact", None)
        props = {name: redact.value(value) if redact is not None else value
                 for name, value in self.render(self.set_properties).items()}
        for name in self.copy_properties:
            if self.build.props.has(name):
                props[name] = self.build.props.get(name)
        schedulers = [engine.triggerable(name) for name in self.schedulerNames]
        await self.set_state(self.describe(False))
        bsids = []
        for scheduler in schedulers:
            bsid, brids = await scheduler.trigger(
                props, self.build.sourcestamps, parent_buildid=self.build.buildid, waited_for=self.waitForFinish
            )
            bsids.append(bsid)
            for builderid, brid in brids.items():
                await self.data.updates.add_step_url(
                    self.id, f"{scheduler.name} #{brid}", f"#/buildrequests/{brid}?builderid={builderid}"
                )
        if not self.waitForFinish:
            return SUCCESS
        results = []
        for bsid in bsids:
            if self.interrupted is not None:
                return CANCELLED
            self._waiting = defer.ensureDeferred(engine.wait_for_buildset(bsid))
            try:
                results.append(await self._waiting)
            except defer.CancelledError:
                return CANCELLED
            finally:
                self._waiting = None
        return worst_result(results)


def __getattr__(name: str) -> Any:
    """Source steps (``Git``) live in :mod:`master.engine.source`; master.cfg may import them from here too.

    Looked up lazily: ``source`` builds on this module, so importing it here at load time would be circular.
    """
    if name == "Git":
        from master.engine.source import Git

        return Git
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
