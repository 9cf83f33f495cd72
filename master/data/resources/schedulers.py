"""Schedulers: what turns changes and timers into build requests; each runs on one master at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from master.data.base import Action, ActionCall, Declaration, Endpoint, Field, Kind, Param, ResourceType, update_method
from master.data.errors import Conflict, NotFound
from master.data.types import Boolean, Integer, JsonObject, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction, Prepared

s = schema.schedulers
m = schema.masters


async def _enable(call: ActionCall) -> None:
    # Buildbot answers null, whatever the previous state
    await call.data.updates.set_scheduler_enabled(call.target["schedulerid"], call.params["enabled"])


_MASTERS = Prepared(
    ("schedulers", "master"),
    lambda: sa.select(s.c.id.label("schedulerid"), m.c.id.label("masterid"), m.c.name, m.c.active, m.c.last_active)
    .select_from(s.join(m, m.c.id == s.c.masterid))
    .where(s.c.id.in_(sa.bindparam("ids", expanding=True))),
)


async def _load_master(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
    found: dict[Any, Any] = dict.fromkeys(ids)
    for row in await data.storage.fetch_all(_MASTERS, {"ids": ids}):
        found[row["schedulerid"]] = {
            "masterid": row["masterid"],
            "name": row["name"],
            "active": bool(row["active"]),
            "last_active": row["last_active"],
        }
    return found


class Schedulers(ResourceType):
    """``/schedulers``: every scheduler known to the database, and the master running it (or null)."""

    name = "scheduler"
    plural = "schedulers"
    id_field = "schedulerid"
    event_paths = ("schedulers/:schedulerid", "masters/:masterid/schedulers/:schedulerid")

    def declare(self) -> Declaration:
        """Fields, endpoints and loaders of schedulers."""
        fields = {
            "schedulerid": Field(Integer(), s.c.id, "the scheduler's id"),
            "name": Field(String(), s.c.name, "the scheduler's unique name"),
            "enabled": Field(Boolean(), s.c.enabled, "whether it may start builds"),
            "master": Field(NoneOk(JsonObject()), None, "{masterid, name, active, last_active} of its master, or null"),
        }
        enable = Action(
            "enable", _enable, {"enabled": Param(Boolean(), required=True, doc="true to enable, false to disable")},
            doc="enable or disable the scheduler",
        )
        on_master = {"masterid": s.c.masterid}
        endpoints = [
            Endpoint("/schedulers", Kind.COLLECTION),
            Endpoint("/schedulers/n:schedulerid", actions=[enable]),
            Endpoint("/masters/n:masterid/schedulers", Kind.COLLECTION, arg_columns=on_master),
            Endpoint("/masters/n:masterid/schedulers/n:schedulerid", actions=[enable], arg_columns=on_master),
        ]
        return s, fields, endpoints, {"master": _load_master}

    def event_keys(self, entity: Mapping[str, Any], event: str) -> list[tuple[str, ...]]:
        """``schedulers/S/event``, and ``masters/M/schedulers/S/event`` while master M runs it.

        The master id sits inside the ``master`` object, which the generic templates cannot reach.
        """
        flat = {**entity, "masterid": (entity.get("master") or {}).get("masterid")}
        return super().event_keys(flat, event)

    @update_method
    async def find_scheduler_id(self, name: str) -> int:
        """The id of scheduler *name*, created (enabled, on no master) if it does not exist."""

        async def work(txn: ITransaction) -> tuple[int, bool]:
            rows = await txn.fetch_all(sa.select(s.c.id).where(s.c.name == name))
            if rows:
                return rows[0]["id"], False
            inserted = await txn.fetch_all(sa.insert(s).values(name=name).returning(s.c.id))
            return inserted[0]["id"], True

        try:
            schedulerid, created = await self.data.storage.transaction(work)
        except IntegrityError:
            # another master created it at the same moment: it exists now
            schedulerid, created = await self.data.storage.transaction(work)
        if created:
            await self.produce_event(await self.get_entity(schedulerid), "new")
        return schedulerid

    @update_method
    async def set_scheduler_master(self, schedulerid: int, masterid: int | None) -> None:
        """Claim the scheduler for master *masterid*, or release it with None.

        Claiming is one conditional UPDATE, so of two masters claiming at once exactly one
        wins; the loser gets Conflict.  A claim held by a master that is no longer active
        is taken over; claiming again for the same master is a no-op.
        """
        if masterid is None:
            changed = await self.data.storage.execute(
                sa.update(s).where(s.c.id == schedulerid, s.c.masterid.is_not(None)).values(masterid=None)
            )
        else:

            async def work(txn: ITransaction) -> int:
                inactive = sa.select(m.c.id).where(m.c.active.is_(False))
                free = sa.or_(s.c.masterid.is_(None), s.c.masterid.in_(inactive))
                claimed = await txn.execute(
                    sa.update(s).where(s.c.id == schedulerid, free).values(masterid=masterid)
                )
                if claimed:
                    return claimed
                rows = await txn.fetch_all(sa.select(s.c.masterid).where(s.c.id == schedulerid))
                if not rows:
                    raise NotFound(f"not found: schedulers/{schedulerid}")
                if rows[0]["masterid"] != masterid:
                    raise Conflict(f"scheduler {schedulerid} is already claimed by master {rows[0]['masterid']}")
                return 0

            changed = await self.data.storage.transaction(work)
        if changed:
            await self.produce_event(await self.get_entity(schedulerid), "updated")

    @update_method
    async def set_scheduler_enabled(self, schedulerid: int, enabled: bool) -> None:
        """Enable or disable the scheduler (Buildbot publishes ``updated`` for this)."""
        await self.data.storage.execute(sa.update(s).where(s.c.id == schedulerid).values(enabled=enabled))
        await self.produce_event(await self.get_entity(schedulerid), "updated")
