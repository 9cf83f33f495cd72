"""Builds: one run of a builder's steps on a worker, for one build request."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from master.data.base import Action, ActionCall, Endpoint, Field, Kind, Param, ResourceType, update_method
from master.data.errors import Conflict
from master.data.resources.common import boolean_filter, dumps, now, properties_loader
from master.data.types import Boolean, DateTime, Integer, JsonObject, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError

t = schema.builds
PROPERTY = ("property",)


def _builder_named(bind: Any) -> Any:
    return t.c.builderid == sa.select(schema.builders.c.id).where(schema.builders.c.name == bind).scalar_subquery()


def _for_change(bind: Any) -> Any:
    """Builds of the buildsets that include the change's source stamp (as Buildbot's changes/C/builds)."""
    bss, br = schema.buildset_sourcestamps, schema.buildrequests
    sourcestamp = sa.select(schema.changes.c.sourcestampid).where(schema.changes.c.id == bind).scalar_subquery()
    buildsets = sa.select(bss.c.buildsetid).where(bss.c.sourcestampid == sourcestamp)
    return t.c.buildrequestid.in_(sa.select(br.c.id).where(br.c.buildsetid.in_(buildsets)))


def engine_of(call: ActionCall) -> Any:
    """The build engine of the master serving *call* (``data.engine``, set by the engine), or Conflict."""
    engine = getattr(call.data, "engine", None)
    if engine is None:
        raise Conflict("no build engine runs on this master")
    return engine


async def _stop(call: ActionCall) -> None:
    # Buildbot answers null, also for a build that has finished already
    await engine_of(call).stop_build(call.entity["buildid"], call.params["reason"])


async def _rebuild(call: ActionCall) -> list[Any]:
    return await engine_of(call).rebuild(call.entity["buildid"], call.params["reason"])


def _actions() -> list[Action]:
    reason = {"reason": Param(NoneOk(String()), doc="why")}
    return [
        Action("stop", _stop, reason, doc="stop the build: it ends as cancelled"),
        Action("rebuild", _rebuild, reason, doc="build the same buildset again on this builder; "
               "returns [buildsetid, {builderid: buildrequestid}]"),
    ]


class Builds(ResourceType):
    """``/builds``: builds, newest last; ``property=name`` (or ``*``) adds their properties."""

    name = "build"
    plural = "builds"
    id_field = "buildid"
    event_paths = (
        "builders/:builderid/builds/:number",
        "builds/:buildid",
        "workers/:workerid/builds/:buildid",
    )

    def declare(self):
        """Fields, endpoints and loaders of builds."""
        fields = {
            "buildid": Field(Integer(), t.c.id, "the build's id"),
            "number": Field(Integer(), t.c.number, "the build's number within its builder"),
            "builderid": Field(Integer(), t.c.builderid, "the builder that ran it"),
            "buildrequestid": Field(Integer(), t.c.buildrequestid, "the request it serves"),
            "workerid": Field(NoneOk(Integer()), t.c.workerid, "the worker it ran on"),
            "masterid": Field(NoneOk(Integer()), t.c.masterid, "the master that ran it"),
            "started_at": Field(DateTime(), t.c.started_at, "when it started"),
            "complete_at": Field(NoneOk(DateTime()), t.c.complete_at, "when it finished"),
            "complete": Field(Boolean(), t.c.complete_at.is_not(None), "whether it has finished",
                              filter_sql=boolean_filter(lambda: t.c.complete_at.is_not(None))),
            "locks_duration_s": Field(Integer(), t.c.locks_duration_s, "seconds spent waiting for locks"),
            "state_string": Field(String(), t.c.state_string, "what it is doing or did, in words"),
            "results": Field(NoneOk(Integer()), t.c.results, "result code 0..6, null while running"),
            "properties": Field(JsonObject(), None, "{name: [value, source]} of the properties asked for"),
        }
        endpoints = [
            Endpoint("/builds", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/builds/n:buildid", options=PROPERTY, actions=_actions()),
            Endpoint("/builders/n:builderid/builds", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/builders/n:builderid/builds/n:number", options=PROPERTY, actions=_actions()),
            Endpoint("/builders/i:buildername/builds", Kind.COLLECTION, options=PROPERTY,
                     arg_columns={"buildername": _builder_named}),
            Endpoint("/builders/i:buildername/builds/n:number", options=PROPERTY, actions=_actions(),
                     arg_columns={"buildername": _builder_named}),
            Endpoint("/buildrequests/n:buildrequestid/builds", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/workers/n:workerid/builds", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/workers/n:workerid/builds/n:buildid", options=PROPERTY, actions=_actions()),
            Endpoint("/masters/n:masterid/builds", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/changes/n:changeid/builds", Kind.COLLECTION, options=PROPERTY,
                     arg_columns={"changeid": _for_change}),
        ]
        loaders = {"properties": properties_loader("builds", schema.build_properties, "buildid")}
        return t, fields, endpoints, loaders

    @update_method
    async def add_build(
        self, builderid: int, buildrequestid: int, workerid: int | None, masterid: int | None,
        state_string: str = "created",
    ) -> tuple[int, int]:
        """Start a build of *builderid* for *buildrequestid*; return ``(buildid, number)``."""

        async def work(txn: Any) -> tuple[int, int]:
            rows = await txn.fetch_all(
                sa.select(sa.func.coalesce(sa.func.max(t.c.number), 0).label("last")).where(t.c.builderid == builderid)
            )
            number = rows[0]["last"] + 1
            inserted = await txn.fetch_all(
                sa.insert(t).values(
                    number=number, builderid=builderid, buildrequestid=buildrequestid, workerid=workerid,
                    masterid=masterid, started_at=now(), state_string=state_string,
                ).returning(t.c.id)
            )
            return inserted[0]["id"], number

        for attempt in range(5):
            try:
                buildid, number = await self.data.storage.transaction(work)
                break
            except IntegrityError:
                # another master took the same number of this builder at the same moment
                if attempt == 4:
                    raise
        await self.produce_event(await self.get_entity(buildid), "new")
        return buildid, number

    @update_method
    async def set_build_state_string(self, buildid: int, state_string: str) -> None:
        """Say in words what the build is doing."""
        await self.data.storage.execute(sa.update(t).where(t.c.id == buildid).values(state_string=state_string))
        await self.produce_event(await self.get_entity(buildid), "update")

    @update_method
    async def set_build_properties(self, buildid: int, properties: dict[str, tuple[Any, str]]) -> None:
        """Set properties ``{name: (value, source)}`` of a build, replacing those of the same names."""
        table = schema.build_properties
        rows = [
            {"buildid": buildid, "name": name, "value": dumps(value), "source": source}
            for name, (value, source) in properties.items()
        ]
        if not rows:
            return

        async def work(txn: Any) -> None:
            # two statements whatever the number of properties: builds set a dozen at once
            await txn.execute(sa.delete(table).where(table.c.buildid == buildid, table.c.name.in_(list(properties))))
            await txn.execute(sa.insert(table).values(rows))

        await self.data.storage.transaction(work)
        await self.produce_event(await self.get_entity(buildid), "update")
        # the build page's Properties tab follows builds/B/properties/*
        properties_type = self.data.rtypes.get("properties")
        if properties_type is not None:
            await properties_type.produce_build_properties(
                buildid, {name: [value, source] for name, (value, source) in properties.items()}
            )

    @update_method
    async def finish_build(self, buildid: int, results: int) -> None:
        """Mark a build complete with *results*."""
        await self.data.storage.execute(
            sa.update(t).where(t.c.id == buildid, t.c.complete_at.is_(None)).values(complete_at=now(), results=results)
        )
        await self.produce_event(await self.get_entity(buildid), "finished")


    @update_method
    async def delete_builds_completed_before(self, when: int, batch: int = 200) -> int:
        """Delete builds that completed before *when* (epoch seconds), with their steps, logs and properties.

        Works in batches of short transactions so that a site with years of builds never holds
        the database for long; returns how many builds were deleted.  No event is published:
        nothing watches builds that old.
        """
        deleted = 0
        old = sa.select(t.c.id).where(t.c.complete_at < when).order_by(t.c.id).limit(batch)
        while True:

            async def work(txn: Any) -> int:
                ids = [row["id"] for row in await txn.fetch_all(old)]
                if ids:
                    await txn.execute(sa.delete(t).where(t.c.id.in_(ids)))
                return len(ids)

            count = await self.data.storage.transaction(work)
            deleted += count
            if count < batch:
                return deleted
