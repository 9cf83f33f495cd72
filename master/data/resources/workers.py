"""Workers: the machines that run builds, where they are configured and which masters they are connected to."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from master.data.base import (
    Action,
    ActionCall,
    Collection,
    Declaration,
    Endpoint,
    Field,
    Kind,
    Param,
    ResourceType,
    update_method,
)
from master.data.resources.common import dumps
from master.data.types import Boolean, Integer, JsonObject, List, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction, Prepared

w = schema.workers
cw = schema.configured_workers
conn = schema.connected_workers


def _configured_on(builderid: Any = None, masterid: Any = None) -> Any:
    """``workers.id IN (workers configured on that builder and/or master)``.

    Under ``/masters/M/builders/B/workers`` the pair must be one row of configured_workers
    (a worker on B of another master and on another builder of M is not "on B of M"),
    so that path's masterid condition reads the builderid argument's bind as well.
    """
    query = sa.select(cw.c.workerid)
    if builderid is not None:
        query = query.where(cw.c.builderid == builderid)
    if masterid is not None:
        query = query.where(cw.c.masterid == masterid)
    return w.c.id.in_(query)


_ON_BUILDER = {"builderid": lambda bind: _configured_on(builderid=bind)}
_ON_MASTER = {"masterid": lambda bind: _configured_on(masterid=bind)}
_ON_MASTER_BUILDER = {
    "masterid": lambda bind: _configured_on(builderid=sa.bindparam("arg_builderid"), masterid=bind),
    "builderid": lambda bind: sa.true(),
}


class WorkerEndpoint(Endpoint):
    """A worker getter whose ``configured_on``/``connected_to`` follow the path.

    As in Buildbot, under a builder or a master the lists show only that builder's and
    master's rows; the loaders read every row of the page's workers in one query each, and
    the path narrows them here (no extra query).
    """

    async def get(self, data: Any, spec: Any, args: dict[str, Any]) -> Any:
        """Read as any endpoint, then narrow the list fields to the path's builder and master."""
        result = await super().get(data, spec, args)
        masterid, builderid = args.get("masterid"), args.get("builderid")
        if result is None or (masterid is None and builderid is None):
            return result
        for item in result.items if isinstance(result, Collection) else [result]:
            if "configured_on" in item:
                item["configured_on"] = [
                    c for c in item["configured_on"]
                    if masterid in (None, c["masterid"]) and builderid in (None, c["builderid"])
                ]
            if "connected_to" in item and masterid is not None:
                item["connected_to"] = [c for c in item["connected_to"] if c["masterid"] == masterid]
        return result


async def _pause(call: ActionCall) -> None:
    entity = call.target
    await call.data.updates.set_worker_state(
        entity["workerid"], True, entity["graceful"], pause_reason=call.params["reason"]
    )


async def _unpause(call: ActionCall) -> None:
    entity = call.target
    await call.data.updates.set_worker_state(entity["workerid"], False, entity["graceful"])


async def _shutdown(call: ActionCall, graceful: bool) -> None:
    # a worker connected to another master (or to none) is not ours to stop: Buildbot answers null too
    engine = call.data.engine
    if engine is not None:
        await engine.shutdown_worker(call.target["workerid"], graceful)


async def _stop(call: ActionCall) -> None:
    await _shutdown(call, True)


async def _kill(call: ActionCall) -> None:
    await _shutdown(call, False)


def _actions() -> list[Action]:
    # Buildbot accepts pause/unpause in any state and answers null; so do we.
    return [
        Action("pause", _pause, {"reason": Param(NoneOk(String()), doc="why the worker is paused")},
               doc="stop giving the worker new builds"),
        Action("unpause", _unpause, doc="give the worker builds again"),
        Action("stop", _stop, {"reason": Param(NoneOk(String()), doc="why")},
               doc="ask the worker to leave once its builds end (no new build meanwhile)"),
        Action("kill", _kill, {"reason": Param(NoneOk(String()), doc="why")},
               doc="make the worker leave now: its builds end as retry and are queued again"),
    ]


_CONFIGURED = Prepared(
    ("workers", "configured_on"),
    lambda: sa.select(cw.c.workerid, cw.c.masterid, cw.c.builderid)
    .where(cw.c.workerid.in_(sa.bindparam("ids", expanding=True)))
    .order_by(cw.c.workerid, cw.c.masterid, cw.c.builderid),
)
_CONNECTED = Prepared(
    ("workers", "connected_to"),
    lambda: sa.select(conn.c.workerid, conn.c.masterid)
    .where(conn.c.workerid.in_(sa.bindparam("ids", expanding=True)))
    .order_by(conn.c.workerid, conn.c.masterid),
)


async def _load_configured_on(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
    found: dict[Any, list[dict[str, int]]] = defaultdict(list)
    for row in await data.storage.fetch_all(_CONFIGURED, {"ids": ids}):
        found[row["workerid"]].append({"masterid": row["masterid"], "builderid": row["builderid"]})
    return {workerid: found.get(workerid, []) for workerid in ids}


async def _load_connected_to(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
    found: dict[Any, list[dict[str, int]]] = defaultdict(list)
    for row in await data.storage.fetch_all(_CONNECTED, {"ids": ids}):
        found[row["workerid"]].append({"masterid": row["masterid"]})
    return {workerid: found.get(workerid, []) for workerid in ids}


async def _load_latent_state(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
    # known only to the engine of the master that runs the latent worker (master.engine.latent)
    engine = data.engine
    return {workerid: engine.latent_state(workerid) if engine is not None else None for workerid in ids}


class Workers(ResourceType):
    """``/workers``: every worker known to the database, with where it is configured and connected."""

    name = "worker"
    plural = "workers"
    id_field = "workerid"
    event_paths = (
        "workers/:workerid",
        "builders/:builderid/workers/:workerid",
        "masters/:masterid/workers/:workerid",
        "masters/:masterid/builders/:builderid/workers/:workerid",
    )

    def declare(self) -> Declaration:
        """Fields, endpoints and loaders of workers."""
        fields = {
            "workerid": Field(Integer(), w.c.id, "the worker's id"),
            "name": Field(String(), w.c.name, "the worker's unique name"),
            "workerinfo": Field(JsonObject(), w.c.info, "what the worker said of itself (host, admin, version...)"),
            "paused": Field(Boolean(), w.c.paused, "whether the worker is refused new builds"),
            "pause_reason": Field(NoneOk(String()), w.c.pause_reason, "why it was paused"),
            "graceful": Field(Boolean(), w.c.graceful, "whether it shuts down once its builds finish"),
            "configured_on": Field(List(JsonObject()), None, "[{masterid, builderid}] where it is configured"),
            "connected_to": Field(List(JsonObject()), None, "[{masterid}] of the masters it is connected to"),
            "latent_state": Field(NoneOk(String()), None, "a latent worker's state on the master answering: stopped,"
                                  " starting, running, stopping or unreachable (null: not a latent worker there)"),
        }
        by_name = {"name": w.c.name}
        endpoints = [
            WorkerEndpoint("/workers", Kind.COLLECTION),
            WorkerEndpoint("/workers/n:workerid", actions=_actions()),
            WorkerEndpoint("/workers/i:name", actions=_actions(), arg_columns=by_name),
            WorkerEndpoint("/builders/n:builderid/workers", Kind.COLLECTION, arg_columns=_ON_BUILDER),
            WorkerEndpoint("/builders/n:builderid/workers/n:workerid", actions=_actions(), arg_columns=_ON_BUILDER),
            WorkerEndpoint("/builders/n:builderid/workers/i:name", actions=_actions(),
                           arg_columns={**_ON_BUILDER, **by_name}),
            WorkerEndpoint("/masters/n:masterid/workers", Kind.COLLECTION, arg_columns=_ON_MASTER),
            WorkerEndpoint("/masters/n:masterid/workers/n:workerid", actions=_actions(), arg_columns=_ON_MASTER),
            WorkerEndpoint("/masters/n:masterid/workers/i:name", actions=_actions(),
                           arg_columns={**_ON_MASTER, **by_name}),
            WorkerEndpoint("/masters/n:masterid/builders/n:builderid/workers", Kind.COLLECTION,
                           arg_columns=_ON_MASTER_BUILDER),
            WorkerEndpoint("/masters/n:masterid/builders/n:builderid/workers/n:workerid", actions=_actions(),
                           arg_columns=_ON_MASTER_BUILDER),
            WorkerEndpoint("/masters/n:masterid/builders/n:builderid/workers/i:name", actions=_actions(),
                           arg_columns={**_ON_MASTER_BUILDER, **by_name}),
        ]
        loaders = {"configured_on": _load_configured_on, "connected_to": _load_connected_to,
                   "latent_state": _load_latent_state}
        return w, fields, endpoints, loaders

    def event_keys(self, entity: Mapping[str, Any], event: str) -> list[tuple[str, ...]]:
        """``workers/W/event``, and the same under each builder and master the worker is configured on.

        Those nested paths are not fields of the entity but pairs in ``configured_on``, so
        the templates' generic expansion cannot fill them.
        """
        workerid = str(entity["workerid"])
        keys: list[tuple[str, ...]] = [("workers", workerid, event)]
        pairs = [(str(c["masterid"]), str(c["builderid"])) for c in entity.get("configured_on") or []]
        for builderid in sorted({b for _, b in pairs}, key=int):
            keys.append(("builders", builderid, "workers", workerid, event))
        for masterid in sorted({m for m, _ in pairs}, key=int):
            keys.append(("masters", masterid, "workers", workerid, event))
        for masterid, builderid in sorted(pairs, key=lambda p: (int(p[0]), int(p[1]))):
            keys.append(("masters", masterid, "builders", builderid, "workers", workerid, event))
        return keys

    @update_method
    async def find_worker_id(self, name: str) -> int:
        """The id of worker *name*, created (unpaused, with empty info) if it does not exist."""

        async def work(txn: ITransaction) -> tuple[int, bool]:
            rows = await txn.fetch_all(sa.select(w.c.id).where(w.c.name == name))
            if rows:
                return rows[0]["id"], False
            inserted = await txn.fetch_all(sa.insert(w).values(name=name, info="{}").returning(w.c.id))
            return inserted[0]["id"], True

        try:
            workerid, created = await self.data.storage.transaction(work)
        except IntegrityError:
            # another master created the same worker at the same moment: it exists now
            workerid, created = await self.data.storage.transaction(work)
        if created:
            await self.produce_event(await self.get_entity(workerid), "new")
        return workerid

    @update_method
    async def worker_configured(self, workerid: int, masterid: int, builderids: list[int]) -> None:
        """Record that on master *masterid* the worker serves exactly *builderids* (other masters untouched)."""
        wanted = set(builderids)

        async def work(txn: ITransaction) -> bool:
            mine = (cw.c.workerid == workerid, cw.c.masterid == masterid)
            rows = await txn.fetch_all(sa.select(cw.c.builderid).where(*mine))
            present = {row["builderid"] for row in rows}
            gone = present - wanted
            if gone:
                await txn.execute(sa.delete(cw).where(*mine, cw.c.builderid.in_(sorted(gone))))
            for builderid in sorted(wanted - present):
                await txn.execute(sa.insert(cw).values(workerid=workerid, masterid=masterid, builderid=builderid))
            return bool(gone or wanted - present)

        if await self.data.storage.transaction(work):
            await self.produce_event(await self.get_entity(workerid), "update")

    @update_method
    async def worker_connected(self, workerid: int, masterid: int, workerinfo: dict[str, Any]) -> None:
        """Record that the worker connected to master *masterid*, saying *workerinfo* of itself."""

        async def work(txn: ITransaction) -> None:
            await txn.execute(sa.update(w).where(w.c.id == workerid).values(info=dumps(workerinfo)))
            present = await txn.fetch_all(
                sa.select(conn.c.workerid).where(conn.c.workerid == workerid, conn.c.masterid == masterid)
            )
            if not present:
                await txn.execute(sa.insert(conn).values(workerid=workerid, masterid=masterid))

        await self.data.storage.transaction(work)
        await self.produce_event(await self.get_entity(workerid), "connected")

    @update_method
    async def worker_disconnected(self, workerid: int, masterid: int) -> None:
        """Record that the worker is no longer connected to master *masterid*."""
        removed = await self.data.storage.execute(
            sa.delete(conn).where(conn.c.workerid == workerid, conn.c.masterid == masterid)
        )
        if removed:
            await self.produce_event(await self.get_entity(workerid), "disconnected")

    @update_method
    async def set_worker_state(
        self, workerid: int, paused: bool, graceful: bool, pause_reason: str | None = None
    ) -> None:
        """Set whether the worker is paused (and why) and whether it shuts down gracefully."""
        await self.data.storage.execute(
            sa.update(w)
            .where(w.c.id == workerid)
            .values(paused=paused, graceful=graceful, pause_reason=pause_reason if paused else None)
        )
        await self.produce_event(await self.get_entity(workerid), "state_updated")
