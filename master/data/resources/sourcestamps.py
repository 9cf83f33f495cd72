"""Source stamps: a branch and revision of one codebase of a repository, shared by changes and buildsets."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from master.data.base import Declaration, Endpoint, Field, Kind, Loader, ResourceType, update_method
from master.data.resources.common import dumps, now
from master.data.types import DateTime, Integer, JsonObject, NoneOk, String
from master.db import schema
from master.db.compiler import dialect_insert
from master.db.interfaces import ITransaction, Prepared

t = schema.sourcestamps

SS_KEYS = ("branch", "revision", "repository", "codebase", "project")
"""The fields that identify a source stamp; equal fields mean the same row."""


def ss_hash(branch: str | None, revision: str | None, repository: str, codebase: str, project: str) -> str:
    """The unique key of a source stamp: sha1 of its identifying fields (None and "" stay distinct)."""
    return hashlib.sha1(dumps([branch, revision, repository, codebase, project]).encode()).hexdigest()


def ss_columns() -> list[ColumnElement[Any]]:
    """The columns of a source stamp entity, labelled by field name."""
    return [
        t.c.id.label("ssid"),
        t.c.branch,
        t.c.revision,
        t.c.repository,
        t.c.codebase,
        t.c.project,
        t.c.created_at,
    ]


def ss_entity(row: Mapping[str, Any]) -> dict[str, Any]:
    """A source stamp entity from a row selected with :func:`ss_columns`."""
    return {
        "ssid": row["ssid"],
        "branch": row["branch"],
        "revision": row["revision"],
        "repository": row["repository"],
        "codebase": row["codebase"],
        "project": row["project"],
        "created_at": row["created_at"],
        "patch": None,
    }


def ss_values(source: Mapping[str, Any]) -> dict[str, Any]:
    """The identifying fields of a source stamp given as a dict, with Buildbot's defaults."""
    unknown = set(source) - set(SS_KEYS) - {"patch", "ssid", "created_at"}
    if unknown:
        raise ValueError(f"unknown source stamp fields: {', '.join(sorted(unknown))}")
    if source.get("patch") is not None:
        raise ValueError("patches are not supported")
    return {
        "branch": source.get("branch"),
        "revision": source.get("revision"),
        "repository": source.get("repository") or "",
        "codebase": source.get("codebase") or "",
        "project": source.get("project") or "",
    }


async def find_or_insert(txn: ITransaction, dialect_name: str, values: Mapping[str, Any]) -> tuple[int, bool]:
    """The id of the source stamp with these identifying fields, inserted if missing; and whether it was.

    ``ON CONFLICT DO NOTHING`` instead of catching IntegrityError: on PostgreSQL a failed
    statement poisons the enclosing transaction (buildsets and changes create their source
    stamps inside theirs).  A concurrent insert of the same hash makes ours wait for it to
    commit and then do nothing, and the re-select (a new snapshot) sees its row.
    """
    digest = ss_hash(**{key: values[key] for key in SS_KEYS})
    select = sa.select(t.c.id).where(t.c.ss_hash == digest)
    # look first: most source stamps exist already, and on PostgreSQL even an insert that
    # does nothing uses up a sequence number
    rows = await txn.fetch_all(select)
    if rows:
        return rows[0]["id"], False
    insert = dialect_insert(dialect_name, t)
    statement = (
        insert.values(ss_hash=digest, created_at=now(), **{key: values[key] for key in SS_KEYS})
        .on_conflict_do_nothing(index_elements=[t.c.ss_hash])
        .returning(t.c.id)
    )
    rows = await txn.fetch_all(statement)
    if rows:
        return rows[0]["id"], True
    rows = await txn.fetch_all(select)
    return rows[0]["id"], False


def sourcestamps_loader(key: str, owner: ColumnElement[Any], ssid: ColumnElement[Any], join: Any, many: bool) -> Loader:
    """A loader of source stamp entities: a list per owner (*many*) or a single one.

    *join* is the FROM clause linking the owner's table to ``sourcestamps``; *owner* and
    *ssid* are its columns holding the owner's id and the source stamp id.
    """

    def build() -> sa.Select[Any]:
        return (
            sa.select(owner.label("owner"), *ss_columns())
            .select_from(join)
            .where(owner.in_(sa.bindparam("ids", expanding=True)))
            .order_by(owner, ssid)
        )

    prepared = Prepared(("ss-loader", key), build)

    async def load(data: Any, ids: list[Any], spec: Any) -> Mapping[Any, Any]:
        found: dict[Any, Any] = {entity_id: ([] if many else None) for entity_id in ids}
        for row in await data.storage.fetch_all(prepared, {"ids": ids}):
            if many:
                found[row["owner"]].append(ss_entity(row))
            else:
                found[row["owner"]] = ss_entity(row)
        return found

    return load


def _in_buildset(bind: Any) -> Any:
    bss = schema.buildset_sourcestamps
    return t.c.id.in_(sa.select(bss.c.sourcestampid).where(bss.c.buildsetid == bind))


class SourceStamps(ResourceType):
    """``/sourcestamps``: what was built, deduplicated by its identifying fields.

    ``patch`` is always null: there is no patch table (yet), so patched source stamps are refused.
    """

    name = "sourcestamp"
    plural = "sourcestamps"
    counted_table = "sourcestamps"
    id_field = "ssid"
    event_paths = ("sourcestamps/:ssid",)

    def declare(self) -> Declaration:
        """Fields and endpoints of source stamps."""
        fields = {
            "ssid": Field(Integer(), t.c.id, "the source stamp's id"),
            "branch": Field(NoneOk(String()), t.c.branch, "the branch, or null for the default one"),
            "revision": Field(NoneOk(String()), t.c.revision, "the revision, or null for the latest"),
            "repository": Field(String(), t.c.repository, "the repository URL"),
            "codebase": Field(String(), t.c.codebase, "the codebase, among those of a multi-repository build"),
            "project": Field(String(), t.c.project, "the project"),
            "created_at": Field(DateTime(), t.c.created_at, "when it was first seen"),
            # no patch table: always null (and not filterable, being a JSON object)
            "patch": Field(NoneOk(JsonObject()), sa.null(), "always null: patches are not supported"),
        }
        endpoints = [
            Endpoint("/sourcestamps", Kind.COLLECTION),
            Endpoint("/sourcestamps/n:ssid"),
            Endpoint("/buildsets/n:buildsetid/sourcestamps", Kind.COLLECTION, arg_columns={"buildsetid": _in_buildset}),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def find_sourcestamp_id(
        self,
        branch: str | None = None,
        revision: str | None = None,
        repository: str = "",
        codebase: str = "",
        project: str = "",
    ) -> int:
        """The id of the source stamp with these fields, created if it does not exist.

        Concurrent callers (other masters too) asking for the same fields get the same row.
        """
        values = ss_values(
            {"branch": branch, "revision": revision, "repository": repository, "codebase": codebase,
             "project": project}
        )
        ssid, created = await self.data.storage.transaction(
            lambda txn: find_or_insert(txn, self.data.storage.dialect_name, values)
        )
        if created:
            await self.produce_event(await self.get_entity(ssid), "new")
        return ssid
