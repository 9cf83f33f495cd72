"""Buildsets: one submission of source stamps to some builders, complete when all its requests are."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from master.data.base import Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.resources.common import dumps, now, properties_loader
from master.data.resources.livecache import LiveEntities
from master.data.resources.sourcestamps import find_or_insert, sourcestamps_loader, ss_values
from master.data.types import Boolean, DateTime, Integer, JsonObject, List, NoneOk, String
from master.db import schema
from master.db.interfaces import ITransaction, Prepared
from master.results import worst_result

t = schema.buildsets
PROPERTY = ("property",)


def _insert(table: sa.Table, *names: str, returning: Any = None) -> Prepared:
    """An INSERT of *names* into *table* (bound by name), built and compiled once."""

    def build() -> Any:
        statement = sa.insert(table).values({name: sa.bindparam(name) for name in names})
        return statement if returning is None else statement.returning(returning)

    return Prepared(("buildsets", "insert", table.name, names), build)


# prepared once: building statements with SQLAlchemy costs more than running them
_INSERT_BUILDSET = _insert(
    t, "external_idstring", "reason", "submitted_at", "complete", "parent_buildid", "parent_relationship",
    "rebuilt_buildid", "scheduler", returning=t.c.id,
)
_INSERT_PROPERTY = _insert(schema.buildset_properties, "buildsetid", "name", "value", "source")
_INSERT_SOURCESTAMP = _insert(schema.buildset_sourcestamps, "buildsetid", "sourcestampid")
_INSERT_REQUEST = _insert(
    schema.buildrequests, "buildsetid", "builderid", "priority", "complete", "submitted_at", "waited_for",
    returning=schema.buildrequests.c.id,
)
_REQUEST_RESULTS = Prepared(("buildsets", "request-results"), lambda: sa.select(
    schema.buildrequests.c.complete, schema.buildrequests.c.results).where(
    schema.buildrequests.c.buildsetid == sa.bindparam("bsid")))
_COMPLETE = Prepared(("buildsets", "complete"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("bsid"), t.c.complete == sa.false()).values(
    complete=True, complete_at=sa.bindparam("complete_at"), results=sa.bindparam("results")))

class Buildsets(ResourceType):
    """``/buildsets``: submissions of source stamps to builders; ``property=`` adds their properties."""

    name = "buildset"
    plural = "buildsets"
    counted_table = "buildsets"
    id_field = "bsid"
    event_paths = ("buildsets/:bsid",)

    def declare(self) -> Declaration:
        """Fields, endpoints and loaders of buildsets."""
        bss, ss = schema.buildset_sourcestamps, schema.sourcestamps
        fields = {
            "bsid": Field(Integer(), t.c.id, "the buildset's id"),
            "external_idstring": Field(NoneOk(String()), t.c.external_idstring, "an id given by whoever submitted it"),
            "reason": Field(NoneOk(String()), t.c.reason, "why it was submitted"),
            "submitted_at": Field(DateTime(), t.c.submitted_at, "when it was submitted"),
            "complete": Field(Boolean(), t.c.complete, "whether all its requests are complete"),
            "complete_at": Field(NoneOk(DateTime()), t.c.complete_at, "when it completed"),
            "results": Field(NoneOk(Integer()), t.c.results, "the worst result of its requests, null until complete"),
            "sourcestamps": Field(List(JsonObject()), None, "the source stamps to build"),
            "parent_buildid": Field(NoneOk(Integer()), t.c.parent_buildid, "the build that triggered it"),
            "parent_relationship": Field(NoneOk(String()), t.c.parent_relationship, "how it relates to its parent"),
            "rebuilt_buildid": Field(NoneOk(Integer()), t.c.rebuilt_buildid, "the build it rebuilds"),
            "properties": Field(JsonObject(), None, "{name: [value, source]} of the properties asked for"),
        }
        endpoints = [
            Endpoint("/buildsets", Kind.COLLECTION, options=PROPERTY),
            Endpoint("/buildsets/n:bsid", options=PROPERTY),
        ]
        loaders = {
            "sourcestamps": sourcestamps_loader(
                "buildsets", bss.c.buildsetid, bss.c.sourcestampid, bss.join(ss, ss.c.id == bss.c.sourcestampid),
                many=True,
            ),
            "properties": properties_loader("buildsets", schema.buildset_properties, "buildsetid"),
        }
        return t, fields, endpoints, loaders

    def attach(self, data: Any) -> None:
        """Remember the DataAPI; start the cache of the buildsets submitted here, until they complete."""
        super().attach(data)
        # only completion changes a buildset: its 'complete' event is its 'new' one with that change
        self.live = LiveEntities(self, (
            "bsid", "external_idstring", "reason", "submitted_at", "complete", "complete_at", "results",
            "sourcestamps", "parent_buildid", "parent_relationship", "rebuilt_buildid", "properties",
        ))

    @update_method
    async def add_buildset(
        self,
        scheduler: str | None,
        sourcestamps: Sequence[int | Mapping[str, Any]],
        reason: str | None,
        properties: Mapping[str, tuple[Any, str]],
        builderids: Sequence[int],
        external_idstring: str | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
        rebuilt_buildid: int | None = None,
        priority: int = 0,
        waited_for: bool = False,
    ) -> tuple[int, dict[int, int]]:
        """Submit a buildset with one build request per builder; return ``(bsid, {builderid: buildrequestid})``.

        *sourcestamps* are ids or dicts of source stamp fields (found or created);
        *properties* map names to ``(value, source)``.  Everything is written in one
        transaction; then the buildset's ``new`` is published, then each request's.
        """
        wanted = [entry if isinstance(entry, int) else ss_values(entry) for entry in sourcestamps]
        dialect = self.data.storage.dialect_name
        submitted_at = now()

        async def work(txn: ITransaction) -> tuple[int, dict[int, int], list[int]]:
            ssids: list[int] = []
            created: list[int] = []
            for entry in wanted:
                if isinstance(entry, int):
                    ssid = entry
                else:
                    ssid, new = await find_or_insert(txn, dialect, entry)
                    if new:
                        created.append(ssid)
                if ssid not in ssids:
                    ssids.append(ssid)
            rows = await txn.fetch_all(_INSERT_BUILDSET, {
                "external_idstring": external_idstring, "reason": reason, "submitted_at": submitted_at,
                "complete": False, "parent_buildid": parent_buildid, "parent_relationship": parent_relationship,
                "rebuilt_buildid": rebuilt_buildid, "scheduler": scheduler,
            })
            bsid = rows[0]["id"]
            for name, (value, source) in properties.items():
                await txn.execute(
                    _INSERT_PROPERTY, {"buildsetid": bsid, "name": name, "value": dumps(value), "source": source}
                )
            for ssid in ssids:
                await txn.execute(_INSERT_SOURCESTAMP, {"buildsetid": bsid, "sourcestampid": ssid})
            brids: dict[int, int] = {}
            for builderid in dict.fromkeys(builderids):
                rows = await txn.fetch_all(_INSERT_REQUEST, {
                    "buildsetid": bsid, "builderid": builderid, "priority": priority, "complete": False,
                    "submitted_at": submitted_at, "waited_for": waited_for,
                })
                brids[builderid] = rows[0]["id"]
            return bsid, brids, created

        bsid, brids, created = await self.data.storage.transaction(work)
        sourcestamps_type = self.data.rtypes["sourcestamps"]
        for ssid in created:
            await sourcestamps_type.produce_event(await sourcestamps_type.get_entity(ssid), "new")
        entity = await self.get_entity(bsid)
        if entity is not None:
            self.live.put(bsid, entity)
        await self.produce_event(entity, "new")
        requests = self.data.rtypes["buildrequests"]
        for brid in brids.values():
            await requests.produce_event(await requests.get_entity(brid), "new")
        return bsid, brids

    @update_method
    async def maybe_complete_buildset(self, bsid: int) -> bool:
        """Complete buildset *bsid* if all its requests are complete; return whether this call did.

        The buildset gets the worst result of its requests.  The UPDATE only matches a buildset
        not yet complete, so when several masters get here at once exactly one completes it
        (on PostgreSQL the others wait for its row lock, then find it complete).
        """
        async def work(txn: ITransaction) -> dict[str, Any] | None:
            rows = await txn.fetch_all(_REQUEST_RESULTS, {"bsid": bsid})
            if any(not row["complete"] for row in rows):
                return None
            values = {"complete_at": now(), "results": worst_result(row["results"] for row in rows)}
            changed = await txn.execute(_COMPLETE, {"bsid": bsid, **values})
            return values if changed == 1 else None

        completed = await self.data.storage.transaction(work)
        if completed is None:
            return False
        entity = self.live.finish(bsid, complete=True, **completed)
        await self.produce_event(entity if entity is not None else await self.get_entity(bsid), "complete")
        return True
