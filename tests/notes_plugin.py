"""A plugin defined only in the test suite: a resource type, a getter, an action and a table.

It proves that a plugin extends the data API and REST without any change to master/.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from master.data.base import Action, ActionCall, Endpoint, Field, Kind, Param, ResourceType, update_method
from master.data.errors import Conflict
from master.data.types import Boolean, Integer, NoneOk, String
from master.plugin import Plugin

metadata = sa.MetaData()
notes = sa.Table(
    "test_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("rank", sa.Integer),
)


async def _pin(call: ActionCall) -> dict[str, Any]:
    if call.entity["pinned"] == call.params["pinned"]:
        raise Conflict(f"note {call.entity['noteid']} is already {'pinned' if call.params['pinned'] else 'unpinned'}")
    await call.data.storage.execute(
        sa.update(notes).where(notes.c.id == call.args["noteid"]).values(pinned=call.params["pinned"])
    )
    entity = await call.data.get(("notes", str(call.args["noteid"])))
    await call.data.rtypes["notes"].produce_event(entity, "update")
    return entity


class Notes(ResourceType):
    """Notes: text with a pinned flag."""

    name = "note"
    plural = "notes"
    id_field = "noteid"
    event_paths = ("notes/:noteid",)

    def declare(self):
        fields = {
            "noteid": Field(Integer(), notes.c.id),
            "text": Field(String(), notes.c.text),
            "pinned": Field(Boolean(), notes.c.pinned),
            "rank": Field(NoneOk(Integer()), notes.c.rank),
        }
        pin = Action("pin", _pin, {"pinned": Param(Boolean(), required=True)}, doc="pin or unpin a note")
        endpoints = [Endpoint("/notes", Kind.COLLECTION), Endpoint("/notes/n:noteid", actions=[pin])]
        return notes, fields, endpoints, {}

    @update_method
    async def add_note(self, text: str, rank: int | None = None) -> int:
        rows = await self.data.storage.fetch_all(sa.insert(notes).values(text=text, rank=rank).returning(notes.c.id))
        noteid = rows[0]["id"]
        await self.produce_event(await self.get_entity(noteid), "new")
        return noteid


class NotesPlugin(Plugin):
    """The notes plugin."""

    name = "notes"

    def resource_types(self):
        return [Notes()]

    def metadata(self):
        return metadata
