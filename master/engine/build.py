"""A build: one run of a builder's steps, in order, on one worker, for one claimed build request.

Every state change goes through the data API (``add_build``, ``add_step``, ``start_step``,
``finish_step``, ``finish_build``...), so REST shows it at once.  The build's result is the
worst of what its steps make of it (see ``BuildStep.contribution``); a step with
``haltOnFailure`` that fails stops the build, after which only ``alwaysRun`` steps run.
``stop(reason)`` interrupts the running command and ends the build CANCELLED; a worker lost
ends it RETRY (the builder then gives its request back to the queue), and so does a database
unavailable for longer than the storage's retry window (:class:`DatabaseUnavailable`): the
infrastructure failed, not the build.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from master.db.interfaces import DatabaseUnavailable
from master.engine.interfaces import IWorkerConnection, WorkerLost
from master.engine.latent import LatentSlot, Slot, WorkerPreparation
from master.engine.locks import release_build_locks, start_build_locks, take_step_locks
from master.engine.properties import Properties
from master.engine.steps import BuildStep
from master.metrics import metrics_of
from master.results import CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, result_name, worst_result
from master.secrets import Redactor, load_build_secrets

if TYPE_CHECKING:
    from master.data.connector import DataAPI
    from master.engine.builder import Builder
    from master.engine.engine import Engine

log = Logger()

SOURCESTAMP_PROPERTIES = ("branch", "revision", "repository", "codebase", "project")

DATABASE_LOST = "the database was unavailable"


class Build:
    """One build of *builder* for the request *request* (a buildrequests entity) on worker *conn*."""

    def __init__(self, engine: Engine, builder: Builder, request: dict[str, Any], conn: Slot) -> None:
        self.engine = engine
        self.data: DataAPI = engine.data  # set: builds run on a started engine
        self.builder = builder
        self.request = request
        self.conn: Slot = conn
        # what the distributor reserved: conn itself, or a latent worker's slot until its connection replaces conn
        self.slot: Slot = conn
        self.buildid: int | None = None
        self.number: int | None = None
        self.props = Properties()
        self.sourcestamps: list[dict[str, Any]] = []
        self.results: int = SUCCESS
        self.stopped: str | None = None
        self.stop_results = CANCELLED
        self.lost = False
        self.current: BuildStep | None = None
        self.redact = Redactor({})  # the build's secrets out of what it stores (set when it starts)
        self.timer = metrics_of(self.data).build_timer(builder.name)

    @property
    def id(self) -> int:
        """The build's id, from its start on (RuntimeError before: it has no row yet)."""
        if self.buildid is None:
            raise RuntimeError(f"the build of request {self.brid} has not started: it has no id yet")
        return self.buildid

    @property
    def worker(self) -> IWorkerConnection:
        """The connection the build's commands run on (RuntimeError while a latent worker is still starting)."""
        if isinstance(self.conn, LatentSlot):
            raise RuntimeError(f"build {self.buildid}: its latent worker {self.conn.name!r} is not connected yet")
        return self.conn

    @property
    def brid(self) -> int:
        """The id of the request this build serves."""
        return self.request["buildrequestid"]

    def stop(self, reason: str, results: int = CANCELLED) -> None:
        """End the build: the running step is interrupted, no further step runs; it ends as *results*."""
        if self.stopped is not None:
            return
        self.stopped = reason
        self.stop_results = results
        if self.current is not None:
            self.current.interrupt(reason)

    def worker_lost(self) -> None:
        """The worker went away: no further step runs and the build ends RETRY."""
        self.lost = True
        if self.current is not None:
            # the running command fails with WorkerLost from the link; this covers a step between commands
            self.current.interrupt("worker lost")

    async def set_property(self, name: str, value: Any, source: str) -> None:
        """Set a build property, in memory and through the data API (secret values in it redacted)."""
        value = self.redact.value(value)
        self.props.set(name, value, source)
        await self.data.updates.set_build_properties(self.id, {name: (value, source)})

    async def _load_buildset(self) -> None:
        """The buildset's properties and source stamps, and the properties a build sets itself."""
        bsid = self.request["buildsetid"]
        buildset = await self.data.get(("buildsets", str(bsid)), query={"property": ["*"]})
        for name, (value, source) in (buildset.get("properties") or {}).items():
            self.props.set(name, value, source)
        self.sourcestamps = list(buildset.get("sourcestamps") or [])
        self.props.sourcestamps = self.sourcestamps
        if self.sourcestamps:
            first = self.sourcestamps[0]
            for name in SOURCESTAMP_PROPERTIES:
                if not self.props.has(name):
                    self.props.set(name, first.get(name), "Build")
        for name, value in self._numbered(None, None):
            self.props.set(name, value, "Build")

    def _numbered(self, buildid: int | None, number: int | None) -> list[tuple[str, Any]]:
        """The properties a build sets itself, in their order (buildnumber and buildid once known)."""
        return [
            ("buildername", self.builder.name), ("builderid", self.builder.builderid),
            ("buildnumber", number), ("buildid", buildid), ("workername", self.conn.name),
            ("buildrequestid", self.brid), ("masterid", self.engine.masterid),
        ]

    async def run(self) -> int:
        """Run the build to its end; return its result (RETRY: the request must be queued again)."""
        data = self.data
        try:
            await self._load_buildset()
        except Exception:
            log.failure("reading the buildset of request {brid} failed", brid=self.brid)
            loaded = False
        else:
            loaded = True
        first = self.props.as_dict()

        def properties(buildid: int, number: int) -> dict[str, tuple[Any, str]]:
            # _load_buildset has set them all already (in their places), the ids unknown then
            numbered = dict(first)
            for name, value in self._numbered(buildid, number):
                numbered[name] = (value, "Build")
            return numbered

        # one transaction: the build, its properties and its "building" state
        self.buildid, self.number = await data.updates.add_build(
            self.builder.builderid, self.brid, self.conn.workerid, self.engine.masterid, state_string="starting",
            properties=properties if loaded else None,
            then_state=("preparing worker" if self._latent() else "building") if loaded else None,
        )
        for name, value in self._numbered(self.buildid, self.number):
            self.props.set(name, value, "Build")
        try:
            if not loaded:
                raise RuntimeError(f"the buildset of request {self.brid} could not be read")
            missing = await load_build_secrets(self)
            if missing is not None:
                self.stop(missing, EXCEPTION)
            elif await start_build_locks(self):
                await self._run_steps()
        except DatabaseUnavailable:
            self.stop(DATABASE_LOST, RETRY)
        except Exception:
            log.failure("build {buildid} of {builder} failed", buildid=self.buildid, builder=self.builder.name)
            self.results = EXCEPTION
        if self.lost:
            self.results = RETRY
        elif self.stopped is not None:
            self.results = self.stop_results
        state = f"build {result_name(self.results)}" if self.results != SUCCESS else "build successful"
        if self.stopped is not None:
            state += f" ({self.stopped})"
        try:
            await data.updates.finish_build(self.buildid, self.results, state_string=state)
        finally:
            await release_build_locks(self)
        self.timer.finished(self.results)
        return self.results

    def _latent(self) -> bool:
        return isinstance(self.slot, LatentSlot)

    async def _run_steps(self) -> None:
        if self._latent():  # start the worker first: the worker_preparation step (master.engine.latent)
            result = await self._run_step(WorkerPreparation())
            self.results = worst_result([self.results, result])
            if result == RETRY:
                self.lost = True
            if result != SUCCESS:
                return
            await self.data.updates.set_build_state_string(self.id, "building")
        halted = False
        for template in self.builder.steps:
            if self.stopped is not None or self.lost:
                return
            if halted and not template.alwaysRun:
                continue
            step = template.fresh()
            result = await self._run_step(step)
            self.results = worst_result([self.results, step.contribution(result)])
            if result == RETRY:
                self.lost = True
                return
            if result == CANCELLED:
                return  # the step was interrupted: the build is being stopped
            if step.haltOnFailure and result in (FAILURE, EXCEPTION):
                halted = True

    async def _run_step(self, step: BuildStep) -> int:
        data = self.data
        step.build = self
        step.stepid, _, step.name = await data.updates.add_step(self.id, step.name)
        if not step.should_run():
            await data.updates.finish_step(step.stepid, SKIPPED, hidden=bool(step.hideStepIf), state_string="skipped")
            return SKIPPED
        held = await take_step_locks(self, step)
        if held is None:  # the build was stopped while the step waited for its locks
            await data.updates.finish_step(step.stepid, CANCELLED, hidden=bool(step.hideStepIf),
                                           state_string="cancelled")
            return CANCELLED
        self.current = step
        try:
            result = await step.run()
        except WorkerLost:
            self.lost = True
            result = RETRY
        except DatabaseUnavailable:
            # the command (if one ran) has ended: what failed is recording it
            self.stop(DATABASE_LOST, RETRY)
            result = RETRY
        except Exception:
            log.failure("step {name} of build {buildid} failed", name=step.name, buildid=self.buildid)
            await step.write_exception()
            result = EXCEPTION
        finally:
            self.current = None
            await held.release()
        for step_log in step.logs:
            try:
                await step_log.finish()
            except Exception:
                log.failure("could not finish a log of step {stepid}", stepid=step.stepid)
        state = self.redact(step.describe(True))
        if result not in (SUCCESS, SKIPPED):
            state += f" ({result_name(result)})"
        await data.updates.finish_step(step.stepid, result, hidden=bool(step.hideStepIf), state_string=state)
        return result
