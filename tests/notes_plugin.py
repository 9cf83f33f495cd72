"""Notes: a plugin in 50 lines, and the template of one (README, "Plugins"); the tests serve it.

A table; a resource type with a getter, an update method and an action (``/api/v2/notes``,
``pin`` by JSON-RPC, events ``notes/<id>/new|update``); and an API of its own at ``/notes``
(``GET /notes/<id>``, ``POST /notes``), all through :mod:`master.sdk`, the one module of the
core a plugin imports.  Nothing in ``master/`` changes for it.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from twisted.web.iweb import IRequest

from master import sdk

metadata = sa.MetaData()
notes = sa.Table(
    "test_notes", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("text", sa.Text, nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()), sa.Column("rank", sa.Integer),
)


async def _pin(call: sdk.ActionCall) -> dict[str, Any]:
    if call.entity["pinned"] == call.params["pinned"]:  # a data API error: JSON-RPC and JsonApi answer it alike
        state = "pinned" if call.params["pinned"] else "unpinned"
        raise sdk.Conflict(f"note {call.entity['noteid']} is already {state}")
    await call.data.storage.execute(sa.update(notes).where(notes.c.id == call.args["noteid"])
                                    .values(pinned=call.params["pinned"]))
    entity = await call.data.get(("notes", str(call.args["noteid"])))
    await call.data.rtypes["notes"].produce_event(entity, "update")
    return entity


class Notes(sdk.ResourceType):
    """Notes: text with a pinned flag (the only SQL of the plugin is here)."""

    name, plural, id_field, event_paths = "note", "notes", "noteid", ("notes/:noteid",)

    def declare(self):
        fields = {"noteid": sdk.Field(sdk.Integer(), notes.c.id), "text": sdk.Field(sdk.String(), notes.c.text),
                  "pinned": sdk.Field(sdk.Boolean(), notes.c.pinned),
                  "rank": sdk.Field(sdk.NoneOk(sdk.Integer()), notes.c.rank)}
        pin = sdk.Action("pin", _pin, {"pinned": sdk.Param(sdk.Boolean(), required=True)}, doc="pin or unpin a note")
        endpoints = [sdk.Endpoint("/notes", sdk.Kind.COLLECTION), sdk.Endpoint("/notes/n:noteid", actions=[pin])]
        return notes, fields, endpoints, {}

    @sdk.update_method
    async def add_note(self, text: str, rank: int | None = None) -> int:
        rows = await self.data.storage.fetch_all(sa.insert(notes).values(text=text, rank=rank).returning(notes.c.id))
        await self.produce_event(await self.get_entity(rows[0]["id"]), "new")
        return rows[0]["id"]


class NotesApi(sdk.JsonApi):
    """``/notes``: errors are ``{"error": message}`` (override ``error_body`` for another shape)."""

    app = sdk.JsonApi.klein()

    @app.route("/<int:noteid>", methods=["GET"])
    @sdk.handler
    async def note(self, request: IRequest, noteid: int) -> Any:
        found = await self.data.get(("notes", str(noteid)))  # read rules apply: JsonApi scopes a GET to its caller
        if found is None:
            raise sdk.HttpError(404, f"no note {noteid}")
        return {"note": found}

    @app.route("/", methods=["POST"], strict_slashes=False)  # POST /notes
    @sdk.handler
    async def add(self, request: IRequest) -> sdk.Response:
        self.auth.authorize(self.auth.authenticate(request), "notes", "add")  # 401/403 by the master's rules
        body = sdk.read_json(request)  # the site's size cap (413), 400 unless a JSON object
        if not isinstance(body.get("text"), str) or not isinstance(body.get("rank", 0), int | None):
            raise sdk.HttpError(400, "give text (a string) and optionally rank (an integer)")
        noteid = await self.data.resource_type(Notes).add_note(body["text"], body.get("rank"))
        return sdk.Response({"noteid": noteid}, 201)


class NotesPlugin(sdk.Plugin):
    """The notes plugin: ``plugins=[NotesPlugin()]`` in master.cfg, or its dotted name."""

    name, tables = "notes", metadata

    def resource_types(self) -> list[sdk.ResourceType]:
        return [Notes()]

    def routes(self, ctx: sdk.PluginContext) -> dict[str, Any]:
        return {"notes": NotesApi(ctx)}
