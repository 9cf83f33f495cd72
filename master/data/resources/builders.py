"""Builders: named lists of steps that workers run; here, their identity, tags and masters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from master.data.base import Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.resources.common import list_loader
from master.data.types import Integer, List, NoneOk, String
from master.db import schema
from master.db.interfaces import ITransaction

b = schema.builders


def _tags_filter(op: str, values: tuple[Any, ...]) -> Any:
    """tags=x / tags__contains=x: builders having tag x (any of several)."""
    tagged = sa.select(schema.builder_tags.c.builderid).where(schema.builder_tags.c.tag.in_(list(values)))
    if op in ("ne", "notin"):
        return b.c.id.not_in(tagged)
    return b.c.id.in_(tagged)


class Builders(ResourceType):
    """``/builders``: every builder known to the database, configured now or before."""

    name = "builder"
    plural = "builders"
    id_field = "builderid"
    event_paths = ("builders/:builderid",)

    def declare(self) -> Declaration:
        """Fields, endpoints and loaders of builders."""
        fields = {
            "builderid": Field(Integer(), b.c.id, "the builder's id"),
            "name": Field(String(), b.c.name, "the builder's unique name"),
            "description": Field(NoneOk(String()), b.c.description, "free text"),
            "description_format": Field(NoneOk(String()), b.c.description_format, "format of the description"),
            "description_html": Field(NoneOk(String()), b.c.description_html, "the description as HTML"),
            "projectid": Field(NoneOk(Integer()), b.c.projectid, "the project this builder belongs to"),
            "tags": Field(List(String()), None, "tags for grouping builders", filter_sql=_tags_filter),
            "masterids": Field(List(Integer()), None, "ids of the masters where this builder is configured"),
        }
        in_master = lambda bind: b.c.id.in_(  # noqa: E731
            sa.select(schema.builder_masters.c.builderid).where(schema.builder_masters.c.masterid == bind)
        )
        on_worker = lambda bind: b.c.id.in_(  # noqa: E731
            sa.select(schema.configured_workers.c.builderid).where(schema.configured_workers.c.workerid == bind)
        )
        endpoints = [
            Endpoint("/builders", Kind.COLLECTION),
            Endpoint("/builders/n:builderid"),
            Endpoint("/builders/i:buildername", arg_columns={"buildername": b.c.name}),
            Endpoint("/masters/n:masterid/builders", Kind.COLLECTION, arg_columns={"masterid": in_master}),
            Endpoint("/masters/n:masterid/builders/n:builderid", arg_columns={"masterid": in_master}),
            Endpoint("/projects/n:projectid/builders", Kind.COLLECTION),
            # the builders a worker is configured for, on any master (its page lists them)
            Endpoint("/workers/n:workerid/builders", Kind.COLLECTION, arg_columns={"workerid": on_worker}),
        ]
        loaders = {
            "tags": list_loader("builder-tags", schema.builder_tags.c.builderid, schema.builder_tags.c.tag),
            "masterids": list_loader(
                "builder-masters", schema.builder_masters.c.builderid, schema.builder_masters.c.masterid
            ),
        }
        return b, fields, endpoints, loaders

    @update_method
    async def update_builder(
        self,
        name: str,
        description: str | None = None,
        tags: Sequence[str] = (),
        projectid: int | None = None,
        description_format: str | None = None,
        description_html: str | None = None,
    ) -> int:
        """Create the builder *name* or update its description, project and tags; return its id."""
        values = {
            "description": description,
            "description_format": description_format,
            "description_html": description_html,
            "projectid": projectid,
        }

        async def work(txn: ITransaction) -> tuple[int, bool]:
            rows = await txn.fetch_all(sa.select(b.c.id).where(b.c.name == name))
            if rows:
                builderid = rows[0]["id"]
                await txn.execute(sa.update(b).where(b.c.id == builderid).values(**values))
                created = False
            else:
                builderid = (await txn.fetch_all(sa.insert(b).values(name=name, **values).returning(b.c.id)))[0]["id"]
                created = True
            await txn.execute(sa.delete(schema.builder_tags).where(schema.builder_tags.c.builderid == builderid))
            for tag in sorted(set(tags)):
                await txn.execute(sa.insert(schema.builder_tags).values(builderid=builderid, tag=tag))
            return builderid, created

        builderid, created = await self.data.storage.transaction(work)
        await self.produce_event(await self.get_entity(builderid), "new" if created else "update")
        return builderid

    @update_method
    async def set_master_builders(self, masterid: int, builderids: list[int]) -> None:
        """Record that master *masterid* now serves exactly *builderids* (other masters untouched)."""
        table = schema.builder_masters
        wanted = set(builderids)

        async def work(txn: ITransaction) -> set[int]:
            rows = await txn.fetch_all(sa.select(table.c.builderid).where(table.c.masterid == masterid))
            present = {row["builderid"] for row in rows}
            gone = present - wanted
            if gone:
                await txn.execute(sa.delete(table).where(table.c.masterid == masterid, table.c.builderid.in_(gone)))
            for builderid in sorted(wanted - present):
                await txn.execute(sa.insert(table).values(builderid=builderid, masterid=masterid))
            return gone | (wanted - present)

        for builderid in sorted(await self.data.storage.transaction(work)):
            await self.produce_event(await self.get_entity(builderid), "update")
