"""The engine: builders, schedulers and the build request distributor of one master.

``start(data, masterid, config)`` first recovers from a crash of this master (its builds
left running end as EXCEPTION; the requests it held go back to the queue, or complete when
a build of theirs had finished), then sets up builders and schedulers from the config and
starts distributing requests.  ``reconfig(config)`` applies a new config (running builds
keep the steps they started with; unchanged schedulers keep running).  ``stop()`` stops the
schedulers and the running builds, whose requests go back to the queue (RETRY).

A database outage (PostgreSQL unreachable for longer than the storage's retry window) stops
the running builds: they end ``retry``, since the infrastructure failed and not they.  Whatever
could not be recorded meanwhile (builds left incomplete, requests left claimed) is reconciled as
soon as the database is back, without a restart: :meth:`Engine.reconcile` finishes those builds
``retry`` and completes or queues again their requests, as the restart path does.

The engine is the worker link's IWorkerListener, and the data API's actions reach it through
the ``master.data.seams.EngineControls`` it satisfies (bound by ``start`` with
``data.bind_engine``, unbound by ``stop``): build ``stop``/``rebuild``, buildrequest ``cancel``
of a claimed request, worker ``stop``/``kill``, forcescheduler ``force``, latent workers' state.

Every timer of the engine (its poll, its schedulers', its latent workers', its locks' waits)
runs on the *clock* it is given (an ``IReactorTime``, the global reactor by default), so that a
test can drive them with ``twisted.internet.task.Clock``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from master.data.errors import Conflict, NotFound
from master.db.interfaces import DatabaseUnavailable
from master.engine.build import DATABASE_LOST, Build
from master.engine.builder import Builder, BuildRequestDistributor
from master.engine.interfaces import IWorkerConnection, IWorkerListener
from master.engine.latent import LatentWorkers, Slot
from master.engine.schedulers import BaseScheduler, ForceScheduler, Triggerable
from master.results import EXCEPTION, RETRY

log = Logger()

PAGE = 1000



@implementer(IWorkerListener)
class Engine:
    """Runs the builds of one master (see the module's documentation).

    *poll_interval* is how often (seconds) the engine looks for requests that other masters
    added, retries claiming schedulers another master holds, and re-reads buildsets that a
    Trigger step waits for; *stop_timeout* bounds how long ``stop()`` waits for builds to end;
    *clock* runs every timer of the engine (the global reactor by default).
    """

    def __init__(
        self, poll_interval: float = 10.0, stop_timeout: float = 30.0, clock: IReactorTime | None = None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock: IReactorTime = clock
        self.poll_interval = poll_interval
        self.stop_timeout = stop_timeout
        self.data: Any = None
        self.masterid: int | None = None
        self.config: Any = None
        self.builders: dict[str, Builder] = {}
        self.schedulers: dict[str, BaseScheduler] = {}
        self.workers: dict[str, IWorkerConnection] = {}
        self.builds: dict[int, Build] = {}
        self.shutting_down: set[IWorkerConnection] = set()
        self.accepting = False
        self.distributor = BuildRequestDistributor(self)
        self._load: dict[Slot, int] = {}
        self._poller: task.LoopingCall | None = None
        self._subscriptions: list[Any] = []
        self._build_waiters: list[defer.Deferred] = []
        self.needs_reconcile = False  # something could not be recorded while the database was away
        self._reconciling = False
        self._outage_call: Any = None
        self._unwatch: Any = None
        self.latent = LatentWorkers(self, self.clock)  # latent workers (master.engine.latent): started for builds

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self, data: Any, masterid: int, config: Any) -> None:
        """Recover from a crash, apply *config* and start building."""
        self.data = data
        self.masterid = masterid
        data.bind_engine(self)
        self.distributor.stopped = False
        await data.updates.release_master_locks(masterid)  # what its builds held before a crash
        await self.recover()
        await self._apply(config)
        master = await data.get(("masters", str(masterid)), query={"field": ["name"]})
        await self.latent.start(master["name"] if master else str(masterid), masterid)
        events = data.events
        for pattern in (("buildrequests", "*", "new"), ("buildrequests", "*", "unclaimed"),
                        ("workers", "*", "state_updated")):
            self._subscriptions.append(events.subscribe(pattern, lambda key, entity: self.distributor.activity()))
        watch = getattr(data.storage, "watch_availability", None)
        if watch is not None:
            self._unwatch = watch(self._database_availability)
        self.accepting = True
        self._poller = task.LoopingCall(self._poll)
        self._poller.clock = self.clock
        self._poller.start(self.poll_interval, now=True)

    async def reconfig(self, config: Any) -> None:
        """Apply a new config: builders and schedulers added, changed or removed."""
        await self._apply(config)
        self.distributor.activity()

    def stop_accepting(self) -> None:
        """Start no new build (``ci-master stop --clean``): running builds go on; requests stay queued."""
        self.accepting = False

    async def stop(self) -> None:
        """Stop scheduling and building; running builds end RETRY and their requests are queued again."""
        self.accepting = False
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        self._poller = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._outage_call is not None and self._outage_call.active():
            self._outage_call.cancel()
        for subscription in self._subscriptions:
            subscription.cancel()
        self._subscriptions.clear()
        for scheduler in list(self.schedulers.values()):
            await scheduler.detach()
        self.schedulers.clear()
        self.distributor.stopped = True
        await self.distributor.wait_idle()
        for build in list(self.builds.values()):
            build.stop("master stopping", RETRY)
        await self._wait_builds(self.stop_timeout)
        await self.latent.stop()
        if self.data is not None and self.data.engine is self:
            self.data.bind_engine(None)

    async def _wait_builds(self, timeout: float) -> None:
        deadline = self.clock.seconds() + timeout
        while self.builds and self.clock.seconds() < deadline:
            waiter: defer.Deferred = defer.Deferred()
            self._build_waiters.append(waiter)
            left = max(deadline - self.clock.seconds(), 0)
            timer = self.clock.callLater(left, lambda w=waiter: w.called or w.callback(None))
            await waiter
            if timer.active():
                timer.cancel()
        if self.builds:
            log.warn("{n} build(s) still running after {t} s of stopping", n=len(self.builds), t=timeout)

    def _poll(self) -> None:
        if self.needs_reconcile:
            defer.ensureDeferred(self.reconcile())
        self.distributor.activity()
        for scheduler in self.schedulers.values():
            if scheduler.runs_alone and not scheduler.running:
                defer.ensureDeferred(scheduler.try_claim()).addErrback(
                    lambda f: log.failure("claiming a scheduler failed", f)
                )

    # -- recovery -----------------------------------------------------------------------------

    async def recover(
        self, masterid: int | None = None, results: int = EXCEPTION, why: str = "its master stopped while it ran"
    ) -> None:
        """End the builds a master left running (EXCEPTION) and give back or complete its requests.

        *masterid* is this master's own (after a crash) by default, or that of a master whose
        heartbeat stopped (see master.heartbeat).  The builds and requests this engine is running
        now are left alone (:meth:`reconcile` runs while it builds); the others end *results*.
        """
        owner = self.masterid if masterid is None else masterid
        data, me = self.data, str(owner)
        mine = owner == self.masterid
        ended: set[int] = set()
        after = 0
        while True:
            query = {"masterid": [me], "complete": ["false"], "buildid__gt": [str(after)], "order": ["buildid"],
                     "field": ["buildid"], "limit": [str(PAGE)]}
            builds = (await data.get("builds", query=query)).items
            if not builds:
                break
            after = builds[-1]["buildid"]
            for build in builds:
                if mine and self._running_build(build["buildid"]) is not None:
                    continue
                await self._end_lost_build(build["buildid"], results, why)
                ended.add(build["buildid"])
        after = 0
        requeued = completed = 0
        while True:
            query = {"claimed_by_masterid": [me], "complete": ["false"], "buildrequestid__gt": [str(after)],
                     "order": ["buildrequestid"], "field": ["buildrequestid"], "limit": [str(PAGE)]}
            requests = (await data.get("buildrequests", query=query)).items
            if not requests:
                break
            after = requests[-1]["buildrequestid"]
            requeue = []
            for request in requests:
                brid = request["buildrequestid"]
                if mine and brid in self.builds:
                    continue
                query = {"complete": ["true"], "field": ["buildid", "results"], "order": ["buildid"]}
                done = [b for b in (await data.get(("buildrequests", str(brid), "builds"), query=query)).items
                        if b["buildid"] not in ended and b["results"] != RETRY]
                if done:
                    # its build finished before the crash: it must not run a second time
                    await data.updates.complete_buildrequests([brid], done[-1]["results"])
                    completed += 1
                else:
                    requeue.append(brid)
            if requeue:
                await data.updates.unclaim_buildrequests(requeue, owner)
                requeued += len(requeue)
        if ended or requeued or completed:
            log.info("recovered the work of master {id}: {n} build(s) ended ({why}), {q} request(s) queued again,"
                     " {c} completed", n=len(ended), id=owner, why=why, q=requeued, c=completed)

    # -- database outages -----------------------------------------------------------------------

    def _database_availability(self, available: bool) -> None:
        """The storage says the database went away or came back."""
        if self._outage_call is not None and self._outage_call.active():
            self._outage_call.cancel()
        self._outage_call = None
        if available:
            self.needs_reconcile = True
            defer.ensureDeferred(self.reconcile())
            return
        # a short outage (a PostgreSQL restart) is a pause: builds wait for their writes; a longer one
        # than the storage retries for ends them, since nothing they do can be recorded any more
        window = getattr(self.data.storage, "retry_seconds", 30.0)
        self._outage_call = self.clock.callLater(window, self._outage_outlasted_retries)

    def _outage_outlasted_retries(self) -> None:
        self._outage_call = None
        if getattr(self.data.storage, "database_available", True):
            return
        if self.builds:
            log.warn("the database has been unavailable for too long: stopping {n} build(s); they end retry"
                     " and their requests run again once it is back", n=len(self.builds))
        self.needs_reconcile = True
        for build in list(self.builds.values()):
            build.stop(DATABASE_LOST, RETRY)

    async def reconcile(self) -> None:
        """Record what a database outage kept from being recorded: builds this master left unfinished end
        RETRY, their requests are queued again (or completed, if a build of theirs had finished).
        """
        if self._reconciling or self.data is None:
            return
        self._reconciling = True
        try:
            self.needs_reconcile = False
            await self.recover(self.masterid, RETRY, DATABASE_LOST)
        except Exception as e:
            self.needs_reconcile = True  # the next poll tries again
            if not isinstance(e, DatabaseUnavailable):
                log.failure("reconciling after a database outage failed; trying again at the next poll")
        finally:
            self._reconciling = False
        self.distributor.activity()

    async def _end_lost_build(self, buildid: int, results: int = EXCEPTION,
                              why: str = "its master stopped while it ran") -> None:
        data = self.data
        steps = (await data.get(("builds", str(buildid), "steps"),
                                query={"complete": ["false"], "field": ["stepid"], "limit": [str(PAGE)]})).items
        for step in steps:
            logs = (await data.get(("steps", str(step["stepid"]), "logs"),
                                   query={"complete": ["false"], "field": ["logid"]})).items
            for log_entity in logs:
                await data.updates.finish_log(log_entity["logid"])
            await data.updates.finish_step(step["stepid"], results)
        await data.updates.release_build_locks(buildid)
        await data.updates.set_build_state_string(buildid, f"lost: {why}")
        await data.updates.finish_build(buildid, results)

    # -- configuration ------------------------------------------------------------------------

    async def _builder_id(self, builder: Any) -> int:
        query = {"name": [builder.name], "field": ["builderid"]}
        found = (await self.data.get("builders", query=query)).items
        if found:
            return found[0]["builderid"]
        # the service records configured builders; an engine run without it records them itself
        return await self.data.updates.update_builder(
            builder.name, description=getattr(builder, "description", None), tags=list(getattr(builder, "tags", []))
        )

    async def _apply(self, config: Any) -> None:
        builders = {}
        for spec in getattr(config, "builders", []):
            steps = list(getattr(spec, "steps", None) or [])
            factory = getattr(spec, "factory", None)
            if not steps and factory is not None:
                steps = list(getattr(factory, "steps", factory))
            builders[spec.name] = Builder(spec.name, await self._builder_id(spec), list(spec.workernames), steps,
                                          getattr(spec, "locks", None))
        self.builders = builders  # running builds keep the Builder (and steps) they started with
        wanted = {scheduler.name: scheduler for scheduler in getattr(config, "schedulers", None) or []}
        for name, running in list(self.schedulers.items()):
            if wanted.get(name) != running:
                await running.detach()
                del self.schedulers[name]
                if isinstance(running, ForceScheduler) and not isinstance(wanted.get(name), ForceScheduler):
                    await self.data.updates.remove_forcescheduler(name)
        for name, scheduler in wanted.items():
            if name in self.schedulers:
                continue
            await scheduler.attach(self)
            self.schedulers[name] = scheduler
            if scheduler.runs_alone:
                await scheduler.try_claim()
        await self.latent.configure(config)
        self.config = config

    # -- workers (IWorkerListener) --------------------------------------------------------------

    def worker_attached(self, connection: IWorkerConnection) -> None:
        """A worker connected: it may take builds (a graceful stop asked before is over)."""
        self.workers[connection.name] = connection
        self.latent.worker_attached(connection)
        d = defer.ensureDeferred(self.set_graceful(connection.workerid, False))
        d.addCallback(lambda _: self.distributor.activity())
        d.addErrback(lambda failure: log.failure("could not record worker {name}", failure, name=connection.name))

    async def set_graceful(self, workerid: int, graceful: bool) -> None:
        """Record whether the worker is on its way out, keeping its paused state."""
        fields = {"field": ["paused", "pause_reason", "graceful"]}
        worker = await self.data.get(("workers", str(workerid)), query=fields)
        if worker is not None and worker["graceful"] != graceful:
            await self.data.updates.set_worker_state(workerid, worker["paused"], graceful, worker["pause_reason"])

    def worker_detached(self, connection: IWorkerConnection) -> None:
        """A worker disconnected: its builds end RETRY."""
        if self.workers.get(connection.name) is connection:
            del self.workers[connection.name]
        self.shutting_down.discard(connection)
        self.latent.worker_detached(connection)
        for build in list(self.builds.values()):
            if build.conn is connection:
                build.worker_lost()

    def load(self, conn: Slot) -> int:
        """How many builds *conn* runs or is about to run."""
        return self._load.get(conn, 0)

    def reserve(self, conn: Slot) -> None:
        """Count a build on *conn* (from its assignment until it ends)."""
        self._load[conn] = self._load.get(conn, 0) + 1

    def release(self, conn: Slot) -> None:
        """Uncount a build on *conn*."""
        left = self._load.get(conn, 0) - 1
        if left > 0:
            self._load[conn] = left
        else:
            self._load.pop(conn, None)

    def build_ended(self, build: Build) -> None:
        """A build ended (called by the distributor)."""
        self.latent.build_ended(build.slot)
        waiters, self._build_waiters = self._build_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    # -- what steps use ------------------------------------------------------------------------

    def triggerable(self, name: str) -> Triggerable:
        """The Triggerable scheduler *name* (ValueError if there is none)."""
        scheduler = self.schedulers.get(name)
        if not isinstance(scheduler, Triggerable):
            raise ValueError(f"no Triggerable scheduler named {name!r}")
        return scheduler

    async def wait_for_buildset(self, bsid: int) -> int:
        """Wait until buildset *bsid* completes (on any master); return its results.  Cancellable."""
        data = self.data
        wake: list[defer.Deferred] = []

        def on_complete(key: Any, entity: Mapping[str, Any]) -> None:
            for waiter in wake:
                if not waiter.called:
                    waiter.callback(None)

        subscription = data.events.subscribe(("buildsets", str(bsid), "complete"), on_complete)
        try:
            while True:
                entity = await data.get(("buildsets", str(bsid)), query={"field": ["complete", "results"]})
                if entity is None:
                    raise NotFound(f"no buildset {bsid}")
                if entity["complete"]:
                    return entity["results"]
                waiter: defer.Deferred = defer.Deferred()
                wake[:] = [waiter]
                timer = self.clock.callLater(self.poll_interval, lambda w=waiter: w.called or w.callback(None))
                try:
                    await waiter
                finally:
                    if timer.active():
                        timer.cancel()
        finally:
            subscription.cancel()

    # -- controls (master.data.seams.EngineControls, reached through data.controls()) ----------------

    def _running_build(self, buildid: int) -> Build | None:
        for build in self.builds.values():
            if build.buildid == buildid:
                return build
        return None

    async def stop_build(self, buildid: int, reason: str | None = None) -> None:
        """Stop build *buildid*: it ends CANCELLED (a build already finished is left as it is)."""
        build = self._running_build(buildid)
        if build is not None:
            build.stop(reason or "stopped")
            return
        entity = await self.data.get(("builds", str(buildid)), query={"field": ["complete", "masterid"]})
        if entity is None:
            raise NotFound(f"not found: builds/{buildid}")
        if not entity["complete"] and entity["masterid"] != self.masterid:
            raise Conflict(f"build {buildid} runs on master {entity['masterid']}: stop it there")

    async def rebuild(self, buildid: int, reason: str | None = None) -> list[Any]:
        """Submit build *buildid*'s buildset again for its builder; return ``[bsid, {builderid: brid}]``."""
        data = self.data
        build = await data.get(("builds", str(buildid)))
        if build is None:
            raise NotFound(f"not found: builds/{buildid}")
        request = await data.get(("buildrequests", str(build["buildrequestid"])))
        buildset = await data.get(("buildsets", str(request["buildsetid"])), query={"property": ["*"]})
        properties = {name: (value, source) for name, (value, source) in (buildset["properties"] or {}).items()}
        bsid, brids = await data.updates.add_buildset(
            None, [ss["ssid"] for ss in buildset["sourcestamps"]],
            reason or f"rebuild of build {build['number']} ({buildset['reason'] or 'no reason'})",
            properties, [build["builderid"]], rebuilt_buildid=buildid, priority=request["priority"],
        )
        return [bsid, {str(builderid): brid for builderid, brid in brids.items()}]

    async def cancel_buildrequest(self, brid: int, reason: str | None = None) -> bool:
        """Stop the build of claimed request *brid* if it runs here; return whether it does."""
        build = self.builds.get(brid)
        if build is None:
            return False
        build.stop(reason or "build request cancelled")
        return True

    async def shutdown_worker(self, workerid: int, graceful: bool) -> None:
        """Ask worker *workerid* to leave: after its builds (*graceful*) or now (they end RETRY)."""
        for conn in list(self.workers.values()):
            if conn.workerid == workerid:
                if graceful:
                    self.shutting_down.add(conn)  # no new build meanwhile
                    await self.set_graceful(workerid, True)
                conn.shutdown(graceful)

    def latent_state(self, workerid: int) -> str | None:
        """The state of latent worker *workerid* here (``stopped``, ``starting``...), or None if not one of ours."""
        return self.latent.state_of_id(workerid)

    async def force(self, schedulername: str, params: Mapping[str, Any], user: Any = None) -> list[Any]:
        """Run the ``force`` action of force scheduler *schedulername*."""
        scheduler = self.schedulers.get(schedulername)
        if not isinstance(scheduler, ForceScheduler):
            raise Conflict(f"force scheduler {schedulername!r} is not configured on this master")
        return await scheduler.force(params, user)
