"""Builds: one run of a builder's steps on a worker, for one build request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa

from master.data.base import Action, ActionCall, Declaration, Endpoint, Field, Kind, Param, ResourceType, update_method
from master.data.resources.common import boolean_filter, dumps, now, properties_loader
from master.data.resources.livecache import LiveEntities
from master.data.resources.properties import Properties
from master.data.types import Boolean, DateTime, Integer, JsonObject, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction, Prepared

t = schema.builds
PROPERTY = ("property",)
# the fields LiveEntities keeps up to date from what the update methods write
KNOWN_FIELDS = (
    "buildid", "number", "builderid", "buildrequestid", "workerid", "masterid", "started_at", "complete_at",
    "complete", "locks_duration_s", "state_string", "results", "properties",
)


def _builder_named(bind: Any) -> Any:
    return t.c.builderid == sa.select(schema.builders.c.id).where(schema.builders.c.name == bind).scalar_subquery()


def _for_change(bind: Any) -> Any:
    """Builds of the buildsets that include the change's source stamp (as Buildbot's changes/C/builds)."""
    bss, br = schema.buildset_sourcestamps, schema.buildrequests
    sourcestamp = sa.select(schema.changes.c.sourcestampid).where(schema.changes.c.id == bind).scalar_subquery()
    buildsets = sa.select(bss.c.buildsetid).where(bss.c.sourcestampid == sourcestamp)
    return t.c.buildrequestid.in_(sa.select(br.c.id).where(br.c.buildsetid.in_(buildsets)))


# prepared once: building a statement with SQLAlchemy costs more than running it
_LAST_NUMBER = Prepared(("builds", "last-number"), lambda: sa.select(
    sa.func.coalesce(sa.func.max(t.c.number), 0).label("last")).where(t.c.builderid == sa.bindparam("builderid")))
_INSERT_BUILD = Prepared(("builds", "insert"), lambda: sa.insert(t).values(
    {name: sa.bindparam(name) for name in (
        "number", "builderid", "buildrequestid", "workerid", "masterid", "started_at", "state_string")}
).returning(t.c.id))
_SET_STATE = Prepared(("builds", "state"), lambda: sa.update(t).where(t.c.id == sa.bindparam("buildid")).values(
    state_string=sa.bindparam("state_string")))
_FINISH = Prepared(("builds", "finish"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("buildid"), t.c.complete_at.is_(None)).values(
    complete_at=sa.bindparam("complete_at"), results=sa.bindparam("results")))
_DELETE_PROPERTIES = Prepared(("builds", "delete-properties"), lambda: sa.delete(schema.build_properties).where(
    schema.build_properties.c.buildid == sa.bindparam("buildid"),
    schema.build_properties.c.name.in_(sa.bindparam("names", expanding=True))))
_INSERT_PROPERTY = Prepared(("builds", "insert-property"), lambda: sa.insert(schema.build_properties).values(
    {name: sa.bindparam(name) for name in ("buildid", "name", "value", "source")}))
_FINISH_SAYING = Prepared(("builds", "finish-saying"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("buildid"), t.c.complete_at.is_(None)).values(
    complete_at=sa.bindparam("complete_at"), results=sa.bindparam("results"),
    state_string=sa.bindparam("state_string")))


async def _stop(call: ActionCall) -> None:
    # Buildbot answers null, also for a build that has finished already
    await call.data.controls().stop_build(call.target["buildid"], call.params["reason"])


async def _rebuild(call: ActionCall) -> list[Any]:
    rebuilt: list[Any] = await call.data.controls().rebuild(call.target["buildid"], call.params["reason"])
    return rebuilt


def _actions() -> list[Action]:
    reason = {"reason": Param(NoneOk(String()), doc="why")}
    return [
        Action("stop", _stop, reason, doc="stop the build: it ends as cancelled"),
        Action("rebuild", _rebuild, reason, doc="build the same buildset again on this builder; "
               "returns [buildsetid, {builderid: buildrequestid}]"),
    ]


PROPERTY_FILTER = "property."
"""``property.NAME=value`` filters builds by a property's value (``pr_number``, ``got_revision``...)."""


def _json_forms(text: str) -> set[str]:
    """The stored JSON texts a query value matches: the string itself, and the scalar it spells (``7``)."""
    forms = {dumps(text)}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return forms
    if not isinstance(value, dict | list):
        forms.add(dumps(value))
    return forms


def property_field(name: str) -> Field:
    """A filter-only field matching builds whose property *name* has one of the values given.

    ``eq``/``in``: the build has the property with one of the values; ``ne``/``notin``: it has not
    (a build without the property counts as "not equal", as null values do).  A value matches both
    as a string and as the number or boolean it spells, so ``property.pr_number=7`` finds ``7``.
    """
    bp = schema.build_properties

    def clause(op: str, values: tuple[Any, ...]) -> Any:
        texts = sorted({form for value in values for form in _json_forms(value)})
        has = sa.exists().where(bp.c.buildid == t.c.id, bp.c.name == sa.literal(name), bp.c.value.in_(texts))
        return has if op in ("eq", "in") else sa.not_(has)

    return Field(String(), None, f"the value of property {name!r} (a filter only)", filter_sql=clause,
                 operators=("eq", "ne", "in", "notin"))


class Builds(ResourceType):
    """``/builds``: builds, newest last; ``property=name`` (or ``*``) adds their properties;
    ``property.NAME=value`` selects the builds whose property NAME has that value.
    """

    name = "build"
    plural = "builds"
    counted_table = "builds"
    id_field = "buildid"
    event_paths = (
        "builders/:builderid/builds/:number",
        "builds/:buildid",
        "workers/:workerid/builds/:buildid",
    )

    def declare(self) -> Declaration:
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

    def field_for(self, name: str) -> Field | None:
        """Declared fields, and ``property.NAME`` filters."""
        if name.startswith(PROPERTY_FILTER) and len(name) > len(PROPERTY_FILTER):
            return property_field(name[len(PROPERTY_FILTER):])
        return super().field_for(name)

    def attach(self, data: Any) -> None:
        """Remember the DataAPI; start the cache of the builds this master runs."""
        super().attach(data)
        self.live = LiveEntities(self, KNOWN_FIELDS)

    async def _publish(self, buildid: int, entity: dict[str, Any] | None, event: str) -> None:
        """Publish *event* of the build: *entity* when known here, else the build read back."""
        await self.produce_event(entity if entity is not None else await self.get_entity(buildid), event)

    @update_method
    async def add_build(
        self, builderid: int, buildrequestid: int, workerid: int | None, masterid: int | None,
        state_string: str = "created",
        properties: Callable[[int, int], dict[str, tuple[Any, str]]] | None = None,
        then_state: str | None = None,
    ) -> tuple[int, int]:
        """Start a build of *builderid* for *buildrequestid*; return ``(buildid, number)``.

        With *properties*, a function of ``(buildid, number)`` giving the build's first properties
        ``{name: (value, source)}`` (it must only compute them: it may run on a database thread),
        and *then_state*, one transaction writes what ``add_build``, ``set_build_properties`` and
        ``set_build_state_string(then_state)`` would in a row, and the same events are published.
        """
        started_at = now()

        async def work(txn: ITransaction) -> tuple[int, int, dict[str, tuple[Any, str]]]:
            rows = await txn.fetch_all(_LAST_NUMBER, {"builderid": builderid})
            number = rows[0]["last"] + 1
            inserted = await txn.fetch_all(_INSERT_BUILD, {
                "number": number, "builderid": builderid, "buildrequestid": buildrequestid, "workerid": workerid,
                "masterid": masterid, "started_at": started_at, "state_string": state_string,
            })
            buildid = inserted[0]["id"]
            props = properties(buildid, number) if properties is not None else {}
            await self._write_properties(txn, buildid, props)
            if then_state is not None:
                await txn.execute(_SET_STATE, {"buildid": buildid, "state_string": then_state})
            return buildid, number, props

        for attempt in range(5):
            try:
                buildid, number, props = await self.data.storage.transaction(work)
                break
            except IntegrityError:
                # another master took the same number of this builder at the same moment
                if attempt == 4:
                    raise
        entity = self.live.put(buildid, {
            "buildid": buildid, "number": number, "builderid": builderid, "buildrequestid": buildrequestid,
            "workerid": workerid, "masterid": masterid, "started_at": started_at, "complete_at": None,
            "complete": False, "locks_duration_s": 0, "state_string": state_string, "results": None,
            "properties": {},
        })
        await self._publish(buildid, entity, "new")
        if props:
            await self._publish_properties(buildid, props)
        if then_state is not None:
            await self._publish(buildid, self.live.update(buildid, state_string=then_state), "update")
        return buildid, number

    @update_method
    async def set_build_state_string(self, buildid: int, state_string: str) -> None:
        """Say in words what the build is doing."""
        await self.data.storage.execute(_SET_STATE, {"buildid": buildid, "state_string": state_string})
        await self._publish(buildid, self.live.update(buildid, state_string=state_string), "update")

    @update_method
    async def set_build_properties(self, buildid: int, properties: dict[str, tuple[Any, str]]) -> None:
        """Set properties ``{name: (value, source)}`` of a build, replacing those of the same names."""
        if not properties:
            return
        await self.data.storage.transaction(lambda txn: self._write_properties(txn, buildid, properties))
        await self._publish_properties(buildid, properties)

    async def _write_properties(self, txn: ITransaction, buildid: int, properties: dict[str, tuple[Any, str]]) -> None:
        """Write properties of a build in transaction *txn* (see :meth:`set_build_properties`)."""
        rows = [
            {"buildid": buildid, "name": name, "value": dumps(value), "source": source}
            for name, (value, source) in properties.items()
        ]
        if not rows:
            return
        await txn.execute(_DELETE_PROPERTIES, {"buildid": buildid, "names": list(properties)})
        if self.data.storage.dialect_name == "sqlite":
            # statements of a SQLite transaction run in one go on its writer thread: a prepared
            # insert per row costs less than building a multi-row insert with SQLAlchemy
            for row in rows:
                await txn.execute(_INSERT_PROPERTY, row)
        else:  # one round trip to the server whatever the number of properties
            await txn.execute(sa.insert(schema.build_properties).values(rows))

    async def _publish_properties(self, buildid: int, properties: dict[str, tuple[Any, str]]) -> None:
        """The events of :meth:`set_build_properties`."""
        # the entity read without property=* carries no properties: setting them leaves it as it was
        await self._publish(buildid, self.live.update(buildid), "update")
        # the build page's Properties tab follows builds/B/properties/*
        properties_type = self.data.rtypes.get("properties")
        if isinstance(properties_type, Properties):
            await properties_type.produce_build_properties(
                buildid, {name: [value, source] for name, (value, source) in properties.items()}
            )

    @update_method
    async def finish_build(self, buildid: int, results: int, state_string: str | None = None) -> None:
        """Mark a build complete with *results*; with *state_string*, say that first.

        ``finish_build(b, r, s)`` publishes what ``set_build_state_string(b, s)`` then
        ``finish_build(b, r)`` would, with one write instead of two when the build is one this
        master runs.
        """
        if state_string is not None and not self.live.known(buildid):
            await self.set_build_state_string(buildid, state_string)
            state_string = None
        complete_at = now()
        params = {"buildid": buildid, "complete_at": complete_at, "results": results}
        if state_string is None:
            changed = await self.data.storage.execute(_FINISH, params)
        else:
            changed = await self.data.storage.execute(_FINISH_SAYING, {**params, "state_string": state_string})
            if changed:
                await self._publish(buildid, self.live.update(buildid, state_string=state_string), "update")
            else:  # finished already: the state string is still set, as set_build_state_string does
                self.live.forget(buildid)
                await self.set_build_state_string(buildid, state_string)
        if changed:
            entity = self.live.finish(buildid, complete_at=complete_at, complete=True, results=results)
        else:  # finished already (by another master, perhaps): publish what the row says
            self.live.forget(buildid)
            entity = None
        await self._publish(buildid, entity, "finished")


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

            async def work(txn: ITransaction) -> int:
                ids = [row["id"] for row in await txn.fetch_all(old)]
                if ids:
                    await txn.execute(sa.delete(t).where(t.c.id.in_(ids)))
                return len(ids)

            count = await self.data.storage.transaction(work)
            deleted += count
            if count < batch:
                return deleted
