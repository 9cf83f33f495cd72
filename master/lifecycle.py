"""Ordered start and reverse stop of a tree of services whose starts and stops take time.

Twisted's ``MultiService`` starts its children in the order they were added and stops them in
reverse, which is the shape a master needs: storage before the data API, the data API before
the engine, the engine before the port that lets workers in.  But it calls each child's
``startService`` and moves on (a start that opens a database or recovers a crash is still
running when the next child starts), and its ``stopService`` calls every child's at once (the
database would close while the engine still records its builds).  This module keeps the shape
and adds the waiting:

- :class:`AsyncService` is a child whose work is two coroutines, ``start()`` and ``stop()``.
  Its ``startService`` kicks ``start()`` off and keeps the Deferred as ``ready``; its
  ``stopService`` returns ``stop()``'s.  ``stop()`` must cope with a ``start()`` that failed
  half-way (it runs in that case too).
- :class:`OrderedServices` is a ``MultiService`` whose ``startService`` starts its children one
  after another, waiting for each one's ``ready`` (a plain Twisted service is started as Twisted
  does, synchronously); when one fails, the children started so far, the failing one included,
  are stopped in reverse and the failure is its ``ready``'s.  Its ``stopService`` stops the
  running children in reverse, one at a time, each after the previous one has finished; a
  child whose stop fails is logged and the others still stop.  It is itself an async child, so
  trees nest (a plugin's part holds that plugin's services).  Adding a child never starts it:
  :meth:`OrderedServices.start_child` adds and starts one in a running tree (reconfig),
  :meth:`OrderedServices.stop_child` stops and removes one.
- :class:`Made` is a child made when its turn comes, for a service built from what earlier
  children made (the heartbeat needs the data API that storage's start opened).

``master.service.MasterService`` is the tree of a running master; its module documentation
lists the children and their order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

log = Logger()


class _AsyncLifecycle:
    """``startService`` runs ``start()`` (its Deferred is ``ready``); ``stopService`` runs ``stop()``."""

    ready: defer.Deferred

    async def start(self) -> None:
        """Start; the next sibling starts once this returns."""

    async def stop(self) -> None:
        """Stop what ``start`` started, also after a ``start`` that failed half-way."""

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Mark the service running and kick ``start()`` off; ``ready`` fires when it is done."""
        service.Service.startService(self)  # type: ignore[arg-type]
        self.ready = defer.ensureDeferred(self.start())

    def stopService(self) -> defer.Deferred:  # noqa: N802
        """Mark the service stopped and run ``stop()``."""
        service.Service.stopService(self)  # type: ignore[arg-type]
        return defer.ensureDeferred(self.stop())


def ready_of(child: service.IService) -> defer.Deferred:
    """The Deferred that fires when *child*, whose ``startService`` was called, has started."""
    if isinstance(child, _AsyncLifecycle):
        return child.ready
    return defer.succeed(None)


class AsyncService(_AsyncLifecycle, service.Service):
    """A service whose start and stop are coroutines: override ``start()`` and ``stop()``."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self.ready = defer.succeed(None)


class OrderedServices(_AsyncLifecycle, service.MultiService):
    """Children started one after another in the order added, and stopped one at a time in reverse."""

    def __init__(self, name: str | None = None) -> None:
        service.MultiService.__init__(self)
        self.name = name
        self.ready = defer.succeed(None)

    def addService(self, child: service.IService) -> None:  # noqa: N802
        """Add *child* last, without starting it (``start_children`` or ``start_child`` starts it)."""
        running, self.running = self.running, 0  # MultiService would start it now, without waiting
        try:
            service.MultiService.addService(self, child)
        finally:
            self.running = running

    async def start(self) -> None:
        """Start the children in order (override to make them first, then call ``start_children``)."""
        await self.start_children()

    async def stop(self) -> None:
        """Stop the running children in reverse order."""
        await self.stop_children()

    async def start_children(self) -> None:
        """Start each child not running yet, in order, each once the previous one is ready.

        When one fails, those started (the failing one included) are stopped in reverse and the
        failure is raised; when this tree is stopped meanwhile, no further child starts
        (``CancelledError``).
        """
        started: list[service.IService] = []
        for child in list(self):
            if not self.running:  # stopped meanwhile (the reactor shuts down during a start)
                raise defer.CancelledError(f"{self.name or type(self).__name__} stopped while starting")
            if child.running:
                continue
            started.append(child)
            try:
                child.startService()
                await ready_of(child)
            except BaseException:
                await self._stop_each(reversed(started))
                raise

    async def stop_children(self) -> None:
        """Stop the running children in reverse order, each once the next one has stopped."""
        await self._stop_each(reversed(list(self)))

    async def _stop_each(self, children: Any) -> None:
        for child in children:
            if not child.running:
                continue
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception:
                log.failure("stopping {name} failed", name=child.name or type(child).__name__)

    async def start_child(self, child: service.IService) -> None:
        """Add *child* last and, when this tree runs, start it and wait until it is ready.

        A child that fails to start is stopped and removed, and the failure raised.
        """
        self.addService(child)
        if not self.running:
            return
        try:
            child.startService()
            await ready_of(child)
        except BaseException:
            await self.stop_child(child)
            raise

    async def stop_child(self, child: service.IService) -> None:
        """Stop *child* (when it runs) and remove it from the tree."""
        try:
            if child.running:
                await defer.maybeDeferred(child.stopService)
        finally:
            self._forget(child)

    def _forget(self, child: service.IService) -> None:
        # not MultiService.removeService: it would stop the child again, without waiting
        if child.name is not None:
            self.namedServices.pop(child.name, None)
        self.services.remove(child)
        child.parent = None


class Made(OrderedServices):
    """A child made by *make()* when its turn to start comes, and dropped when it stops.

    For a service built from what earlier siblings made: ``Made("heartbeat", lambda:
    Heartbeat(master.data, ...))``.  The service made is ``made`` while it runs.
    """

    def __init__(self, name: str, make: Callable[[], service.IService]) -> None:
        super().__init__(name)
        self.make = make
        self.made: Any = None

    async def start(self) -> None:
        """Make the service and start it."""
        self.made = self.make()
        self.addService(self.made)
        await self.start_children()

    async def stop(self) -> None:
        """Stop the service made and drop it."""
        made, self.made = self.made, None
        if made is not None:
            await self.stop_child(made)
