"""Build requests: one builder's share of a buildset, waiting to be claimed by a master and built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from master.data.base import Action, ActionCall, Declaration, Endpoint, Field, Kind, Param, ResourceType, update_method
from master.data.errors import Conflict
from master.data.resources.common import now, properties_loader
from master.data.resources.livecache import LiveEntities
from master.data.resultspec import Filter, ResultSpec
from master.data.types import Boolean, DateTime, Integer, JsonObject, NoneOk, String
from master.db import schema
from master.results import CANCELLED

t = schema.buildrequests
PROPERTY = ("property",)
PENDING = (t.c.complete == sa.false(), t.c.claimed_by_masterid.is_(None))
"""Conditions of a request nobody has claimed and that is not complete."""


CLAIMED = sa.or_(t.c.claimed_by_masterid.is_not(None), t.c.complete == sa.true())
"""A request is claimed once a master took it, or once it is complete without one (cancelled while
pending): as in Buildbot, where a request is claimed before it completes, ``claimed=false``
means "waiting", which is how Buildbot's UI lists pending requests."""


def _claimed_filter(op: str, values: tuple[Any, ...]) -> Any:
    """claimed=true/false: taken by a master or complete / neither (the pending queue)."""
    wanted = set(values) if op in ("eq", "in") else {True, False} - set(values)
    if wanted == {True}:
        return CLAIMED
    if wanted == {False}:
        return sa.and_(*PENDING)
    return sa.true() if wanted else sa.false()


def _builder_named(bind: Any) -> Any:
    return t.c.builderid == sa.select(schema.builders.c.id).where(schema.builders.c.name == bind).scalar_subquery()


def _properties_loader() -> Any:
    """The buildset's properties of each request, only when ``property=`` asks (else null, as in Buildbot)."""
    bsp = schema.buildset_properties
    joined = (
        sa.select(t.c.id.label("buildrequestid"), bsp.c.name, bsp.c.value, bsp.c.source)
        .select_from(t.join(bsp, bsp.c.buildsetid == t.c.buildsetid))
        .subquery("buildrequest_properties")
    )
    load_asked = properties_loader("buildrequests", joined, "buildrequestid")

    async def load(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
        if "property" not in spec.options:
            return {entity_id: None for entity_id in ids}
        return await load_asked(data, ids, spec)

    return load


async def _cancel(call: ActionCall) -> None:
    brid = call.args["buildrequestid"]
    if await call.data.updates.cancel_buildrequest(brid):
        return None
    entity = await call.data.get(("buildrequests", str(brid)))
    if entity["complete"]:
        raise Conflict(f"build request {brid} is already complete")
    engine = call.data.engine
    if entity["claimed"] and engine is not None and await engine.cancel_buildrequest(brid, call.params["reason"]):
        return None  # its build is being stopped; the request completes as cancelled when it ends
    if entity["claimed"]:
        raise Conflict(f"build request {brid} is being built: stop its build to cancel it")
    raise Conflict(f"build request {brid} changed while being cancelled; try again")


async def _set_priority(call: ActionCall) -> dict[str, Any]:
    brid = call.args["buildrequestid"]
    if not await call.data.updates.set_buildrequest_priority(brid, call.params["priority"]):
        current = await call.data.get(("buildrequests", str(brid)))
        state = "complete" if current["complete"] else "claimed"
        raise Conflict(f"build request {brid} is already {state}: only a pending request can be reprioritized")
    entity: dict[str, Any] = await call.data.get(("buildrequests", str(brid)))
    return entity


class BuildRequests(ResourceType):
    """``/buildrequests``: the queue; ``claimed=false&order=-priority&order=-submitted_at`` is what waits."""

    name = "buildrequest"
    plural = "buildrequests"
    counted_table = "buildrequests"
    id_field = "buildrequestid"
    event_paths = (
        "buildsets/:buildsetid/builders/:builderid/buildrequests/:buildrequestid",
        "buildrequests/:buildrequestid",
        "builders/:builderid/buildrequests/:buildrequestid",
    )

    def declare(self) -> Declaration:
        """Fields, endpoints, actions and loaders of build requests."""
        fields = {
            "buildrequestid": Field(Integer(), t.c.id, "the request's id"),
            "buildsetid": Field(Integer(), t.c.buildsetid, "the buildset it belongs to"),
            "builderid": Field(Integer(), t.c.builderid, "the builder to build it"),
            "priority": Field(Integer(), t.c.priority, "higher is built first"),
            "claimed": Field(Boolean(), CLAIMED, "whether it no longer waits: a master has claimed it, or it "
                             "is complete (cancelled before any master claimed it)", filter_sql=_claimed_filter),
            "claimed_at": Field(NoneOk(DateTime()), t.c.claimed_at, "when it was claimed"),
            "claimed_by_masterid": Field(NoneOk(Integer()), t.c.claimed_by_masterid, "the master that claimed it"),
            "complete": Field(Boolean(), t.c.complete, "whether it is done"),
            # Buildbot shows -1 until the request completes
            "results": Field(Integer(), sa.func.coalesce(t.c.results, -1), "result code 0..6, -1 until complete"),
            "submitted_at": Field(DateTime(), t.c.submitted_at, "when it was submitted"),
            "complete_at": Field(NoneOk(DateTime()), t.c.complete_at, "when it completed"),
            "waited_for": Field(Boolean(), t.c.waited_for, "whether the submitter waits for it"),
            "properties": Field(NoneOk(JsonObject()), None, "{name: [value, source]} of its buildset, if asked for"),
        }
        cancel = Action(
            "cancel", _cancel, {"reason": Param(NoneOk(String()), doc="why; not stored yet")},
            doc="cancel a request: a pending one completes as cancelled; a claimed one's build is stopped",
        )
        set_priority = Action(
            "set_priority", _set_priority, {"priority": Param(Integer(), required=True, doc="higher runs first")},
            doc="change the priority of a pending request",
        )
        endpoints = [
            Endpoint("/buildrequests", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/buildrequests/n:buildrequestid", actions=[cancel, set_priority], options=PROPERTY),
            Endpoint("/builders/n:builderid/buildrequests", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/builders/i:buildername/buildrequests", Kind.COLLECTION, options=PROPERTY,
                     arg_columns={"buildername": _builder_named}),
        ]
        return t, fields, endpoints, {"properties": _properties_loader()}

    def attach(self, data: Any) -> None:
        """Remember the DataAPI; start the cache of the requests this master has claimed, until they complete."""
        super().attach(data)
        self.live = LiveEntities(self, (
            "buildrequestid", "buildsetid", "builderid", "priority", "claimed", "claimed_at", "claimed_by_masterid",
            "complete", "results", "submitted_at", "complete_at", "waited_for", "properties",
        ))

    async def _entities(self, brids: Iterable[int]) -> list[dict[str, Any]]:
        """The requests *brids*, read in one query per thousand, by id."""
        ids = sorted(set(brids))
        found = []
        for start in range(0, len(ids), 1000):
            chunk = tuple(ids[start:start + 1000])
            spec = ResultSpec(filters=[Filter("buildrequestid", "in", chunk)], order=("buildrequestid",),
                              limit=len(chunk))
            found.extend((await self.data.get(("buildrequests",), spec=spec)).items)
        return found

    async def _publish(self, brids: Iterable[int], event: str) -> None:
        for entity in await self._entities(brids):
            await self.produce_event(entity, event)

    async def _update_returning(self, statement: Any) -> list[dict[str, Any]]:
        # in a transaction, so that SQLite runs it on its writer connection
        return await self.data.storage.transaction(lambda txn: txn.fetch_all(statement))

    @update_method
    async def claim_buildrequests(
        self, brids: Iterable[int], masterid: int, pending: Mapping[int, Mapping[str, Any]] | None = None
    ) -> list[int]:
        """Claim for *masterid* those of *brids* that nobody has claimed and are not complete; return them.

        One conditional UPDATE: of masters claiming the same request at once exactly one
        gets it (PostgreSQL re-checks the condition after waiting for the other's row lock;
        SQLite runs writes one at a time).  *pending* may give the requests as read (pending)
        just before, by id: what a request claimed here then is, is known without reading it back.
        """
        ids = sorted(set(brids))
        if not ids:
            return []
        claimed_at = now()
        rows = await self._update_returning(
            sa.update(t)
            .where(t.c.id.in_(ids), *PENDING)
            .values(claimed_by_masterid=masterid, claimed_at=claimed_at)
            .returning(t.c.id)
        )
        claimed = sorted(row["id"] for row in rows)
        known: list[dict[str, Any]] = []  # the claimed entities, when the pending ones were all at hand
        for brid in claimed:
            entity = (pending or {}).get(brid)
            if entity is None or entity.get("claimed") or entity.get("complete"):
                break
            cached = self.live.put(brid, {
                **entity, "claimed": True, "claimed_at": claimed_at, "claimed_by_masterid": masterid,
            })
            if cached is None:  # the live cache is off
                break
            known.append(cached)
        if len(known) < len(claimed):
            await self._publish(claimed, "claimed")
        else:
            for entity in known:
                await self.produce_event(entity, "claimed")
        return claimed

    @update_method
    async def unclaim_buildrequests(self, brids: Iterable[int], masterid: int) -> list[int]:
        """Give back those of *brids* that *masterid* claimed and are not complete; return them."""
        ids = sorted(set(brids))
        if not ids:
            return []
        rows = await self._update_returning(
            sa.update(t)
            .where(t.c.id.in_(ids), t.c.claimed_by_masterid == masterid, t.c.complete == sa.false())
            .values(claimed_by_masterid=None, claimed_at=None)
            .returning(t.c.id)
        )
        unclaimed = sorted(row["id"] for row in rows)
        for brid in ids:
            self.live.forget(brid)
        await self._publish(unclaimed, "unclaimed")
        return unclaimed

    @update_method
    async def complete_buildrequests(self, brids: Iterable[int], results: int) -> list[int]:
        """Complete those of *brids* not yet complete with *results*; return them.

        Then each buildset touched is completed if all its requests are.
        """
        ids = sorted(set(brids))
        if not ids:
            return []
        complete_at = now()
        rows = await self._update_returning(
            sa.update(t)
            .where(t.c.id.in_(ids), t.c.complete == sa.false())
            .values(complete=True, results=results, complete_at=complete_at)
            .returning(t.c.id, t.c.buildsetid)
        )
        completed = sorted(row["id"] for row in rows)
        known = [self.live.finish(brid, complete=True, results=results, complete_at=complete_at) for brid in completed]
        if None in known:
            await self._publish(completed, "complete")
        else:
            for entity in known:
                await self.produce_event(entity, "complete")
        for bsid in sorted({row["buildsetid"] for row in rows}):
            await self.data.updates.maybe_complete_buildset(bsid)
        return completed

    @update_method
    async def cancel_buildrequest(self, buildrequestid: int) -> bool:
        """Cancel a request nobody has claimed: complete it as cancelled; return False if it was not pending.

        A claimed request is being built: stopping that build is the engine's job.
        """
        rows = await self._update_returning(
            sa.update(t)
            .where(t.c.id == buildrequestid, *PENDING)
            .values(complete=True, results=CANCELLED, complete_at=now())
            .returning(t.c.buildsetid)
        )
        if not rows:
            return False
        # Buildbot publishes a cancel as 'complete' with results CANCELLED; the UI expects that
        await self._publish([buildrequestid], "complete")
        await self.data.updates.maybe_complete_buildset(rows[0]["buildsetid"])
        return True

    @update_method
    async def set_buildrequest_priority(self, buildrequestid: int, priority: int) -> bool:
        """Set the priority of a pending request; return False if it was claimed or complete."""
        changed = await self.data.storage.transaction(
            lambda txn: txn.execute(sa.update(t).where(t.c.id == buildrequestid, *PENDING).values(priority=priority))
        )
        if not changed:
            return False
        await self._publish([buildrequestid], "update")
        return True
