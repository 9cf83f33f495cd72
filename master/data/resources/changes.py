"""Changes: commits reported by change sources, each pointing at the source stamp it describes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from master.data.base import Action, ActionCall, Declaration, Endpoint, Field, Kind, Param, ResourceType, update_method
from master.data.resources.common import dumps, list_loader, now, properties_loader
from master.data.resources.sourcestamps import find_or_insert, sourcestamps_loader, ss_values
from master.data.types import DateTime, Integer, JsonObject, List, NonBlank, NoneOk, String
from master.db import schema
from master.db.interfaces import ITransaction

t = schema.changes


class _OneAsList(List):
    """A nullable id column shown as a list: [] or [id] (the API has a list of parents, we keep one)."""

    def from_db(self, value: Any) -> list[Any]:
        """None is no parent."""
        return [] if value is None else [value]


def _sourcestamps_of_builds(*conditions: Any) -> Any:
    """Ids of the source stamps of the buildsets of the builds matching *conditions*."""
    b, br, bss = schema.builds, schema.buildrequests, schema.buildset_sourcestamps
    return (
        sa.select(bss.c.sourcestampid)
        .select_from(b.join(br, br.c.id == b.c.buildrequestid).join(bss, bss.c.buildsetid == br.c.buildsetid))
        .where(*conditions)
    )


def _of_build(bind: Any) -> Any:
    return t.c.sourcestampid.in_(_sourcestamps_of_builds(schema.builds.c.id == bind))


def _of_builder_build(bind: Any) -> Any:
    # the builder and the number name one build together: this condition binds both and
    # the number's own condition is always true
    b = schema.builds
    number: sa.BindParameter[Any] = sa.bindparam("arg_number")
    return t.c.sourcestampid.in_(_sourcestamps_of_builds(b.c.builderid == bind, b.c.number == number))


async def _add(call: ActionCall) -> dict[str, int]:
    """The ``add`` action: record a change sent by a script (``ci-master sendchange``)."""
    params = dict(call.params)  # the author is not blank: NonBlank checked it
    # optional lists and objects default to None in the declaration (a shared [] would be mutable)
    params["files"] = params["files"] or []
    return {"changeid": await call.data.updates.add_change(**params)}


_OPTIONAL_TEXT = NoneOk(String())
ADD = Action(
    "add",
    _add,
    {
        "author": Param(NonBlank(), required=True, doc="who wrote it, e.g. 'Jane <jane@example.org>'"),
        "committer": Param(_OPTIONAL_TEXT, doc="who committed it"),
        "comments": Param(String(), default="", doc="the commit message"),
        "files": Param(NoneOk(List(String())), doc="the files it touches"),
        "branch": Param(_OPTIONAL_TEXT, doc="the branch"),
        "revision": Param(_OPTIONAL_TEXT, doc="the revision"),
        "repository": Param(String(), default="", doc="the repository URL"),
        "project": Param(String(), default="", doc="the project"),
        "codebase": Param(String(), default="", doc="the codebase"),
        "category": Param(_OPTIONAL_TEXT, doc="a free category"),
        "revlink": Param(_OPTIONAL_TEXT, doc="a link to a web view of the revision"),
        "when_timestamp": Param(NoneOk(DateTime()), doc="when it was made (seconds since the epoch; default now)"),
        "properties": Param(NoneOk(JsonObject()), doc="{name: value}, recorded with source 'Change'"),
    },
    doc="record a change (as a change hook does); returns {changeid}",
)


class Changes(ResourceType):
    """``/changes``: commits, with their files, properties and source stamp."""

    name = "change"
    plural = "changes"
    counted_table = "changes"
    id_field = "changeid"
    event_paths = ("changes/:changeid",)

    def declare(self) -> Declaration:
        """Fields, endpoints and loaders of changes."""
        ss = schema.sourcestamps
        fields = {
            "changeid": Field(Integer(), t.c.id, "the change's id"),
            "author": Field(String(), t.c.author, "who wrote it"),
            "committer": Field(NoneOk(String()), t.c.committer, "who committed it"),
            "comments": Field(String(), t.c.comments, "the commit message"),
            "branch": Field(NoneOk(String()), t.c.branch, "the branch it is on"),
            "revision": Field(NoneOk(String()), t.c.revision, "its revision"),
            "revlink": Field(NoneOk(String()), t.c.revlink, "a link to a web view of the revision"),
            "when_timestamp": Field(DateTime(), t.c.when_timestamp, "when it was made"),
            "category": Field(NoneOk(String()), t.c.category, "a free category given by the change source"),
            "repository": Field(String(), t.c.repository, "the repository URL"),
            "codebase": Field(String(), t.c.codebase, "the codebase"),
            "project": Field(String(), t.c.project, "the project"),
            "sourcestamp": Field(JsonObject(), None, "the source stamp it describes"),
            "files": Field(List(String()), None, "the files it touches"),
            "properties": Field(JsonObject(), None, "{name: [value, source]}"),
            "parent_changeids": Field(
                _OneAsList(Integer()), t.c.parent_changeid, "the previous change of the same branch and codebase"
            ),
        }
        endpoints = [
            Endpoint("/changes", Kind.COLLECTION, actions=[ADD]),
            Endpoint("/changes/n:changeid"),
            Endpoint("/builds/n:buildid/changes", Kind.COLLECTION, arg_columns={"buildid": _of_build}),
            Endpoint(
                "/builders/n:builderid/builds/n:number/changes",
                Kind.COLLECTION,
                arg_columns={"builderid": _of_builder_build, "number": lambda bind: sa.true()},
            ),
            Endpoint("/sourcestamps/n:ssid/changes", Kind.COLLECTION, arg_columns={"ssid": t.c.sourcestampid}),
        ]
        loaders = {
            "sourcestamp": sourcestamps_loader(
                "changes", t.c.id, ss.c.id, t.join(ss, ss.c.id == t.c.sourcestampid), many=False
            ),
            "files": list_loader("change-files", schema.change_files.c.changeid, schema.change_files.c.filename),
            "properties": properties_loader("changes", schema.change_properties, "changeid", option=None),
        }
        return t, fields, endpoints, loaders

    @update_method
    async def add_change(
        self,
        author: str,
        files: list[str],
        comments: str,
        revision: str | None = None,
        when_timestamp: int | None = None,
        branch: str | None = None,
        category: str | None = None,
        revlink: str | None = None,
        properties: dict[str, Any] | None = None,
        repository: str = "",
        codebase: str = "",
        project: str = "",
        committer: str | None = None,
    ) -> int:
        """Record a change and its source stamp; return its id.

        *properties* map names to values (their source is recorded as ``Change``).  The
        parent is the latest change of the same branch, repository, codebase and project.
        """
        values = ss_values(
            {"branch": branch, "revision": revision, "repository": repository, "codebase": codebase,
             "project": project}
        )
        when = now() if when_timestamp is None else int(when_timestamp)
        dialect = self.data.storage.dialect_name

        async def work(txn: ITransaction) -> tuple[int, int, bool]:
            ssid, created = await find_or_insert(txn, dialect, values)
            parent = await txn.fetch_all(
                sa.select(sa.func.max(t.c.id).label("id")).where(
                    t.c.branch.is_not_distinct_from(values["branch"]),
                    t.c.repository == values["repository"],
                    t.c.codebase == values["codebase"],
                    t.c.project == values["project"],
                )
            )
            rows = await txn.fetch_all(
                sa.insert(t)
                .values(
                    author=author, committer=committer, comments=comments, when_timestamp=when,
                    category=category, revlink=revlink, sourcestampid=ssid, parent_changeid=parent[0]["id"],
                    **values,
                )
                .returning(t.c.id)
            )
            changeid = rows[0]["id"]
            for filename in dict.fromkeys(files):  # a file named twice is touched once
                await txn.execute(sa.insert(schema.change_files).values(changeid=changeid, filename=filename))
            for name, value in (properties or {}).items():
                await txn.execute(
                    sa.insert(schema.change_properties).values(
                        changeid=changeid, name=name, value=dumps(value), source="Change"
                    )
                )
            return changeid, ssid, created

        changeid, ssid, created = await self.data.storage.transaction(work)
        if created:
            sourcestamps = self.data.rtypes["sourcestamps"]
            await sourcestamps.produce_event(await sourcestamps.get_entity(ssid), "new")
        await self.produce_event(await self.get_entity(changeid), "new")
        return changeid
