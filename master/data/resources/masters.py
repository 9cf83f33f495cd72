"""Masters: the ci-master processes sharing this database, and whether they are running."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from master.data.base import Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.resources.common import now
from master.data.types import Boolean, DateTime, Integer, String
from master.db import schema
from master.db.interfaces import ITransaction

t = schema.masters


def _serves_builder(bind: Any) -> Any:
    return t.c.id.in_(sa.select(schema.builder_masters.c.masterid).where(schema.builder_masters.c.builderid == bind))


class Masters(ResourceType):
    """``/masters``: every master that ever ran on this database; ``active`` while it runs."""

    name = "master"
    plural = "masters"
    id_field = "masterid"
    event_paths = ("masters/:masterid",)

    def declare(self) -> Declaration:
        """Fields and endpoints of masters."""
        fields = {
            "masterid": Field(Integer(), t.c.id, "the master's id"),
            "name": Field(String(), t.c.name, "the master's unique name (host:basedir unless configured)"),
            "active": Field(Boolean(), t.c.active, "whether the master is running"),
            "last_active": Field(DateTime(), t.c.last_active, "when the master last said it was running"),
        }
        endpoints = [
            Endpoint("/masters", Kind.COLLECTION),
            Endpoint("/masters/n:masterid"),
            Endpoint("/builders/n:builderid/masters", Kind.COLLECTION, arg_columns={"builderid": _serves_builder}),
            Endpoint("/builders/n:builderid/masters/n:masterid", arg_columns={"builderid": _serves_builder}),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def master_active(self, name: str) -> int:
        """Record that master *name* runs now; return its id ('started' is published when it was not active)."""

        async def work(txn: ITransaction) -> tuple[int, bool]:
            rows = await txn.fetch_all(sa.select(t.c.id, t.c.active).where(t.c.name == name))
            if rows:
                await txn.execute(sa.update(t).where(t.c.id == rows[0]["id"]).values(active=True, last_active=now()))
                return rows[0]["id"], not rows[0]["active"]
            inserted = await txn.fetch_all(
                sa.insert(t).values(name=name, active=True, last_active=now()).returning(t.c.id)
            )
            return inserted[0]["id"], True

        masterid, started = await self.data.storage.transaction(work)
        if started:
            await self.produce_event(await self.get_entity(masterid), "started")
        return masterid

    @update_method
    async def master_heartbeat(self, masterid: int) -> None:
        """Record that master *masterid* is still running (no event: it would be noise)."""
        await self.data.storage.execute(sa.update(t).where(t.c.id == masterid).values(active=True, last_active=now()))

    @update_method
    async def master_stopped(self, masterid: int) -> bool:
        """Record that master *masterid* has stopped; True if this call stopped it (it was active).

        What it held is let go in the same transaction: its builders, its workers'
        connections and configuration, and its schedulers' claims, so other masters can
        take them; each of those resources publishes its change.
        """
        bm, cw, kw, sched = (
            schema.builder_masters, schema.connected_workers, schema.configured_workers, schema.schedulers
        )
        # (rows to delete or release, the id of the resource they belong to, its type, the event)
        owned = [
            (bm, bm.c.builderid, "builders", "update"),
            (cw, cw.c.workerid, "workers", "disconnected"),
            (kw, kw.c.workerid, "workers", "update"),
            (sched, sched.c.id, "schedulers", "updated"),
        ]

        async def work(txn: ITransaction) -> tuple[bool, list[list[int]]]:
            stop = sa.update(t).where(t.c.id == masterid, t.c.active.is_(True)).values(active=False)
            changed = await txn.execute(stop)
            released = []
            for table, id_column, _, _ in owned:
                rows = await txn.fetch_all(sa.select(id_column.label("id")).where(table.c.masterid == masterid))
                released.append(sorted({row["id"] for row in rows}))
                if table is sched:
                    await txn.execute(sa.update(sched).where(sched.c.masterid == masterid).values(masterid=None))
                else:
                    await txn.execute(sa.delete(table).where(table.c.masterid == masterid))
            # the locks its builds held (MasterLock, WorkerLock) go with it
            await txn.execute(sa.delete(schema.lock_claims).where(schema.lock_claims.c.masterid == masterid))
            return bool(changed), released

        stopped, released = await self.data.storage.transaction(work)
        if stopped:
            await self.produce_event(await self.get_entity(masterid), "stopped")
        for (_, _, plural, event), ids in zip(owned, released, strict=True):
            owner = self.data.rtypes.get(plural)
            if owner is None:
                continue
            for entity_id in ids:
                await owner.produce_event(await owner.get_entity(entity_id), event)
        return stopped
