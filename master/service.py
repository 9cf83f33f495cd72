"""The service tree of a running master: storage, then the data API, then the web server.

Start-up checks the schema first (a database on an older schema is refused with the
command to run), creates missing plugin tables, opens storage, registers the core
resource types and the plugins, records this master and its builders, and listens.
Shutdown runs in reverse: stop listening, then close storage.  SIGHUP reloads master.cfg
and applies the difference without dropping connections; a config that fails to load is
refused and the running one kept.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, reactor, threads
from twisted.internet.error import CannotListenError
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


class StartupError(Exception):
    """The master could not start; the message says why and what to do."""


class MasterService(service.MultiService):
    """One master: owns the storage, the DataAPI and the listening web port."""

    def __init__(self, basedir: str | Path, config: MasterConfig, daemon: bool = False) -> None:
        super().__init__()
        self.basedir = Path(basedir).resolve()
        self.config = config
        self.daemon = daemon
        self.name = f"{socket.getfqdn()}:{self.basedir}"
        self.storage: Any = None
        self.data: DataAPI | None = None
        self.rest: RestApi | None = None
        self.root: Root | None = None
        self.masterid: int | None = None
        self.port: Any = None
        self.site: Any = None
        self.engine = Engine()
        self.workerlink: WorkerLink | None = None
        self.local_workers: LocalWorkers | None = None
        self.retention: RetentionService | None = None
        self.change_hooks: ChangeHooks | None = None
        self.live: LiveUpdates | None = None
        self.heartbeat: Heartbeat | None = None
        self.reporters: Reporters | None = None
        self.auth = Authenticator(None, self.basedir)
        self._plugin_services: dict[Any, list[Any]] = {}
        self.started: defer.Deferred = defer.Deferred()
        self._reconfiguring = False
        self.accepting_builds = True

    @property
    def database_available(self) -> bool:
        """Whether the database answers now (False during a PostgreSQL outage; for /metrics and health)."""
        return bool(getattr(self.storage, "database_available", False))

    # -- start and stop ---------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start asynchronously; ``self.started`` fires with the listening URL or fails."""
        super().startService()
        d = defer.ensureDeferred(self.start())
        if self.daemon:
            d.addCallbacks(self._daemon_started, self._daemon_failed)
        d.chainDeferred(self.started)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reconfig_from_file))
            signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(self.clean_stop))

    def _daemon_started(self, url: str) -> str:
        log.info(f"{daemon.STARTED} {{url}} (pid {{pid}})", url=url, pid=os.getpid())
        return url

    def _daemon_failed(self, failure: Any) -> None:
        if failure.check(StartupError):
            log.error(f"{daemon.FAILED} {{reason}}", reason=failure.getErrorMessage())
        else:
            log.failure(f"{daemon.FAILED} unexpected error", failure)
        reactor.stop()

    def stopService(self) -> defer.Deferred:  # noqa: N802
        """Stop the plugins' services, then stop listening, then close storage."""
        children_stopped = super().stopService()

        async def stop_all() -> None:
            await children_stopped
            await self.stop()

        return defer.ensureDeferred(stop_all())

    async def start(self) -> str:
        """Bring the master up; return the URL it serves."""
        config = self.config
        return_big_blocks()  # scrypt's 16 MB per worker login would otherwise stay resident
        try:
            await threads.deferToThread(migrate.check, config.db_url)
            await self._create_plugin_tables(config.plugins)
            self.storage = make_storage(config.db_url, retry_seconds=config.db_retry_seconds)
            await self.storage.start()
        except StorageError as e:
            raise StartupError(str(e)) from None
        data = self.data = DataAPI(self.storage, config.limits)
        data.basedir = self.basedir  # artifacts live in its artifacts/ directory
        for rtype in core_resource_types():
            data.add_resource_type(rtype)
        for plugin in config.plugins:
            data.add_plugin(plugin)
        await self._check_single_master(data, config)
        self.masterid = data.events.masterid = await data.updates.master_active(self.name)
        data.events.listen()  # other masters' events (PostgreSQL); nothing to do on SQLite
        await self._apply_builders(config)
        # reporters before the engine: they see the events of the builds a crash left, ended at its start
        self.reporters = Reporters(data, self.masterid, config.reporters, config.www.url)
        await self.reporters.start()
        # the engine first: it recovers what a crash left, and must be ready when workers connect
        await self.engine.start(data, self.masterid, config)
        self.workerlink = WorkerLink(data, self.masterid, self._worker_passwords(config), self.engine)
        self.auth.reconfigure(config.auth)
        data.auth = self.auth  # plugins check their APIs' users and tokens with the master's Authenticator
        self.rest = RestApi(data, config.www.url, self.auth)
        self.live = LiveUpdates(
            data, self.auth, max_subscriptions=config.www.ws_max_subscriptions,
            max_connections_per_ip=config.www.ws_max_connections_per_ip,
        )
        self.change_hooks = ChangeHooks(data, config.change_hooks)
        self.root = build_root({
            "api": self.rest.resource(),
            "auth": LoginPages(self.auth).resource(),
            "worker": self.workerlink.resource(),
            "ws": self.live.resource(),
            "change_hook": self.change_hooks.resource(),
        })
        # Buildbot's web UI at / when buildbot-www is installed (pip install --no-deps buildbot-www)
        self.root.ui = WebUi.if_installed(config.title, config.www.url, self.auth)
        self.site = build_site(self.root, config.www.allowed_origins, config.www.max_body_bytes)
        try:
            self.site.set_access_log(config.www.access_log, self.basedir)
        except ValueError as e:
            raise StartupError(str(e)) from None
        self.metrics = attach_metrics(self)  # GET /metrics; mounted before plugins, which may not take it
        for plugin in config.plugins:
            self._mount_plugin(plugin)
            self._start_plugin_services(plugin)
        self.port = self._listen(config)
        host = self.port.getHost()
        url = f"http://{host.host}:{host.port}/"
        self.local_workers = LocalWorkers(self.basedir, self._local_workers(config), self._worker_url())
        self.local_workers.setServiceParent(self)
        self.engine.latent.set_master_url(self._worker_url())
        self.engine.distributor.activity()  # requests for latent workers waited for the URL
        self.retention = RetentionService(data, config)
        self.retention.setServiceParent(self)
        self.heartbeat = Heartbeat(data, self.engine, self.masterid, config)
        self.heartbeat.setServiceParent(self)
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
        host = self.port.getHost()
        local_host = "127.0.0.1" if host.host in ("0.0.0.0", "::") else host.host  # noqa: S104
        return f"ws://{local_host}:{host.port}/worker"

    def _listen(self, config: MasterConfig) -> Any:
        try:
            return reactor.listenTCP(config.www.port, self.site, interface=config.www.interface)
        except CannotListenError as e:
            raise StartupError(
                f"cannot listen on {config.www.interface}:{config.www.port}: {e.socketError}"
                " (is another master running? change www.port in master.cfg)"
            ) from None

    async def _create_plugin_tables(self, plugins: list[Any]) -> None:
        schemas = migrate.plugin_schemas(plugins)
        if schemas:
            await threads.deferToThread(migrate.prepare_plugin_tables, self.config.db_url, schemas)

    def _mount_plugin(self, plugin: Any) -> None:
        for prefix, resource in plugin.web_resources(self.data).items():
            try:
                mount(self.root, prefix, resource)
            except MountError as e:
                raise StartupError(f"plugin {plugin.name!r} cannot mount {e}") from None
            resource.mounted_by = plugin

    def _start_plugin_services(self, plugin: Any) -> None:
        services = self._plugin_services[plugin] = list(plugin.services(self.data))
        for child in services:
            child.setServiceParent(self)

    async def _stop_plugin_services(self, plugin: Any) -> None:
        for child in self._plugin_services.pop(plugin, []):
            await defer.maybeDeferred(child.disownServiceParent)

    def _unmount_plugin(self, plugin: Any) -> None:
        unmount(self.root, lambda child: getattr(child, "mounted_by", None) is plugin)

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
        configured = {worker.name: [] for worker in config.workers}
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

    async def stop(self) -> None:
        """Stop the builds (their requests go back to the queue), the workers' link, listening; close the database."""
        if self.engine.data is not None:
            await self.engine.stop()
        if self.reporters is not None:  # after the engine: the reports of the builds it ended are recorded
            await self.reporters.stop()
            self.reporters = None
        if self.workerlink is not None:
            await self.workerlink.stop()
            self.workerlink = None
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.data is not None:
            self.data.events.stop_listening()
        if self.port is not None:
            await self.port.stopListening()
            self.port = None
            self.site.set_access_log(None, self.basedir)
        if self.storage is not None:
            if self.masterid is not None:
                try:
                    await self.data.updates.master_stopped(self.masterid)
                except StorageError:
                    log.failure("could not mark the master stopped")
            await self.storage.stop()
            self.storage = None

    def clean_stop(self) -> defer.Deferred:
        """Start no new build, wait for this master's running builds to end, then stop (SIGUSR1)."""
        return defer.ensureDeferred(self._clean_stop())

    async def _clean_stop(self) -> None:
        if not self.accepting_builds:
            return
        self.accepting_builds = False
        self.engine.stop_accepting()
        said = None
        while self.data is not None:
            query = {"masterid": [str(self.masterid)], "complete": ["false"], "field": ["buildid"], "limit": ["1"]}
            running = (await self.data.get("builds", query=query)).total
            if running == 0:
                break
            if running != said:
                log.info(f"{daemon.CLEAN_STOP} waiting for {{n}} running build(s)", n=running)
                said = running
            await deferLater(reactor, CLEAN_STOP_POLL, lambda: None)
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
        for plugin in going:
            await self._stop_plugin_services(plugin)
            self._unmount_plugin(plugin)
            self.data.remove_plugin(plugin)
        for plugin in coming:
            self.data.add_plugin(plugin)
            self._mount_plugin(plugin)
            self._start_plugin_services(plugin)
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
        if new.reporters != old.reporters or new.www.url != old.www.url:
            await self.reporters.stop()
            self.reporters = Reporters(self.data, self.masterid, new.reporters, new.www.url)
            await self.reporters.start()
            changes.append(f"reporters {len(old.reporters)} -> {len(new.reporters)}")
        self.retention.config = new
        self.heartbeat.reconfig(new)
        if hasattr(self.storage, "retry_seconds"):
            self.storage.retry_seconds = new.db_retry_seconds
        self.data.limits = new.limits
        self.rest.base_url = new.www.url
        if self.root.ui is not None:
            self.root.ui.reconfigure(new.title, new.www.url)
        self.site.allowed_origins = list(new.www.allowed_origins)
        self.site.set_access_log(new.www.access_log, self.basedir)
        self.live.set_limits(new.www.ws_max_subscriptions, new.www.ws_max_connections_per_ip)
        self.site.max_body_bytes = new.www.max_body_bytes
        if (new.www.interface, new.www.port) != (old.www.interface, old.www.port):
            # open the new port first; open connections on the old one are left to finish
            port = self._listen(new)
            await self.port.stopListening()
            self.port = port
            self.engine.latent.set_master_url(self._worker_url())
            changes.append(f"listening on {new.www.interface}:{new.www.port}")
        self.config = new
        return ", ".join(changes) or "nothing changed"
