"""The service tree of a running master: what starts in which order, and stops in reverse.

``MasterService`` is an :class:`master.lifecycle.OrderedServices`: its children start one after
another, each once the previous one is ready, and stop one at a time in reverse order
(``master/lifecycle.py`` explains how).  The children, in start order:

1. ``storage`` (:class:`StoragePart`): the schema check first (a database on an older schema is
   refused with the command to run), missing plugin tables, then the storage opened; closed last.
2. ``data`` (:class:`DataPart`): the ``DataAPI`` with the core resource types and the plugins,
   bound to the master's directory and auth policy; the single-master check on SQLite; this
   master recorded (``master_active``), other masters' events listened to, the configured
   builders and workers recorded.  On stop: stop listening, record the master stopped.
3. ``reporters`` (:class:`ReportersPart`): before the engine, so that they see the events of the
   builds a crash left, which the engine ends at its start; after it on stop, so that the
   reports of the builds it ends are recorded.
4. ``workerlink`` (:class:`WorkerLinkPart`) and 5. ``live`` (:class:`LivePart`, ``/ws``): made
   before the engine and stopped after it (it stops builds through the workers' connections and
   its last events reach live clients); no one reaches them before the port listens.
6. ``engine`` (:class:`EnginePart`): recovers what a crash left, then builds.
7. ``web`` (:class:`WebPart`): REST, JSON-RPC, change hooks, login, the UI, ``/metrics``, the site.
8. ``plugins`` (:class:`PluginsPart`): per plugin a :class:`PluginPart` mounting its routes and
   running its services as children.
9. ``port`` (:class:`PortPart`): the listening port; from then on workers and clients come in.
10. ``local_workers`` (``LocalWorkers``), 11. ``retention``, 12. ``heartbeat``.

A start that fails stops what had started, in reverse, and fails ``started`` (``StartupError``
says why and what to do).  SIGHUP reloads master.cfg and ``reconfig`` applies the difference
without dropping connections, swapping children where needed (reporters, plugins, the port); a
config that fails to load is refused and the running one kept.  SIGUSR1 is ``clean_stop``.

Timers run on the master's *clock* (the global reactor unless a test gives a
``twisted.internet.task.Clock``): the engine's, the heartbeat's, retention's and the clean stop's.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, TypeVar, cast

from twisted.internet import defer, endpoints, reactor, threads
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from master import daemon
from master.config import ConfigError, MasterConfig, WorkerConfig, load_config
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.db.backends import make_storage
from master.db.interfaces import StorageError
from master.engine.engine import Engine
from master.engine.localworkers import LocalWorker, LocalWorkers
from master.engine.workerlink import WorkerLink
from master.heartbeat import Heartbeat
from master.lifecycle import AsyncService, Made, OrderedServices
from master.memory import return_big_blocks, trim_heap
from master.reporters.service import Reporters
from master.retention import RetentionService
from master.www.auth import Authenticator
from master.www.changehooks import ChangeHooks
from master.www.login import LoginPages
from master.www.metrics import attach as attach_metrics
from master.www.rest import RestApi
from master.www.site import MountError, Root, build_root, build_site, mount, unmount
from master.www.ui import WebUi
from master.www.ws import LiveUpdates

log = Logger()
CLEAN_STOP_POLL = 2.0


class NotRunning(AttributeError):
    """A part of the master was asked for while it is not running (before start, after stop).

    An AttributeError: ``getattr(master, "live", None)`` is None then, as for a master without it.
    """


T = TypeVar("T")


def _running(made: T | None, what: str) -> T:
    """*made* (what a part made), or NotRunning naming *what* when the part has not made it."""
    if made is None:
        raise NotRunning(f"the master's {what} is not running")
    return made


class StartupError(Exception):
    """The master could not start; the message says why and what to do."""


# -- the children ---------------------------------------------------------------------------------


class _Part(AsyncService):
    """A child of a MasterService; it reads what earlier children made through ``master``."""

    def __init__(self, master: MasterService, name: str) -> None:
        super().__init__(name)
        self.master = master


class StoragePart(_Part):
    """The schema check, missing plugin tables, and the storage, open while the master runs."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "storage")
        self.storage: Any = None

    async def start(self) -> None:
        """Check the schema (first: an old one is refused), create plugin tables, open the storage."""
        config = self.master.config
        try:
            await threads.deferToThread(migrate.check, config.db_url)
            await self.master._create_plugin_tables(config.plugins)
            self.storage = make_storage(config.db_url, retry_seconds=config.db_retry_seconds)
            await self.storage.start()
        except StorageError as e:
            raise StartupError(str(e)) from None

    async def stop(self) -> None:
        """Close the storage."""
        storage, self.storage = self.storage, None
        if storage is not None:
            await storage.stop()


class DataPart(_Part):
    """The DataAPI, this master's row in ``masters`` and its builders; other masters' events."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "data")
        self.data: DataAPI | None = None
        self.masterid: int | None = None

    async def start(self) -> None:
        """Register the resource types and plugins, check for a second master, record this one."""
        master, config = self.master, self.master.config
        master.auth.reconfigure(config.auth)
        # the master directory (artifacts live under it) and the auth policy plugins check callers with
        data = self.data = DataAPI(master.storage, config.limits, basedir=master.basedir, auth=master.auth)
        for rtype in core_resource_types():
            data.add_resource_type(rtype)
        for plugin in config.plugins:
            data.add_plugin(plugin)
        await master._check_single_master(data, config)
        self.masterid = await data.updates.master_active(master.name)
        data.bind_master(self.masterid)
        data.events.listen()  # other masters' events (PostgreSQL); nothing to do on SQLite
        await master._apply_builders(config)

    async def stop(self) -> None:
        """Stop listening to other masters; record this master stopped (the storage is still open)."""
        if self.data is None:
            return
        self.data.events.stop_listening()
        if self.masterid is not None:
            try:
                await self.data.updates.master_stopped(self.masterid)
            except StorageError:
                log.failure("could not mark the master stopped")


class ReportersPart(_Part):
    """The reporters (``Reporters``); reconfig replaces them."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "reporters")
        self.reporters: Reporters | None = None

    async def start(self) -> None:
        """Start the configured reporters."""
        config = self.master.config
        self.reporters = Reporters(self.master.data, self.master.masterid, config.reporters, config.web.url)
        await self.reporters.start()

    async def stop(self) -> None:
        """Stop them."""
        reporters, self.reporters = self.reporters, None
        if reporters is not None:
            await reporters.stop()

    async def replace(self, config: MasterConfig) -> None:
        """Stop the running reporters and start those of *config*."""
        await self.stop()
        self.reporters = Reporters(self.master.data, self.master.masterid, config.reporters, config.web.url)
        await self.reporters.start()


class WorkerLinkPart(_Part):
    """``/worker``: the workers' WebSocket, whose connections the engine gets."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "workerlink")
        self.workerlink: WorkerLink | None = None

    async def start(self) -> None:
        """Make the link with the configured workers' passwords."""
        master = self.master
        self.workerlink = WorkerLink(master.data, master.masterid, master._worker_passwords(master.config),
                                     master.engine)

    async def stop(self) -> None:
        """Close the workers' connections."""
        workerlink, self.workerlink = self.workerlink, None
        if workerlink is not None:
            await workerlink.stop()


class LivePart(_Part):
    """``/ws``: live updates for web clients."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "live")
        self.live: LiveUpdates | None = None

    async def start(self) -> None:
        """Make the ``/ws`` factory."""
        master, www = self.master, self.master.config.web
        self.live = LiveUpdates(master.data, master.auth, max_subscriptions=www.ws_max_subscriptions,
                                max_connections_per_ip=www.ws_max_connections_per_ip)

    async def stop(self) -> None:
        """Close the live connections."""
        live, self.live = self.live, None
        if live is not None:
            live.stop()


class EnginePart(_Part):
    """The build engine (``master.engine``), which the master makes with its clock."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "engine")

    async def start(self) -> None:
        """Recover what a crash left, apply the config, start building."""
        await self.master.engine.start(self.master.data, self.master.masterid, self.master.config)

    async def stop(self) -> None:
        """Stop the builds (their requests go back to the queue) and the schedulers."""
        if self.master.engine.data is not None:
            await self.master.engine.stop()


class WebPart(_Part):
    """The site: REST and JSON-RPC, login, ``/worker``, ``/ws``, change hooks, the UI and ``/metrics``."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "web")
        self.rest: RestApi | None = None
        self.change_hooks: ChangeHooks | None = None
        self.root: Root | None = None
        self.site: Any = None
        self.metrics: Any = None

    async def start(self) -> None:
        """Build the resource tree and the site (not listening yet)."""
        master, config = self.master, self.master.config
        self.rest = RestApi(master.data, config.web.url, master.auth)
        self.change_hooks = ChangeHooks(master.data, config.change_hooks)
        self.root = build_root({
            "api": self.rest.resource(),
            "auth": LoginPages(master.auth).resource(),
            "worker": master.workerlink.resource(),
            "ws": master.live.resource(),
            "change_hook": self.change_hooks.resource(),
        })
        # Buildbot's web UI at / when buildbot-www is installed (pip install --no-deps buildbot-www)
        self.root.ui = WebUi.if_installed(config.title, config.web.url, master.auth)
        self.site = build_site(self.root, config.web.allowed_origins, config.web.max_body_bytes)
        try:
            self.site.set_access_log(config.web.access_log, master.basedir)
        except ValueError as e:
            raise StartupError(str(e)) from None
        self.metrics = attach_metrics(master)  # GET /metrics; mounted before plugins, which may not take it

    async def stop(self) -> None:
        """Close the access log."""
        if self.site is not None:
            self.site.set_access_log(None, self.master.basedir)


class PluginPart(OrderedServices):
    """One plugin at work: its routes mounted, its services running as children."""

    def __init__(self, master: MasterService, plugin: Any) -> None:
        super().__init__(f"plugin {plugin.name}")
        self.master = master
        self.plugin = plugin

    async def start(self) -> None:
        """Mount the plugin's web resources, then start its services in order."""
        for prefix, resource in self.plugin.web_resources(self.master.data).items():
            try:
                mount(self.master.root, prefix, resource)
            except MountError as e:
                raise StartupError(f"plugin {self.plugin.name!r} cannot mount {e}") from None
            resource.mounted_by = self.plugin
        for child in self.plugin.services(self.master.data):
            self.addService(child)
        await self.start_children()

    async def stop(self) -> None:
        """Stop the plugin's services in reverse, then unmount its resources."""
        await self.stop_children()
        for child in list(self):
            self._forget(child)
        plugin = self.plugin
        root = self.master.web_part.root
        if root is not None:
            unmount(root, lambda child: getattr(child, "mounted_by", None) is plugin)


class PluginsPart(OrderedServices):
    """The plugins of master.cfg, one :class:`PluginPart` each; reconfig adds and removes them."""

    def __init__(self, master: MasterService) -> None:
        super().__init__("plugins")
        self.master = master

    async def start(self) -> None:
        """Start each configured plugin's part, in the config's order."""
        for plugin in self.master.config.plugins:
            self.addService(PluginPart(self.master, plugin))
        await self.start_children()

    async def stop(self) -> None:
        """Stop every plugin's part, last first, and forget them."""
        await self.stop_children()
        for child in list(self):
            self._forget(child)

    async def add(self, plugin: Any) -> None:
        """Start *plugin* in the running master (reconfig)."""
        await self.start_child(PluginPart(self.master, plugin))

    async def remove(self, plugin: Any) -> None:
        """Stop *plugin* and unmount it (reconfig)."""
        for child in list(self):
            if isinstance(child, PluginPart) and child.plugin is plugin:
                await self.stop_child(child)


class PortPart(_Part):
    """The listening port of the site (``www.interface``:``www.port``); reconfig moves it."""

    def __init__(self, master: MasterService) -> None:
        super().__init__(master, "port")
        self.port: Any = None

    async def start(self) -> None:
        """Listen; tell the latent and local workers where to connect; wake requests waiting for them."""
        self.port = await self._listen(self.master.config)
        self._tell_workers()
        self.master.engine.distributor.activity()  # requests for latent workers waited for the URL

    async def stop(self) -> None:
        """Stop listening (open connections are left to the parts that own them)."""
        port, self.port = self.port, None
        if port is not None:
            await port.stopListening()

    async def relisten(self, config: MasterConfig) -> None:
        """Listen where *config* says; open connections on the old port are left to finish."""
        port = await self._listen(config)  # the new one first: a port in use keeps the old one
        old, self.port = self.port, port
        if old is not None:
            await old.stopListening()
        self._tell_workers()

    def worker_url(self) -> str:
        """The ``/worker`` URL of the port listening, as workers on this machine reach it."""
        host = self.port.getHost()
        local_host = "127.0.0.1" if host.host in ("0.0.0.0", "::") else host.host  # noqa: S104
        return f"ws://{local_host}:{host.port}/worker"

    def _tell_workers(self) -> None:
        url = self.worker_url()
        self.master.engine.latent.set_master_url(url)
        self.master.local_workers.master_url = url

    async def _listen(self, config: MasterConfig) -> Any:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, config.web.port, interface=config.web.interface)
        try:
            return await endpoint.listen(self.master.site)
        except CannotListenError as e:
            raise StartupError(
                f"cannot listen on {config.web.interface}:{config.web.port}: {e.socketError}"
                " (is another master running? change www.port in master.cfg)"
            ) from None


# -- the master -----------------------------------------------------------------------------------


class MasterService(OrderedServices):
    """One master: the tree of its parts (see the module's documentation), started in order.

    *clock* runs its timers (the engine's, the heartbeat's, retention's): the global reactor
    unless a test hands a ``twisted.internet.task.Clock``.
    """

    name: str  # set at once: this master's row in ``masters`` is keyed by it

    def __init__(
        self, basedir: str | Path, config: MasterConfig, daemon: bool = False, clock: IReactorTime | None = None
    ) -> None:
        super().__init__()
        self.clock: IReactorTime = clock if clock is not None else reactor
        self.basedir = Path(basedir).resolve()
        self.config = config
        self.daemon = daemon
        self.name = f"{socket.getfqdn()}:{self.basedir}"
        self.engine = Engine(clock=self.clock)
        self.auth = Authenticator(None, self.basedir)
        self.started: defer.Deferred = defer.Deferred()
        self._reconfiguring = False
        self.accepting_builds = True
        # the tree, in start order; MultiService keeps it, and stops it in reverse
        self.storage_part = StoragePart(self)
        self.data_part = DataPart(self)
        self.reporters_part = ReportersPart(self)
        self.workerlink_part = WorkerLinkPart(self)
        self.live_part = LivePart(self)
        self.engine_part = EnginePart(self)
        self.web_part = WebPart(self)
        self.plugins_part = PluginsPart(self)
        self.port_part = PortPart(self)
        for part in (self.storage_part, self.data_part, self.reporters_part, self.workerlink_part, self.live_part,
                     self.engine_part, self.web_part, self.plugins_part, self.port_part):
            self.addService(part)
        self.local_workers = LocalWorkers(self.basedir, self._local_workers(config), "")  # URL: the port's
        self.local_workers.setName("local_workers")
        self.addService(self.local_workers)
        self.retention_part = Made("retention", lambda: RetentionService(self.data, self.config, clock=self.clock))
        self.addService(self.retention_part)
        self.heartbeat_part = Made("heartbeat", lambda: Heartbeat(self.data, self.engine, self.masterid, self.config,
                                                                  clock=self.clock))
        self.addService(self.heartbeat_part)

    # what the parts made: NotRunning before they start (the parts' own attributes are None then)

    @property
    def storage(self) -> Any:
        """The open storage (``IStorage``), or None."""
        return self.storage_part.storage

    @property
    def data(self) -> DataAPI:
        """The data API; NotRunning before its part has started or after it stopped."""
        return _running(self.data_part.data, "data")

    @property
    def masterid(self) -> int:
        """The id of this master in ``masters``; NotRunning before its part has started or after it stopped."""
        return _running(self.data_part.masterid, "masterid")

    @property
    def reporters(self) -> Reporters:
        """The running reporters; NotRunning before its part has started or after it stopped."""
        return _running(self.reporters_part.reporters, "reporters")

    @property
    def workerlink(self) -> WorkerLink:
        """The workers' link (``/worker``); NotRunning before its part has started or after it stopped."""
        return _running(self.workerlink_part.workerlink, "workerlink")

    @property
    def live(self) -> LiveUpdates:
        """Live updates (``/ws``); NotRunning before its part has started or after it stopped."""
        return _running(self.live_part.live, "live")

    @property
    def rest(self) -> RestApi:
        """The REST API; NotRunning before its part has started or after it stopped."""
        return _running(self.web_part.rest, "rest")

    @property
    def change_hooks(self) -> ChangeHooks:
        """The change hooks; NotRunning before its part has started or after it stopped."""
        return _running(self.web_part.change_hooks, "change_hooks")

    @property
    def root(self) -> Root:
        """The root of the site's resources; NotRunning before its part has started or after it stopped."""
        return _running(self.web_part.root, "root")

    @property
    def site(self) -> Any:
        """The site, or None."""
        return self.web_part.site

    @property
    def metrics(self) -> Any:
        """The master's metrics (``/metrics``), or None."""
        return self.web_part.metrics

    @property
    def port(self) -> Any:
        """The listening port, or None."""
        return self.port_part.port

    @property
    def retention(self) -> RetentionService:
        """The daily clean-up; NotRunning before its part has started or after it stopped."""
        return _running(self.retention_part.made, "retention")

    @property
    def heartbeat(self) -> Heartbeat:
        """The heartbeat; NotRunning before its part has started or after it stopped."""
        return _running(self.heartbeat_part.made, "heartbeat")

    @property
    def database_available(self) -> bool:
        """Whether the database answers now (False during a PostgreSQL outage; for /metrics and health)."""
        return bool(getattr(self.storage, "database_available", False))

    # -- start and stop ---------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start asynchronously; ``self.started`` fires with the listening URL or fails."""
        super().startService()
        d = self.ready
        if self.daemon:
            d.addCallbacks(self._daemon_started, self._daemon_failed)
        d.chainDeferred(self.started)
        if hasattr(signal, "SIGHUP"):
            threads_reactor = cast(IReactorFromThreads, reactor)  # the real one; Twisted types the global loosely
            signal.signal(signal.SIGHUP, lambda *_: threads_reactor.callFromThread(self.reconfig_from_file))
            signal.signal(signal.SIGUSR1, lambda *_: threads_reactor.callFromThread(self.clean_stop))

    def _daemon_started(self, url: str) -> str:
        log.info(f"{daemon.STARTED} {{url}} (pid {{pid}})", url=url, pid=os.getpid())
        return url

    def _daemon_failed(self, failure: Any) -> None:
        if failure.check(StartupError):
            log.error(f"{daemon.FAILED} {{reason}}", reason=failure.getErrorMessage())
        else:
            log.failure(f"{daemon.FAILED} unexpected error", failure)
        reactor.stop()

    async def start(self) -> str:  # type: ignore[override]
        """Start the parts in order (what started is stopped again if one fails); return the URL served."""
        return_big_blocks()  # scrypt's 16 MB per worker login would otherwise stay resident
        await self.start_children()
        host = self.port.getHost()
        url = f"http://{host.host}:{host.port}/"
        # what start-up made (modules, metadata, config) lives as long as the process: keep it
        # out of the collector's way, which shortens every later full collection
        gc.freeze()
        trim_heap()  # and give back the C heap start-up freed
        log.info("ci-master {name} (pid {pid}) serving {url}", name=self.name, pid=os.getpid(), url=url)
        return url

    async def _check_single_master(self, data: DataAPI, config: MasterConfig) -> None:
        """On SQLite, refuse to start beside another running master: it takes PostgreSQL to share a database."""
        if data.storage.dialect_name != "sqlite":
            return
        cutoff = int(time.time() - config.master_expiry_seconds)
        query = {"active": ["true"], "last_active__ge": [str(cutoff)], "field": ["name"]}
        others = [m["name"] for m in (await data.get("masters", query=query)).items if m["name"] != self.name]
        if others:
            raise StartupError(
                f"master {others[0]} is running on this SQLite database; SQLite serves one master only"
                " (use PostgreSQL for several masters sharing a database, or stop the other one;"
                f" a master that crashed is forgotten {config.master_expiry_seconds:g}s after its last heartbeat)"
            )

    def _worker_passwords(self, config: MasterConfig) -> dict[str, WorkerConfig]:
        """Each allowed worker with its password; a local worker's is read from (or made in) its directory."""
        return {
            worker.name: WorkerConfig(worker.name, worker.password_for(self.basedir))
            if isinstance(worker, LocalWorker) else worker  # WorkerConfig, or a latent worker with its password
            for worker in config.workers
        }

    @staticmethod
    def _local_workers(config: MasterConfig) -> list[LocalWorker]:
        return [worker for worker in config.workers if isinstance(worker, LocalWorker)]

    def _worker_url(self) -> str:
        """The ``/worker`` URL of the port listening, as workers on this machine reach it."""
        return self.port_part.worker_url()

    async def _create_plugin_tables(self, plugins: list[Any]) -> None:
        schemas = migrate.plugin_schemas(plugins)
        if schemas:
            await threads.deferToThread(migrate.prepare_plugin_tables, self.config.db_url, schemas)

    async def _apply_builders(self, config: MasterConfig) -> None:
        """Record the configured builders and workers, and which of them this master serves."""
        data = self.data
        builderids = {}
        for builder in config.builders:
            projectid = await data.updates.find_project_id(builder.project) if builder.project else None
            builderids[builder.name] = await data.updates.update_builder(
                builder.name, description=builder.description, tags=builder.tags, projectid=projectid
            )
        await data.updates.set_master_builders(self.masterid, list(builderids.values()))
        configured: dict[str, list[int]] = {worker.name: [] for worker in config.workers}
        for builder in config.builders:
            for name in builder.workernames:
                configured[name].append(builderids[builder.name])
        for name, ids in configured.items():
            await data.updates.worker_configured(await data.updates.find_worker_id(name), self.masterid, ids)
        # workers dropped from the config are no longer configured here
        query = {"field": ["workerid", "name"], "limit": [str(data.limits.maximum)]}
        for worker in (await data.get(("masters", str(self.masterid), "workers"), query=query)).items:
            if worker["name"] not in configured:
                await data.updates.worker_configured(worker["workerid"], self.masterid, [])

    def clean_stop(self) -> defer.Deferred:
        """Start no new build, wait for this master's running builds to end, then stop (SIGUSR1)."""
        return defer.ensureDeferred(self._clean_stop())

    async def _clean_stop(self) -> None:
        if not self.accepting_builds:
            return
        self.accepting_builds = False
        self.engine.stop_accepting()
        said = None
        while self.data_part.data is not None:
            query = {"masterid": [str(self.masterid)], "complete": ["false"], "field": ["buildid"], "limit": ["1"]}
            running = (await self.data.get("builds", query=query)).total
            if running == 0:
                break
            if running != said:
                log.info(f"{daemon.CLEAN_STOP} waiting for {{n}} running build(s)", n=running)
                said = running
            await deferLater(self.clock, CLEAN_STOP_POLL, lambda: None)
        log.info(f"{daemon.CLEAN_STOP} no build running; stopping")
        reactor.stop()

    # -- reconfig ---------------------------------------------------------------------------

    def reconfig_from_file(self) -> defer.Deferred:
        """Reload master.cfg (on SIGHUP) and apply it; failures are logged and change nothing."""
        return defer.ensureDeferred(self._reconfig_from_file())

    async def _reconfig_from_file(self) -> None:
        if self._reconfiguring:
            log.warn(f"{daemon.RECONFIG_FAILED} a reconfig is already running")
            return
        self._reconfiguring = True
        try:
            new = load_config(self.basedir)
            summary = await self.reconfig(new)
        except (ConfigError, StartupError, StorageError, ValueError) as e:
            log.error(f"{daemon.RECONFIG_FAILED} {{reason}}; keeping the running configuration", reason=str(e))
        except Exception:
            log.failure(f"{daemon.RECONFIG_FAILED} unexpected error; keeping the running configuration")
        else:
            log.info(f"{daemon.RECONFIGURED} {{summary}}", summary=summary)
        finally:
            self._reconfiguring = False

    async def reconfig(self, new: MasterConfig) -> str:
        """Apply the difference between the running config and *new*; return what changed."""
        old = self.config
        if new.db_url != old.db_url:
            raise ConfigError("db_url cannot change while the master runs; stop and start it instead")
        changes = []
        # plugins: removed, added, or replaced when their settings differ
        old_plugins = {p.name: p for p in old.plugins}
        new_plugins = {p.name: p for p in new.plugins}
        going = [p for name, p in old_plugins.items() if name not in new_plugins or new_plugins[name] != p]
        coming = [p for name, p in new_plugins.items() if name not in old_plugins or old_plugins[name] != p]
        await self._create_plugin_tables(coming)
        plugins = self.plugins_part
        for plugin in going:
            await plugins.remove(plugin)  # its services stopped, its routes unmounted
            self.data.remove_plugin(plugin)
        for plugin in coming:
            self.data.add_plugin(plugin)
            await plugins.add(plugin)
        if going or coming:
            changes.append(f"plugins -{len(going)} +{len(coming)}")
        if new.builders != old.builders or new.workers != old.workers:
            await self._apply_builders(new)
            changes.append(f"builders {len(old.builders)} -> {len(new.builders)}")
            if new.workers != old.workers:
                self.workerlink.reconfig(self._worker_passwords(new))
                await self.local_workers.reconfig(self._local_workers(new))
                changes.append(f"workers {len(old.workers)} -> {len(new.workers)}")
        await self.engine.reconfig(new)
        if new.schedulers != old.schedulers:
            changes.append(f"schedulers {len(old.schedulers)} -> {len(new.schedulers)}")
        if new.change_hooks != old.change_hooks:
            self.change_hooks.reconfigure(new.change_hooks)
            changes.append("change hooks: " + (", ".join(sorted(new.change_hooks)) or "none"))
        if new.auth != old.auth:
            self.auth.reconfigure(new.auth)
            changes.append("auth " + ("on" if new.auth else "off"))
        if new.reporters != old.reporters or new.web.url != old.web.url:
            await self.reporters_part.replace(new)
            changes.append(f"reporters {len(old.reporters)} -> {len(new.reporters)}")
        self.retention.config = new
        self.heartbeat.reconfig(new)
        if hasattr(self.storage, "retry_seconds"):
            self.storage.retry_seconds = new.db_retry_seconds
        self.data.limits = new.limits
        self.rest.base_url = new.web.url
        if self.root.ui is not None:
            self.root.ui.reconfigure(new.title, new.web.url)
        self.site.allowed_origins = list(new.web.allowed_origins)
        self.site.set_access_log(new.web.access_log, self.basedir)
        self.live.set_limits(new.web.ws_max_subscriptions, new.web.ws_max_connections_per_ip)
        self.site.max_body_bytes = new.web.max_body_bytes
        if (new.web.interface, new.web.port) != (old.web.interface, old.web.port):
            await self.port_part.relisten(new)
            changes.append(f"listening on {new.web.interface}:{new.web.port}")
        self.config = new
        return ", ".join(changes) or "nothing changed"
