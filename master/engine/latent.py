"""Latent workers: workers the master starts when a build needs one and stops when idle.

The seam is :class:`ILatentWorker`, which an implementation (``DockerLatentWorker`` in
``master.engine.docker``; a Kubernetes or cloud one as a plugin of its own) provides.  It only
starts, inspects and removes *instances* (containers, pods, VMs) whose entry point runs
``ci-worker`` with the environment of a :class:`LaunchContext`; everything else is done here,
the same for every implementation, by :class:`LatentWorkers` (the engine's ``latent``):

- **substantiate**: a claimed build whose builder names a latent worker that is not up starts
  an instance (``start_instance``), then waits until its worker has connected over ``/worker``,
  polling ``check_instance`` so that an instance that ended is noticed at once, for at most
  ``missing_timeout`` seconds.  The build's first step, ``worker_preparation``, logs this; its
  state string says ``preparing worker`` meanwhile.
- **insubstantiate**: after ``build_wait_timeout`` idle seconds (0: right after each build),
  the worker is told to leave and the instance removed (``stop_instance``).
- **leftovers**: every instance carries labels naming this master and the worker; a master
  starting up removes the instances it left when it was killed (``remove_leftovers``).
- **failures**: an instance that cannot start (:class:`LatentWorkerFailed`: a missing image...)
  or ends before its worker connects ends the build ``exception`` with the reason in the log;
  the host unreachable (:class:`LatentHostUnreachable`) gives the request back to the queue,
  where it waits while the host is probed every ``PROBE_INTERVAL`` seconds (one log line a
  minute); ``max_latent_workers`` in master.cfg caps the instances up at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from master.engine.steps import BuildStep
from master.results import CANCELLED, EXCEPTION, RETRY, SUCCESS

if TYPE_CHECKING:
    from master.engine.engine import Engine
    from master.engine.interfaces import IWorkerConnection

log = Logger()

POLL_INTERVAL = 0.5  # how often a starting instance is checked for having ended
PROBE_INTERVAL = 5.0  # how often an unreachable host is tried again
UNREACHABLE_LOG_INTERVAL = 60.0
LEAVE_TIMEOUT = 10.0  # how long a worker told to leave may take before its instance is removed anyway
LEFTOVERS_TIMEOUT = 60.0
LABEL_PREFIX = "org.ci-master."


class LatentWorkerFailed(Exception):
    """The instance could not be started, or ended before its worker connected; the build ends EXCEPTION."""


class LatentHostUnreachable(Exception):
    """The host of the instances (a Docker daemon, a cluster's API) cannot be reached; the request waits."""


@dataclass
class LaunchContext:
    """What an instance is started with: the environment of its ``ci-worker`` and its labels."""

    master_url: str
    name: str
    password: str = field(repr=False)
    max_builds: int
    labels: dict[str, str]

    @property
    def environment(self) -> dict[str, str]:
        """The variables the image's entry point reads (see contrib/docker/entrypoint.sh)."""
        return {"CI_MASTER_URL": self.master_url, "CI_WORKER_NAME": self.name, "CI_WORKER_PASSWORD": self.password,
                "CI_WORKER_MAX_BUILDS": str(self.max_builds)}


class ILatentWorker(Interface):
    """A worker the master starts on demand (put in master.cfg's ``workers``).

    Every method returns a Deferred (or is a coroutine function) and must not block the
    reactor; each may fail with :class:`LatentHostUnreachable` when the host cannot be reached.
    """

    name = Attribute("the worker's name (unique among master.cfg's workers)")
    password = Attribute("the password its ci-worker logs in with (in plaintext: the instance needs it)")
    max_builds = Attribute("how many builds one instance runs at once")
    build_wait_timeout = Attribute("idle seconds before the instance is removed (0: after each build)")
    missing_timeout = Attribute("seconds the worker may take to connect once its instance started")

    def describe() -> str:
        """A short description for logs, e.g. ``docker image ci-worker:1 on unix:///var/run/docker.sock``."""

    def start_instance(context: LaunchContext) -> Any:
        """Create and start an instance carrying ``context.labels`` and ``context.environment``; its id.

        Fails with LatentWorkerFailed saying why when it cannot (the image does not exist...).
        """

    def check_instance(instance_id: str) -> Any:
        """None while the instance runs; once it has ended, a text saying how, with its last log lines."""

    def stop_instance(instance_id: str) -> Any:
        """Stop and remove the instance (nothing to do if it is gone already)."""

    def remove_leftovers(labels: dict[str, str]) -> Any:
        """Remove every instance carrying all of *labels* (a previous run of this master's); their ids."""

    def host_key() -> str:
        """Identifies the host the instances run on: workers with equal keys share leftovers and probes."""


@dataclass
class LatentSlot:
    """What the distributor assigns builds to for a latent worker, up or not (the build's ``slot``)."""

    name: str
    workerid: int
    max_builds: int

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


Slot: TypeAlias = "IWorkerConnection | LatentSlot"  # a string: zope interfaces do not take "|"
"""What builds are assigned to: a connected worker, or a latent worker's slot (up or not)."""


class _Runtime:
    """One latent worker's state on this master."""

    def __init__(self, spec: Any, slot: LatentSlot) -> None:
        self.spec = spec
        self.slot = slot
        self.state = "stopped"  # stopped -> starting -> running -> stopping -> stopped
        self.instance: str | None = None
        self.conn: IWorkerConnection | None = None
        self.waiters: list[tuple[defer.Deferred, Callable[[str], Any]]] = []
        self.wake: defer.Deferred | None = None  # fired to end a pause of _wait_connected early
        self.idle_timer: Any = None
        self.stopped: defer.Deferred | None = None


def instance_name(worker: str, suffix: str) -> str:
    """A container/pod name made of the worker's name (characters they refuse replaced) and *suffix*."""
    return "ci-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", worker)[:40] + "-" + suffix


class LatentWorkers:
    """The engine's latent workers: substantiates them for builds, insubstantiates them when idle.

    Its timers (idle timeouts, missing timeouts, probes) run on *clock* (the global reactor by default).
    """

    def __init__(self, engine: Engine, clock: IReactorTime | None = None) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        self.clock: IReactorTime = clock
        self.engine = engine
        self.workers: dict[str, _Runtime] = {}
        self.max_latent_workers: int | None = None
        self.master_url: str | None = None
        self.labels: dict[str, str] = {}
        self.unreachable: dict[str, str] = {}  # host key -> the error
        self._cleaned: set[str] = set()  # host keys whose leftovers are removed
        self._prober: task.LoopingCall | None = None
        self._last_said: dict[str, float] = {}
        self._stopping = False

    # -- configuration and life cycle -----------------------------------------------------------

    def manages(self, name: str) -> bool:
        """Whether *name* is a latent worker of this master."""
        return name in self.workers

    async def configure(self, config: Any) -> None:
        """Take the latent workers of *config* (new ones stopped; removed ones insubstantiated)."""
        self.max_latent_workers = getattr(config, "max_latent_workers", None)
        wanted = {w.name: w for w in getattr(config, "workers", []) if ILatentWorker.providedBy(w)}
        for name, runtime in list(self.workers.items()):
            if name not in wanted:
                del self.workers[name]
                if runtime.state != "stopped":
                    defer.ensureDeferred(self._insubstantiate(runtime))
        for name, spec in wanted.items():
            known = self.workers.get(name)
            if known is None:
                workerid = await self.engine.data.updates.find_worker_id(name)
                self.workers[name] = _Runtime(spec, LatentSlot(name, workerid, max(int(spec.max_builds), 1)))
            else:  # a changed spec applies from the next instance on
                known.spec = spec
                known.slot.max_builds = max(int(spec.max_builds), 1)
        if self.workers and self._prober is None:
            self._prober = task.LoopingCall(self._probe)
            self._prober.clock = self.clock
            self._prober.start(PROBE_INTERVAL, now=False)

    async def start(self, master_name: str, masterid: int) -> None:
        """Label instances with this master; remove those a previous run of it left (bounded in time)."""
        self._stopping = False
        self.labels = {LABEL_PREFIX + "master": master_name, LABEL_PREFIX + "masterid": str(masterid)}
        cleanups = [defer.ensureDeferred(self._remove_leftovers(spec)) for spec in self._hosts().values()]
        if cleanups:
            d = defer.DeferredList(cleanups)
            timer = self.clock.callLater(LEFTOVERS_TIMEOUT, d.cancel)
            await d
            if timer.active():
                timer.cancel()

    def _hosts(self) -> dict[str, Any]:
        """One worker spec per host key."""
        return {runtime.spec.host_key(): runtime.spec for runtime in self.workers.values()}

    async def _remove_leftovers(self, spec: Any) -> None:
        if not self.labels:  # not started yet: no labels would match every instance of the host
            return
        key = spec.host_key()
        try:
            removed = await defer.maybeDeferred(spec.remove_leftovers, dict(self.labels))
        except LatentHostUnreachable as e:
            self._unreachable(key, str(e))
            return
        except Exception:
            log.failure("removing the instances a previous run left on {host} failed", host=key)
            return
        self._cleaned.add(key)
        self._reachable(key)
        if removed:
            log.info("removed {n} instance(s) a previous run of this master left on {host}: {ids}",
                     n=len(removed), host=key, ids=" ".join(i[:12] for i in removed))

    def set_master_url(self, url: str) -> None:
        """The ``ws://host:port/worker`` the instances' workers connect to (known once the master listens)."""
        self.master_url = url

    async def stop(self) -> None:
        """Remove every instance (the master stops; the engine has stopped the builds)."""
        self._stopping = True
        if self._prober is not None and self._prober.running:
            self._prober.stop()
        self._prober = None
        await defer.DeferredList([defer.ensureDeferred(self._insubstantiate(r)) for r in self.workers.values()
                                  if r.state != "stopped"])

    # -- what the distributor and the engine call ----------------------------------------------

    def slots(self) -> list[LatentSlot]:
        """The latent workers that may take a build now (the distributor then checks load and pause)."""
        if self._stopping or self.master_url is None:
            return []
        up = sum(1 for r in self.workers.values() if r.state != "stopped")
        free = []
        for runtime in self.workers.values():
            if runtime.state in ("starting", "running"):
                free.append(runtime.slot)
            elif runtime.state == "stopped" and runtime.spec.host_key() not in self.unreachable:
                if self.max_latent_workers is None or up < self.max_latent_workers:
                    free.append(runtime.slot)
        return free

    def worker_attached(self, conn: IWorkerConnection) -> None:
        """A worker connected: hand a latent one to the builds waiting for it; send an unexpected one away."""
        runtime = self.workers.get(conn.name)
        if runtime is None:
            return
        if runtime.state != "starting" or runtime.conn is not None:
            log.warn("latent worker {name} connected while not being started ({state}): telling it to leave",
                     name=conn.name, state=runtime.state)
            conn.shutdown(False)
            return
        runtime.conn = conn
        runtime.state = "running"
        _fire(runtime.wake)
        waiters, runtime.waiters = runtime.waiters, []
        for waiter, say in waiters:
            say(f"worker {conn.name} connected")
            if not waiter.called:
                waiter.callback(conn)
        if self.engine.load(runtime.slot) == 0:
            self._start_idle_timer(runtime)

    def worker_detached(self, conn: IWorkerConnection) -> None:
        """A worker disconnected: a latent one's instance is removed (its builds end RETRY in the engine)."""
        runtime = self.workers.get(conn.name)
        if runtime is not None and runtime.conn is conn:
            runtime.conn = None
            if runtime.state == "running":
                log.info("latent worker {name} disconnected: removing its instance", name=conn.name)
                defer.ensureDeferred(self._insubstantiate(runtime))

    def build_ended(self, slot: Any) -> None:
        """A build of *slot* ended: an idle worker is insubstantiated after its build_wait_timeout."""
        name = getattr(slot, "name", None)
        runtime = self.workers.get(name) if isinstance(name, str) else None
        if runtime is None or runtime.slot is not slot or self.engine.load(slot) != 0:
            return
        if runtime.state == "running":
            self._start_idle_timer(runtime)
        elif runtime.state == "starting" and not runtime.waiters:
            # the builds that wanted it were stopped while it started: no use waiting for it
            defer.ensureDeferred(self._insubstantiate(runtime))

    # -- substantiation -----------------------------------------------------------------------

    async def substantiate(self, slot: LatentSlot, say: Callable[[str], Any]) -> IWorkerConnection:
        """The connection of *slot*'s worker, started if need be; *say* gets what happens, line by line.

        Fails with LatentWorkerFailed (the build ends EXCEPTION) or LatentHostUnreachable (RETRY).
        Cancelling the Deferred stops waiting; the instance is removed when idle.
        """
        runtime = self.workers.get(slot.name)
        if runtime is None or runtime.slot is not slot:
            raise LatentWorkerFailed(f"latent worker {slot.name} was removed from the configuration")
        if runtime.state == "stopping" and runtime.stopped is not None:
            await runtime.stopped
        if runtime.idle_timer is not None and runtime.idle_timer.active():
            runtime.idle_timer.cancel()
        runtime.idle_timer = None
        if runtime.state == "running" and runtime.conn is not None:
            say(f"worker {slot.name} is up already (instance {_short(runtime.instance)})")
            return runtime.conn
        waiter: defer.Deferred = defer.Deferred(lambda d: self._forget(runtime, d))
        runtime.waiters.append((waiter, say))
        if runtime.state == "stopped":
            runtime.state = "starting"
            defer.ensureDeferred(self._start(runtime))
        else:
            say(f"waiting for worker {slot.name}, being started already")
        return await waiter

    def _forget(self, runtime: _Runtime, waiter: defer.Deferred) -> None:
        runtime.waiters = [(w, s) for w, s in runtime.waiters if w is not waiter]

    def _say(self, runtime: _Runtime, text: str) -> None:
        for _, say in runtime.waiters:
            say(text)

    async def _start(self, runtime: _Runtime) -> None:
        spec, name = runtime.spec, runtime.slot.name
        try:
            key = spec.host_key()
            if key not in self._cleaned:
                await self._remove_leftovers(spec)
                if key in self.unreachable:
                    raise LatentHostUnreachable(self.unreachable[key])
            if self.master_url is None:
                raise RuntimeError("latent workers start once the master's URL is known (configure sets it)")
            context = LaunchContext(self.master_url, name, spec.password, runtime.slot.max_builds,
                                    {**self.labels, LABEL_PREFIX + "worker": name})
            self._say(runtime, f"starting an instance: {spec.describe()}")
            runtime.instance = await defer.maybeDeferred(spec.start_instance, context)
            timeout = float(spec.missing_timeout)
            self._say(runtime, f"instance {_short(runtime.instance)} started; waiting up to {timeout:g}s"
                               f" for worker {name} to connect to {self.master_url}")
            log.info("latent worker {name}: instance {id} started", name=name, id=_short(runtime.instance))
            await self._wait_connected(runtime, timeout)
        except LatentHostUnreachable as e:
            self._unreachable(spec.host_key(), str(e))
            await self._start_failed(runtime, e)
        except LatentWorkerFailed as e:
            await self._start_failed(runtime, e)
        except Exception as e:
            log.failure("latent worker {name}: starting failed", name=name)
            await self._start_failed(runtime, LatentWorkerFailed(f"{type(e).__name__}: {e}"))

    async def _wait_connected(self, runtime: _Runtime, timeout: float) -> None:
        deadline = self.clock.seconds() + timeout
        while runtime.conn is None:
            if self._stopping or runtime.state != "starting":
                raise LatentWorkerFailed("the master is stopping")
            if self.clock.seconds() >= deadline:
                raise LatentWorkerFailed(
                    f"worker {runtime.slot.name} did not connect within {timeout:g}s (missing_timeout):"
                    f" instance {_short(runtime.instance)} stopped")
            ended = await defer.maybeDeferred(runtime.spec.check_instance, runtime.instance)
            if runtime.conn is not None:
                return
            if ended:
                raise LatentWorkerFailed(ended)
            runtime.wake = defer.Deferred()
            left = max(deadline - self.clock.seconds(), 0)
            timer = self.clock.callLater(min(POLL_INTERVAL, left), _fire, runtime.wake)
            await runtime.wake
            if timer.active():
                timer.cancel()

    async def _start_failed(self, runtime: _Runtime, error: Exception) -> None:
        log.warn("latent worker {name} could not be started: {error}", name=runtime.slot.name, error=error)
        waiters, runtime.waiters = runtime.waiters, []
        await self._remove_instance(runtime)
        runtime.state = "stopped"
        for waiter, _ in waiters:
            if not waiter.called:
                waiter.errback(error)
        self.engine.distributor.activity()

    async def _remove_instance(self, runtime: _Runtime) -> None:
        instance, runtime.instance = runtime.instance, None
        if instance is None:
            return
        try:
            await defer.maybeDeferred(runtime.spec.stop_instance, instance)
        except Exception as e:
            # the labels let the next start-up of this master remove it
            log.warn("latent worker {name}: removing instance {id} failed: {error}",
                     name=runtime.slot.name, id=_short(instance), error=e)

    # -- insubstantiation ---------------------------------------------------------------------

    def _start_idle_timer(self, runtime: _Runtime) -> None:
        if runtime.idle_timer is not None and runtime.idle_timer.active():
            runtime.idle_timer.cancel()
        wait = float(runtime.spec.build_wait_timeout)
        if wait <= 0:  # now, before a round of the distributor gives it another build
            self._idle(runtime)
        else:
            runtime.idle_timer = self.clock.callLater(wait, self._idle, runtime)

    def _idle(self, runtime: _Runtime) -> None:
        runtime.idle_timer = None
        if runtime.state == "running" and self.engine.load(runtime.slot) == 0:
            defer.ensureDeferred(self._insubstantiate(runtime))

    async def _insubstantiate(self, runtime: _Runtime) -> None:
        if runtime.state in ("stopped", "stopping"):
            if runtime.stopped is not None:
                await runtime.stopped
            return
        if runtime.idle_timer is not None and runtime.idle_timer.active():
            runtime.idle_timer.cancel()
        runtime.idle_timer = None
        previous, runtime.state = runtime.state, "stopping"
        stopped = runtime.stopped = defer.Deferred()
        try:
            conn = runtime.conn
            if previous == "starting":
                _fire(runtime.wake)  # _wait_connected sees the state and fails its waiters
            if conn is not None and getattr(conn, "connected", True):
                left: defer.Deferred = defer.Deferred()
                conn.notify_on_disconnect(lambda: _fire(left))
                conn.shutdown(False)
                timer = self.clock.callLater(LEAVE_TIMEOUT, lambda: _fire(left))
                await left
                if timer.active():
                    timer.cancel()
            runtime.conn = None
            await self._remove_instance(runtime)
            log.info("latent worker {name} stopped", name=runtime.slot.name)
            # a graceful stop asked of the worker (its 'stop' action) ends with its instance:
            # the next build starts a new one
            try:
                await self.engine.set_graceful(runtime.slot.workerid, False)
            except Exception:
                log.failure("latent worker {name}: could not record it stopped", name=runtime.slot.name)
        finally:
            runtime.state = "stopped"
            runtime.stopped = None
            stopped.callback(None)
            if not self._stopping:
                self.engine.distributor.activity()

    # -- unreachable hosts --------------------------------------------------------------------

    def _unreachable(self, key: str, error: str) -> None:
        now = self.clock.seconds()
        if key not in self.unreachable or now - self._last_said.get(key, 0) >= UNREACHABLE_LOG_INTERVAL:
            log.warn("latent workers' host {host} is unreachable ({error}); their requests wait", host=key,
                     error=error)
            self._last_said[key] = now
        self.unreachable[key] = error

    def _reachable(self, key: str) -> None:
        if self.unreachable.pop(key, None) is not None:
            self._last_said.pop(key, None)
            log.info("latent workers' host {host} is reachable again", host=key)
            self.engine.distributor.activity()

    def _probe(self) -> None:
        for key, spec in self._hosts().items():
            if key in self.unreachable or key not in self._cleaned:
                defer.ensureDeferred(self._remove_leftovers(spec))

    def state_of_id(self, workerid: int) -> str | None:
        """``stopped``, ``starting``, ``running``, ``stopping`` or ``unreachable``; None if not latent here."""
        runtime = next((r for r in self.workers.values() if r.slot.workerid == workerid), None)
        if runtime is None:
            return None
        if runtime.state == "stopped" and runtime.spec.host_key() in self.unreachable:
            return "unreachable"
        return runtime.state


def _fire(d: defer.Deferred | None) -> None:
    if d is not None and not d.called:
        d.callback(None)


def _short(instance: str | None) -> str:
    return (instance or "?")[:12]


class WorkerPreparation(BuildStep):
    """The first step of a build on a latent worker: start it (or take it, up already) and wait for it."""

    default_name = "worker_preparation"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._waiting: defer.Deferred | None = None

    def describe(self, done: bool) -> str:
        """``preparing worker`` / ``worker ready``."""
        return "worker ready" if done else "preparing worker"

    def interrupt(self, reason: str) -> None:
        """Stop waiting for the worker (a build stop, the master stopping)."""
        super().interrupt(reason)
        if self._waiting is not None:
            self._waiting.cancel()

    async def run(self) -> int:
        """Substantiate the build's latent worker; make its connection the build's."""
        build = self.build
        stdio = await self.add_log("stdio")
        latent = build.engine.latent
        slot = build.slot
        if not isinstance(slot, LatentSlot):
            raise RuntimeError(f"{self.name}: the build's worker is not a latent one")
        self._waiting = defer.ensureDeferred(latent.substantiate(slot, stdio.add_header))
        try:
            build.conn = await self._waiting
        except defer.CancelledError:
            stdio.add_header(f"stopped waiting for the worker: {self.interrupted}")
            return CANCELLED
        except LatentHostUnreachable as e:
            stdio.add("e", f"{e}\nthe request goes back to the queue until the host is reachable again\n")
            return RETRY
        except LatentWorkerFailed as e:
            stdio.add("e", f"{e}\n")
            return EXCEPTION
        finally:
            self._waiting = None
        return SUCCESS
