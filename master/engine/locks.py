"""Locks: ``MasterLock`` and ``WorkerLock``, taken by builds (``BuilderConfig(locks=[...])``) and steps (``locks=``).

As in Buildbot::

    deploy = MasterLock("deploy")                                  # one at a time, on every master
    cpu = WorkerLock("cpu", maxCount=2, maxCountForWorker={"big": 8})
    BuilderConfig(name="app", ..., locks=[deploy.access("exclusive")])
    ShellCommand(command=[...], locks=[cpu.access("counting")])

A lock of ``maxCount`` N lets N ``counting`` accesses in at once, or one ``exclusive`` access
alone.  A ``MasterLock`` is one lock for every master on the database; a ``WorkerLock`` is one
lock per worker (``maxCountForWorker`` gives a worker its own count).  A build takes its
builder's locks after it starts and before its first step, and lets them go when it ends; a
step takes its own before it starts and lets them go when it ends.  While it waits, the build's
(or step's) ``state_string`` names the lock.  The claims live in the database (see
:mod:`master.data.resources.locks`), so masters sharing a PostgreSQL database share the locks; a
master declared dead, or starting again after a crash, lets go of what its builds held.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from master.data.resources.locks import LockRequest
from master.engine.config import Configured

POLL_SECONDS = 1.0
"""How often a waiting build tries again besides when a build of this master lets a lock go
(releases on other masters send no word here)."""

ACCESS_MODES = ("exclusive", "counting")


class BaseLock(Configured):
    """A lock's name and how many counting accesses it lets in at once."""

    kind = ""

    def __init__(self, name: str, maxCount: int = 1) -> None:  # noqa: N803 (Buildbot's name)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__}: a name is needed, got {name!r}")
        if isinstance(maxCount, bool) or not isinstance(maxCount, int) or maxCount < 1:
            raise ValueError(f"{type(self).__name__}({name!r}): maxCount must be a positive integer, got {maxCount!r}")
        self.name = name
        self.maxCount = maxCount

    def access(self, mode: str) -> LockAccess:
        """The lock taken ``"exclusive"`` (alone) or ``"counting"`` (up to maxCount at once)."""
        return LockAccess(self, mode)

    def request(self, workername: str, exclusive: bool) -> LockRequest:
        """What to claim in the database for a build on worker *workername*."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, maxCount={self.maxCount})"


class MasterLock(BaseLock):
    """A lock shared by every build of every master on the database."""

    kind = "master"

    def request(self, workername: str, exclusive: bool) -> LockRequest:
        """One lock, whatever the worker."""
        return LockRequest(f"master:{self.name}", exclusive, self.maxCount)


class WorkerLock(BaseLock):
    """A lock per worker: builds on different workers never wait for each other."""

    kind = "worker"

    def __init__(
        self, name: str, maxCount: int = 1, maxCountForWorker: Mapping[str, int] | None = None  # noqa: N803
    ) -> None:
        super().__init__(name, maxCount)
        self.maxCountForWorker = dict(maxCountForWorker or {})
        for worker, count in self.maxCountForWorker.items():
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"WorkerLock({name!r}): maxCountForWorker[{worker!r}] must be a positive integer,"
                                 f" got {count!r}")

    def request(self, workername: str, exclusive: bool) -> LockRequest:
        """The lock of worker *workername*, with that worker's count."""
        return LockRequest(f"worker:{workername}:{self.name}", exclusive,
                           self.maxCountForWorker.get(workername, self.maxCount))


class LockAccess(Configured):
    """A lock and how it is taken: ``lock.access("exclusive")`` or ``lock.access("counting")``."""

    def __init__(self, lock: BaseLock, mode: str) -> None:
        if not isinstance(lock, BaseLock):
            raise ValueError(f"LockAccess: expected a MasterLock or WorkerLock, got {lock!r}")
        if mode not in ACCESS_MODES:
            raise ValueError(f"{lock!r}.access: mode must be 'exclusive' or 'counting', got {mode!r}")
        self.lock = lock
        self.mode = mode

    def __repr__(self) -> str:
        return f"{self.lock!r}.access({self.mode!r})"


def check_locks(locks: Any, where: str) -> list[LockAccess]:
    """*locks* as a list of LockAccess; ValueError naming *where* otherwise (a bare lock counts as exclusive)."""
    if locks is None:
        return []
    if not isinstance(locks, list | tuple):
        raise ValueError(f"{where}: expected a list of lock accesses such as [MasterLock('x').access('exclusive')]")
    accesses = []
    for index, item in enumerate(locks):
        if isinstance(item, BaseLock):
            item = item.access("exclusive")  # Buildbot takes a bare lock exclusively
        if not isinstance(item, LockAccess):
            raise ValueError(f"{where}[{index}]: expected lock.access('exclusive'|'counting'), got {item!r}")
        accesses.append(item)
    return accesses


def describe(accesses: Sequence[LockAccess]) -> str:
    """``'deploy'`` or ``'a', 'b'``: the locks' names for a state string."""
    return ", ".join(repr(access.lock.name) for access in accesses)


class LockWaiters:
    """Wakes the builds of one master waiting for locks when one of its builds lets a lock go (or *clock* says so)."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._waiting: list[defer.Deferred] = []

    def released(self) -> None:
        """Something was let go: every waiter tries again."""
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if not waiter.called:
                waiter.callback(None)

    async def wait(self, timeout: float) -> None:
        """Until a release here, or *timeout* seconds (a release on another master)."""
        waiter: defer.Deferred = defer.Deferred()
        self._waiting.append(waiter)
        def wake() -> None:
            if not waiter.called:
                waiter.callback(None)

        timer = self.clock.callLater(timeout, wake)
        try:
            await waiter
        finally:
            if timer.active():
                timer.cancel()
            if waiter in self._waiting:
                self._waiting.remove(waiter)


def waiters_of(engine: Any) -> LockWaiters:
    """The engine's LockWaiters (made on first use)."""
    waiters = getattr(engine, "lock_waiters", None)
    if waiters is None:
        waiters = engine.lock_waiters = LockWaiters(engine.clock)
    return waiters


class HeldLocks:
    """Locks a build or a step holds: :meth:`acquire` waits for all of them, :meth:`release` lets them go."""

    def __init__(self, build: Any, accesses: Sequence[LockAccess]) -> None:
        self.build = build
        self.accesses = list(accesses)
        self.owner = uuid.uuid4().hex
        self.held = False

    async def acquire(self, waiting: Callable[[str], Any], cancelled: Callable[[], bool]) -> bool:
        """Wait until every lock is taken (True), or *cancelled()* says the build ended (False).

        ``await waiting(text)`` is called once when it has to wait, with a text naming the lock.
        """
        if not self.accesses:
            return True
        build = self.build
        engine = build.engine
        wanted = [a.lock.request(build.conn.name, a.mode == "exclusive") for a in self.accesses]
        said = None
        while True:
            if cancelled():
                return False
            busy = await build.data.updates.claim_locks(self.owner, engine.masterid, build.buildid, wanted)
            if busy is None:
                self.held = True
                return True
            busy_keys = set(busy.split(", "))
            names = [repr(a.lock.name) for a, r in zip(self.accesses, wanted, strict=True) if r.key in busy_keys]
            text = f"waiting for lock {', '.join(names) or describe(self.accesses)}"
            if text != said:
                said = text
                await waiting(text)
            await waiters_of(engine).wait(POLL_SECONDS)

    async def release(self) -> None:
        """Let go of the locks (if taken), and wake this master's waiting builds."""
        if not self.held:
            return
        self.held = False
        try:
            await self.build.data.updates.release_locks(self.owner)
        finally:
            waiters_of(self.build.engine).released()


async def start_build_locks(build: Any) -> bool:
    """Take the builder's locks for *build* (its state string names a lock it waits for); False if it ended."""
    held = build.held_locks = HeldLocks(build, getattr(build.builder, "locks", ()))
    if not held.accesses:
        return True

    async def waiting(text: str) -> None:
        await build.data.updates.set_build_state_string(build.buildid, text)

    if not await held.acquire(waiting, lambda: build.stopped is not None or build.lost):
        return False
    await build.data.updates.set_build_state_string(build.buildid, "building")
    return True


async def release_build_locks(build: Any) -> None:
    """Let go of the builder's locks *build* holds, if any."""
    held = getattr(build, "held_locks", None)
    if held is not None:
        await held.release()


async def take_step_locks(build: Any, step: Any) -> HeldLocks | None:
    """Start *step*, having taken its locks (its state string names one it waits for); None if the build ended."""
    data = build.data
    held = HeldLocks(build, getattr(step, "locks", ()))
    await data.updates.start_step(step.stepid, locks_acquired=not held.accesses)
    if not held.accesses:
        return held

    async def waiting(text: str) -> None:
        await data.updates.set_step_state_string(step.stepid, text)

    if not await held.acquire(waiting, lambda: build.stopped is not None or build.lost):
        return None
    await data.updates.set_step_locks_acquired(step.stepid)
    return held
