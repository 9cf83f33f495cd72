"""Bileto's data API resource types: landing tickets and their comments, with the writes on them.

Every write goes through an update method here, which changes the tables in one
transaction and then publishes the change as events (``tickets/<id>/new|update`` and
``ticket_comments/<id>/new``), so the REST API at ``/api/v2`` and the websocket see what
``/v1`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from master.sdk import (
    Action,
    ActionCall,
    DataAPI,
    Endpoint,
    Field,
    Integer,
    InvalidParams,
    ITransaction,
    JsonObject,
    Kind,
    List,
    NonBlank,
    NotFound,
    Param,
    Prepared,
    ResourceType,
    String,
    update_method,
)
from plugins.bileto.tables import TEXT_FIELDS, comments, tickets

FIELD_DOCS: dict[str, str] = {
    "comments": "the comments on the ticket, oldest first (read only)",
    "date": "when the ticket was created, ISO 8601 in UTC with microseconds (read only)",
    "description": "what the landing is about, in a line",
    "dest": "the archive the packages are published to, when not the distribution's primary archive",
    "distribution": "the distribution the landing targets, e.g. ubuntu",
    "download_links": "links to the built packages",
    "jenkins": "the CI server building the silo",
    "landers": "who lands it (Launchpad names, comma separated)",
    "merge_proposals": "the merge proposals to land, one URL a line",
    "published_versions": "the package versions published by this landing",
    "qa_signoff": "the QA sign-off state, e.g. Ready for QA, QA Granted, Publish without QA",
    "request_id": "the ticket's number (read only; give it in a POST to update that ticket)",
    "search": "the searchable fields joined by newlines, kept current on every change (read only)",
    "series": "the distribution series, e.g. xenial, or dual",
    "siloname": "the silo (PPA) the landing builds in, e.g. ubuntu/landing-001",
    "sources": "source packages to sync or build without a merge proposal",
    "status": "where the landing is, e.g. Packages built, Landed, Abandoned, or a failure",
    "sync_request": "the silo or archive to copy packages from, for sync landings",
    "test_plan": "the test plan QA follows",
}
"""Each ticket field's documentation, as ``/v1/metadata`` and the API description show it."""

SEARCH_FIELDS = (
    "request_id",
    "description",
    "sources",
    "merge_proposals",
    "landers",
    "status",
    "siloname",
    "dest",
    "distribution",
    "series",
    "test_plan",
    "qa_signoff",
)
"""The fields ``search`` joins, in order.  The seed's example fixes the order of those it shows
filled; the three empty slots are taken to be sources, dest and test_plan (see the plugin's doc)."""

CLOSED_STATUSES = ("Landed", "Abandoned")
"""Statuses hidden unless asked for: tickets that need nothing more."""

DEFAULT_STATUS = "New"
"""The status of a ticket created without one."""


def now_iso() -> str:
    """The time now in UTC as Bileto writes it: ISO 8601, naive, always with microseconds."""
    # isoformat() drops ".000000" when the microseconds are 0; Bileto's dates always have them
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def search_text(ticket: Mapping[str, Any]) -> str:
    """The ``search`` value of a ticket: its searchable fields joined by newlines."""
    return "\n".join(str(ticket.get(name, "") or "") for name in SEARCH_FIELDS)


def _comment_entity(row: Mapping[str, Any]) -> dict[str, Any]:
    # the seed's comments list their keys in alphabetical order
    return {"author": row["author"], "date": row["date"], "id": row["id"], "request_id": row["request_id"],
            "text": row["text"]}


_COMMENTS_OF_TICKETS = Prepared(
    ("bileto", "comments-of-tickets"),
    lambda: sa.select(comments.c.id, comments.c.request_id, comments.c.author, comments.c.date, comments.c.text)
    .where(comments.c.request_id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(comments.c.request_id, comments.c.id),
)


async def _load_comments(data: DataAPI, ids: list[int], spec: Any) -> dict[int, list[dict[str, Any]]]:
    """Fill ``comments`` for a page of tickets in one query."""
    found: dict[int, list[dict[str, Any]]] = {ticket_id: [] for ticket_id in ids}
    for row in await data.storage.fetch_all(_COMMENTS_OF_TICKETS, {"ids": ids}):
        found[row["request_id"]].append(_comment_entity(row))
    return found


class NullIsEmpty(String):
    """A text field of a POSTed ticket: a string, or null meaning "" (every empty field is "")."""

    openapi_type = {"type": "string", "nullable": True}

    def from_json(self, value: Any) -> str:
        """Accept a string; null becomes ""."""
        return "" if value is None else super().from_json(value)


def _author(call: ActionCall) -> str:
    """Who makes a change: the ``author`` given, else the ci-master user calling."""
    author = call.params.get("author")
    if author:
        return author
    if call.user is not None:
        return call.user.name
    raise InvalidParams({"author": "required: name the user or bot making the change"})


async def _create(call: ActionCall) -> dict[str, Any]:
    values = {name: value for name, value in call.params.items() if name in TEXT_FIELDS and value is not None}
    request_id = await call.data.resource_type(Tickets).create_ticket(values)
    return await call.data.get(("tickets", str(request_id)))


async def _update(call: ActionCall) -> dict[str, Any]:
    author = _author(call)
    changes = {name: value for name, value in call.params.items() if name in TEXT_FIELDS and value is not None}
    request_id = call.args["request_id"]
    await call.data.resource_type(Tickets).update_ticket(request_id, changes, author)
    return await call.data.get(("tickets", str(request_id)))


async def _comment(call: ActionCall) -> dict[str, Any]:
    author = _author(call)
    text = call.params["text"]  # not blank: NonBlank checked it
    commentid = await call.data.resource_type(TicketComments).add_ticket_comment(call.args["request_id"], author, text)
    return await call.data.get(("ticket_comments", str(commentid)))


def _field_params(needs_author: bool) -> dict[str, Param]:
    params = {name: Param(NullIsEmpty(), doc=FIELD_DOCS[name]) for name in TEXT_FIELDS}
    params["author"] = Param(String(), doc="who makes the change (default: the user calling)",
                             anonymous_required=needs_author)
    return params


class Tickets(ResourceType):
    """``/tickets``: Bileto's landing tickets ("requests"), each with its comments."""

    name = "ticket"
    plural = "tickets"
    id_field = "request_id"
    event_paths = ("tickets/:request_id",)

    def declare(self):
        """Fields in the seed's (alphabetical) order, endpoints, actions and the comments loader."""
        t = tickets
        columns = {"date": t.c.date, "request_id": t.c.id, "search": t.c.search}
        columns.update({name: t.c[name] for name in TEXT_FIELDS})
        fields: dict[str, Field] = {}
        for name in sorted(FIELD_DOCS):
            if name == "comments":
                fields[name] = Field(List(JsonObject()), None, FIELD_DOCS[name])
            elif name == "request_id":
                fields[name] = Field(Integer(), t.c.id, FIELD_DOCS[name])
            else:
                fields[name] = Field(String(), columns[name], FIELD_DOCS[name])
        create = Action("create", _create, _field_params(False), doc="create a ticket; returns it")
        update = Action(
            "update", _update, _field_params(True),
            doc="change fields of the ticket, adding a comment per changed field; returns the ticket",
        )
        comment = Action(
            "comment", _comment,
            {"text": Param(NonBlank(), required=True, doc="the comment"),
             "author": Param(String(), doc="who comments (default: the user calling)", anonymous_required=True)},
            doc="add a comment to the ticket; returns the comment",
        )
        endpoints = [
            Endpoint("/tickets", Kind.COLLECTION, actions=[create], doc="every ticket"),
            Endpoint("/tickets/n:request_id", actions=[update, comment], doc="one ticket"),
        ]
        return t, fields, endpoints, {"comments": _load_comments}

    @update_method
    async def create_ticket(self, values: Mapping[str, str]) -> int:
        """Create a ticket from its text fields (missing ones are "", status "New"); return its id."""
        row = {name: values.get(name, "") for name in TEXT_FIELDS}
        row["status"] = row["status"] or DEFAULT_STATUS
        row["date"] = now_iso()

        async def insert(txn: ITransaction) -> int:
            created = await txn.fetch_all(sa.insert(tickets).values(**row).returning(tickets.c.id))
            request_id = created[0]["id"]
            # search includes the id, known only now
            await txn.execute(
                sa.update(tickets).where(tickets.c.id == request_id)
                .values(search=search_text({**row, "request_id": request_id}))
            )
            return request_id

        request_id = await self.data.storage.transaction(insert)
        await self.produce_event(await self.get_entity(request_id), "new")
        return request_id

    @update_method
    async def update_ticket(self, request_id: int, changes: Mapping[str, str], author: str) -> list[int]:
        """Change text fields of ticket *request_id*; each field whose value changes gets a comment
        "<field> changed from <old> to <new>" by *author*.  Return the new comments' ids (none when
        nothing changed).  Raises NotFound for an unknown ticket.
        """
        unknown = set(changes) - set(TEXT_FIELDS)
        if unknown:
            raise InvalidParams({name: "not a writable ticket field" for name in unknown})

        async def change(txn: ITransaction) -> list[int]:
            # FOR UPDATE on PostgreSQL (SQLite's write transactions are serial already), so two
            # updates at once each compare against what the other wrote
            found = await txn.fetch_all(sa.select(tickets).where(tickets.c.id == request_id).with_for_update())
            if not found:
                raise NotFound(f"no ticket {request_id}")
            old = {**found[0], "request_id": request_id}
            changed = {name: value for name, value in changes.items() if old[name] != value}
            if not changed:
                return []
            merged = {**old, **changed}
            await txn.execute(
                sa.update(tickets).where(tickets.c.id == request_id).values(**changed, search=search_text(merged))
            )
            date = now_iso()
            ids = []
            for name in TEXT_FIELDS:  # the comments follow the field order, whatever the body's
                if name in changed:
                    text = f"{name} changed from {_shown(old[name])} to {_shown(changed[name])}"
                    added = await txn.fetch_all(
                        sa.insert(comments)
                        .values(request_id=request_id, author=author, date=date, text=text)
                        .returning(comments.c.id)
                    )
                    ids.append(added[0]["id"])
            return ids

        commentids = await self.data.storage.transaction(change)
        if commentids:
            await self.produce_event(await self.get_entity(request_id), "update")
            commentrtype = self.data.rtypes["ticket_comments"]
            for commentid in commentids:
                await commentrtype.produce_event(await commentrtype.get_entity(commentid), "new")
        return commentids


def _shown(value: str) -> str:
    """A field value as an automatic comment shows it; an empty one is named, not left blank."""
    return value if value else "(empty)"


class TicketComments(ResourceType):
    """``/ticket_comments``: comments on tickets, by people, bots and the automatic change notes."""

    name = "ticket_comment"
    plural = "ticket_comments"
    id_field = "id"
    event_paths = ("ticket_comments/:id", "tickets/:request_id/comments/:id")

    def declare(self):
        """Fields in the seed's order and the endpoints (all comments, one, a ticket's)."""
        c = comments
        fields = {
            "author": Field(String(), c.c.author, "who wrote the comment (user or bot)"),
            "date": Field(String(), c.c.date, "when, ISO 8601 in UTC with microseconds"),
            "id": Field(Integer(), c.c.id, "the comment's number"),
            "request_id": Field(Integer(), c.c.request_id, "the ticket commented on"),
            "text": Field(String(), c.c.text, "the comment"),
        }
        endpoints = [
            Endpoint("/ticket_comments", Kind.COLLECTION, doc="every comment"),
            Endpoint("/ticket_comments/n:id", doc="one comment"),
            Endpoint("/tickets/n:request_id/comments", Kind.COLLECTION, doc="the comments on a ticket"),
        ]
        return c, fields, endpoints, {}

    @update_method
    async def add_ticket_comment(self, request_id: int, author: str, text: str) -> int:
        """Add a comment by *author* to ticket *request_id*; return its id.  NotFound for an unknown ticket."""

        async def insert(txn: ITransaction) -> int:
            exists = await txn.fetch_all(sa.select(tickets.c.id).where(tickets.c.id == request_id))
            if not exists:
                raise NotFound(f"no ticket {request_id}")
            added = await txn.fetch_all(
                sa.insert(comments)
                .values(request_id=request_id, author=author, date=now_iso(), text=text)
                .returning(comments.c.id)
            )
            return added[0]["id"]

        commentid = await self.data.storage.transaction(insert)
        await self.produce_event(await self.get_entity(commentid), "new")
        # the ticket's comments changed too
        ticketrtype = self.data.rtypes["tickets"]
        await ticketrtype.produce_event(await ticketrtype.get_entity(request_id), "update")
        return commentid
