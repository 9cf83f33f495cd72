"""The master's heartbeat: it says it runs, takes over the work of masters that stopped saying so,
and keeps the event journal to its window.

Every ``heartbeat_seconds`` this master stamps its row in ``masters``.  A master whose stamp is
older than ``master_expiry_seconds`` is taken for dead: the first master to mark it stopped
(one conditional UPDATE decides) ends its running builds as exceptions and puts its claimed
build requests back in the queue, where any master's builders take them.  After a database
outage no master is expired until every one has had ``master_expiry_seconds`` to stamp its row
again: they were all silent for the same reason, and each reconciles its own work.

The beats, the pruning interval and the grace after an outage run on the *clock* the heartbeat is
given (the global reactor by default; a ``twisted.internet.task.Clock`` in tests).  Who is silent
is decided on wall-clock time, since that is what the ``masters`` rows hold.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from twisted.application import service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from master.db.interfaces import DatabaseUnavailable

if TYPE_CHECKING:
    from master.data.connector import DataAPI

log = Logger()

PRUNE_EVERY = 60.0
"""Seconds between two prunings of the event journal."""


class Heartbeat(service.Service):
    """Stamps this master alive, expires silent masters and prunes the event journal."""

    def __init__(
        self, data: DataAPI, engine: Any, masterid: int, config: Any, clock: IReactorTime | None = None
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock: IReactorTime = clock
        self.data = data
        self.engine = engine
        self.masterid = masterid
        self.reconfig(config)
        self._loop: task.LoopingCall | None = None
        self.last_beat: defer.Deferred | None = None
        """The latest beat, running or done (it fires when the beat is over)."""
        self._last_prune: float | None = None  # by the clock; None: prune at the first beat
        self._beating = False
        self._back_at: float | None = None  # when the database came back from its last outage
        watch = getattr(getattr(data, "storage", None), "watch_availability", None)
        self._unwatch = watch(self._availability) if watch is not None else None

    def _availability(self, available: bool) -> None:
        if available:
            self._back_at = self.clock.seconds()

    def reconfig(self, config: Any) -> None:
        """Apply new intervals (they take effect from the next beat)."""
        self.interval = config.heartbeat_seconds
        self.expiry = config.master_expiry_seconds
        self.retention = config.event_retention_minutes * 60

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Beat now and every interval."""
        super().startService()
        self._loop = task.LoopingCall(self._beat_now)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=True)

    def stopService(self) -> None:  # noqa: N802
        """Stop beating."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        return super().stopService()

    def _beat_now(self) -> defer.Deferred:
        self.last_beat = defer.ensureDeferred(self.beat())
        return self.last_beat

    async def beat(self) -> None:
        """One beat; a failing database is logged and tried again at the next beat."""
        if self._beating:
            return
        self._beating = True
        try:
            await self.data.updates.master_heartbeat(self.masterid)
            await self.expire_silent_masters()
            now = self.clock.seconds()
            if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
                self._last_prune = now
                pruned = await self.data.events.prune(self.retention)
                if pruned:
                    log.debug("pruned {n} journaled events", n=pruned)
        except DatabaseUnavailable:
            pass  # the storage says when the database goes and comes back
        except Exception:
            log.failure("heartbeat failed; trying again in {s}s", s=self.interval)
        finally:
            self._beating = False

    async def expire_silent_masters(self) -> list[int]:
        """Mark stopped every other active master silent for longer than the expiry; recover its work."""
        if self._back_at is not None and self.clock.seconds() - self._back_at < self.expiry:
            return []  # the others have not had the time to say they survived the outage
        cutoff = int(time.time() - self.expiry)
        query = {"active": ["true"], "last_active__lt": [str(cutoff)], "field": ["masterid", "name"]}
        expired = []
        for master in (await self.data.get("masters", query=query)).items:
            if master["masterid"] == self.masterid:
                continue
            if await self.data.updates.master_stopped(master["masterid"]):
                log.warn("master {name} (id {id}) has been silent for over {s:g}s: taking over its work",
                         name=master["name"], id=master["masterid"], s=self.expiry)
                await self.engine.recover(master["masterid"])
                expired.append(master["masterid"])
        return expired
