"""The service tree of a running master: storage, then the data API, then the web server.

Start-up checks the schema first (a database on an older schema is refused with the
command to run), creates missing plugin tables, opens storage, registers the core
resource types and the plugins, records this master and its builders, and listens.
Shutdown runs in reverse: stop listening, then close storage.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from twisted.application import service
from twisted.internet import defer, reactor, threads
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from master.config import MasterConfig
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import migrate
from master.db.backends import make_storage
from master.db.interfaces import StorageError
from master.www.rest import RestApi
from master.www.site import build_site

log = Logger()


class StartupError(Exception):
    """The master could not start; the message says why and what to do."""


class MasterService(service.MultiService):
    """One master: owns the storage, the DataAPI and the listening web port."""

    def __init__(self, basedir: str | Path, config: MasterConfig) -> None:
        super().__init__()
        self.basedir = Path(basedir).resolve()
        self.config = config
        self.name = f"{socket.getfqdn()}:{self.basedir}"
        self.storage: Any = None
        self.data: DataAPI | None = None
        self.masterid: int | None = None
        self.port: Any = None
        self.started: defer.Deferred = defer.Deferred()

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Start asynchronously; ``self.started`` fires with the listening URL or fails."""
        super().startService()
        defer.ensureDeferred(self.start()).chainDeferred(self.started)

    def stopService(self) -> defer.Deferred:  # noqa: N802
        """Stop listening, then close storage."""
        super().stopService()
        return defer.ensureDeferred(self.stop())

    async def start(self) -> str:
        """Bring the master up; return the URL it serves."""
        config = self.config
        plugin_metadata = [m for m in (p.metadata() for p in config.plugins) if m is not None]
        try:
            await threads.deferToThread(migrate.check, config.db_url)
            if plugin_metadata:
                await threads.deferToThread(migrate.create_plugin_tables, config.db_url, plugin_metadata)
            self.storage = make_storage(config.db_url)
            await self.storage.start()
        except StorageError as e:
            raise StartupError(str(e)) from None
        data = self.data = DataAPI(self.storage, config.limits)
        for rtype in core_resource_types():
            data.add_resource_type(rtype)
        for plugin in config.plugins:
            data.add_plugin(plugin)
        self.masterid = await data.updates.master_active(self.name)
        await self._register_builders()
        mounts: dict[str, Any] = {"api": RestApi(data, config.www.url).resource()}
        for plugin in config.plugins:
            for prefix, resource in plugin.web_resources(data).items():
                if prefix.strip("/") in mounts:
                    raise StartupError(f"plugin {plugin.name!r} mounts /{prefix.strip('/')}, which is taken")
                mounts[prefix.strip("/")] = resource
        try:
            self.port = reactor.listenTCP(config.www.port, build_site(mounts), interface=config.www.interface)
        except CannotListenError as e:
            raise StartupError(
                f"cannot listen on {config.www.interface}:{config.www.port}: {e.socketError}"
                " (is another master running? change www.port in master.cfg)"
            ) from None
        host = self.port.getHost()
        url = f"http://{host.host}:{host.port}/"
        log.info("ci-master {name} (pid {pid}) serving {url}", name=self.name, pid=os.getpid(), url=url)
        return url

    async def _register_builders(self) -> None:
        data = self.data
        builderids = []
        for builder in self.config.builders:
            projectid = await data.updates.find_project_id(builder.project) if builder.project else None
            builderid = await data.updates.update_builder(
                builder.name, description=builder.description, tags=builder.tags, projectid=projectid
            )
            await data.updates.set_builder_masters(builderid, [self.masterid])
            builderids.append(builderid)

    async def stop(self) -> None:
        """Stop listening and close the database."""
        if self.port is not None:
            await self.port.stopListening()
            self.port = None
        if self.storage is not None:
            if self.masterid is not None:
                try:
                    await self.data.updates.master_stopped(self.masterid)
                except StorageError:
                    log.failure("could not mark the master stopped")
            await self.storage.stop()
            self.storage = None
