"""Projects: what builders belong to, for grouping them in the UI and in the seed APIs."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from master.data.base import Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.resources.common import boolean_filter
from master.data.types import Boolean, Integer, NoneOk, String
from master.db import schema
from master.db.interfaces import ITransaction

t = schema.projects


def _active_column() -> Any:
    """A project is active when one of its builders is served by a running master."""
    b, bm, m = schema.builders, schema.builder_masters, schema.masters
    served = (
        sa.select(b.c.id)
        .join(bm, bm.c.builderid == b.c.id)
        .join(m, m.c.id == bm.c.masterid)
        .where(b.c.projectid == t.c.id, m.c.active.is_(True))
    )
    return served.exists()


def slugify(name: str) -> str:
    """A URL-friendly form of a project name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "project"


class Projects(ResourceType):
    """``/projects``: named groups of builders; ``active`` when a running master serves one of them."""

    name = "project"
    plural = "projects"
    id_field = "projectid"
    event_paths = ("projects/:projectid",)

    def declare(self) -> Declaration:
        """Fields and endpoints of projects."""
        fields = {
            "projectid": Field(Integer(), t.c.id, "the project's id"),
            "name": Field(String(), t.c.name, "the project's unique name"),
            "slug": Field(String(), t.c.slug, "the name in a form fit for URLs"),
            "description": Field(NoneOk(String()), t.c.description, "free text"),
            "description_format": Field(NoneOk(String()), t.c.description_format, "format of the description"),
            "description_html": Field(NoneOk(String()), t.c.description_html, "the description as HTML"),
            "active": Field(Boolean(), None, "whether a running master serves one of its builders",
                            filter_sql=boolean_filter(_active_column)),
        }
        endpoints = [
            Endpoint("/projects", Kind.COLLECTION),
            Endpoint("/projects/n:projectid"),
            Endpoint("/projects/i:projectname", arg_columns={"projectname": t.c.name}),
        ]
        return t, fields, endpoints, {"active": _load_active}

    @update_method
    async def find_project_id(self, name: str) -> int:
        """The id of project *name*, created (with a slug made from the name) if it does not exist."""

        async def work(txn: ITransaction) -> tuple[int, bool]:
            rows = await txn.fetch_all(sa.select(t.c.id).where(t.c.name == name))
            if rows:
                return rows[0]["id"], False
            inserted = await txn.fetch_all(sa.insert(t).values(name=name, slug=slugify(name)).returning(t.c.id))
            return inserted[0]["id"], True

        projectid, created = await self.data.storage.transaction(work)
        if created:
            await self.produce_event(await self.get_entity(projectid), "new")
        return projectid

    @update_method
    async def update_project_info(
        self,
        projectid: int,
        slug: str,
        description: str | None = None,
        description_format: str | None = None,
        description_html: str | None = None,
    ) -> None:
        """Set the slug and description of a project."""
        await self.data.storage.execute(
            sa.update(t)
            .where(t.c.id == projectid)
            .values(
                slug=slug,
                description=description,
                description_format=description_format,
                description_html=description_html,
            )
        )
        await self.produce_event(await self.get_entity(projectid), "update")


async def _load_active(data: Any, ids: list[Any], spec: Any) -> dict[Any, bool]:
    query = sa.select(t.c.id, _active_column().label("active")).where(t.c.id.in_(ids))
    rows = await data.storage.fetch_all(query)
    return {row["id"]: bool(row["active"]) for row in rows}
