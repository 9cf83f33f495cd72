"""Builders at run time, and the distributor that hands pending build requests to idle workers.

The distributor runs a *round* whenever something may let a build start: requests added or
given back (``buildrequests/*/new`` and ``unclaimed`` events), a worker attached or
unpaused, a build ended, and every ``poll_interval`` seconds (requests added through other
masters raise no event here).  Rounds never overlap: one asked for while another runs is
run right after it.

A round reads the pending requests of this master's builders that have a free worker,
highest priority first, then oldest, then by id; assigns each to the least busy attached
worker that the builder lists, is not paused nor shutting down, and runs fewer than its
``max_builds``; claims the assigned requests with one ``claim_buildrequests`` (of masters
claiming at once, each request goes to exactly one); and starts a build for each request
it got.  Requests that another master got first free their worker for the next round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger

from master.db.interfaces import DatabaseUnavailable
from master.engine.build import DATABASE_LOST, Build
from master.engine.locks import check_locks
from master.engine.steps import BuildStep
from master.results import EXCEPTION, RETRY

if TYPE_CHECKING:
    from master.engine.engine import Engine
    from master.engine.latent import Slot

log = Logger()


class Builder:
    """A configured builder: its id, the workers it may use and its steps (templates)."""

    def __init__(
        self, name: str, builderid: int, workernames: list[str], steps: list[BuildStep], locks: Any = None
    ) -> None:
        self.name = name
        self.builderid = builderid
        self.workernames = list(workernames)
        self.steps = list(steps)
        self.locks = check_locks(locks, f"builder {name!r}: locks")

    def can_use(self, conn: Slot) -> bool:
        """Whether worker *conn* may run this builder's builds."""
        return conn.name in self.workernames


class BuildRequestDistributor:
    """Claims pending requests and starts their builds on idle workers (see the module's documentation)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._running = False
        self._again = False
        self._idle: list[defer.Deferred] = []
        self.stopped = False

    def activity(self) -> None:
        """Something changed: run a round now, or right after the one running."""
        if self.stopped:
            return
        if self._running:
            self._again = True
            return
        self._running = True
        defer.ensureDeferred(self._loop())

    async def _loop(self) -> None:
        try:
            while not self.stopped:
                self._again = False
                try:
                    progress = await self._round()
                except DatabaseUnavailable:
                    progress = False  # said once by the storage; the engine is told when it is back
                except Exception:
                    log.failure("build request distribution failed")
                    progress = False
                if not (self._again or progress):
                    break
        finally:
            self._running = False
            idle, self._idle = self._idle, []
            for waiter in idle:
                waiter.callback(None)

    async def wait_idle(self) -> None:
        """Wait for the running round (and those asked for meanwhile) to end."""
        if self._running:
            waiter: defer.Deferred = defer.Deferred()
            self._idle.append(waiter)
            await waiter

    async def _free_slots(self) -> dict[Slot, int]:
        """Attached workers that may take a build now, with how many more each may take."""
        engine = self.engine
        # a latent worker takes builds through its slot, up or not (master.engine.latent)
        candidates = [c for c in engine.workers.values() if not engine.latent.manages(c.name)]
        conns = [c for c in candidates + engine.latent.slots() if engine.load(c) < max(int(c.max_builds or 1), 1)]
        if not conns:
            return {}
        query = {"workerid": [str(c.workerid) for c in conns], "field": ["workerid", "paused", "graceful"],
                 "limit": [str(engine.data.limits.maximum)]}
        states = {w["workerid"]: w for w in (await engine.data.get("workers", query=query)).items}
        free: dict[Slot, int] = {}
        for conn in conns:
            state = states.get(conn.workerid)
            if state is None or state["paused"] or state["graceful"] or conn in engine.shutting_down:
                continue
            free[conn] = max(int(conn.max_builds or 1), 1) - engine.load(conn)
        return free

    async def _round(self) -> bool:
        """One round; return whether it started builds (then another round may start more)."""
        engine = self.engine
        if not engine.accepting:
            return False
        free = await self._free_slots()
        builders = {
            b.builderid: b for b in engine.builders.values() if any(b.can_use(conn) for conn in free)
        }
        if not builders:
            return False
        limit = min(sum(free.values()) * 2 + 5, engine.data.limits.maximum)
        query = {
            "builderid": [str(i) for i in sorted(builders)], "claimed": ["false"], "complete": ["false"],
            "order": ["-priority", "submitted_at", "buildrequestid"], "limit": [str(limit)],
        }
        pending = (await engine.data.get("buildrequests", query=query)).items
        assigned: list[tuple[dict[str, Any], Slot]] = []
        for request in pending:
            builder = builders.get(request["builderid"])
            if builder is None:  # the query asked for these builders only
                continue
            usable = [conn for conn, n in free.items() if n > 0 and builder.can_use(conn)]
            if not usable:
                continue
            conn = min(usable, key=lambda c: (-free[c], c.name))  # the least busy
            free[conn] -= 1
            assigned.append((request, conn))
            if not any(free.values()):
                break
        if not assigned:
            return False
        # reserve the workers while claiming, so that a round started meanwhile does not count them free
        for _, conn in assigned:
            engine.reserve(conn)
        try:
            claimed = set(await engine.data.updates.claim_buildrequests(
                [request["buildrequestid"] for request, _ in assigned], engine.masterid,
                pending={request["buildrequestid"]: request for request, _ in assigned},
            ))
        except Exception:
            for _, conn in assigned:
                engine.release(conn)
            raise
        started = False
        for request, conn in assigned:
            if request["buildrequestid"] in claimed:
                builder = builders[request["builderid"]]
                build = Build(engine, builder, request, conn)
                engine.builds[build.brid] = build
                defer.ensureDeferred(self._run_build(build))
                started = True
            else:
                engine.release(conn)  # another master claimed it first
        return started or len(claimed) < len(assigned)

    async def _run_build(self, build: Build) -> None:
        engine = self.engine
        data = engine.data
        try:
            try:
                results = await build.run()
            except DatabaseUnavailable:
                # nothing can be recorded now: the engine reconciles (RETRY) once the database is back
                engine.needs_reconcile = True
                log.warn("build of request {brid} ended retry: {reason}", brid=build.brid, reason=DATABASE_LOST)
                return
            except Exception:
                log.failure("build of request {brid} failed", brid=build.brid)
                results = EXCEPTION
                if build.buildid is not None:
                    try:
                        await data.updates.finish_build(build.buildid, EXCEPTION)
                    except Exception:
                        log.failure("could not finish build {buildid}", buildid=build.buildid)
            if results == RETRY or build.buildid is None:
                await data.updates.unclaim_buildrequests([build.brid], engine.masterid)
            else:
                await data.updates.complete_buildrequests([build.brid], results)
        except DatabaseUnavailable:
            engine.needs_reconcile = True
            log.warn("the end of the build of request {brid} is recorded once the database is back", brid=build.brid)
        except Exception:
            log.failure("could not record the end of the build of request {brid}", brid=build.brid)
        finally:
            engine.builds.pop(build.brid, None)
            engine.release(build.slot)
            engine.build_ended(build)
            self.activity()
