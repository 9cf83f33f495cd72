"""The DCI resource types: their fields and getters in the data API, and the update methods writing them.

Every type is registered under a ``dci_`` name (``/api/v2/dci_jobs``...), so DCI data is read
like any other through the data API, and every change is an event (``dci_jobs/<id>/update``
when a job's status changes).  The routes (:mod:`plugins.dci.routes`) reads through
``data.get`` and writes only through the ``dci_*`` update methods defined here.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from master.sdk import (
    Boolean,
    DataAPI,
    Endpoint,
    Field,
    FieldType,
    Integer,
    IntegrityError,
    JsonObject,
    Kind,
    List,
    NoneOk,
    NotFound,
    RawContent,
    ResourceType,
    String,
    update_method,
)
from plugins.dci import tables
from plugins.dci.errors import DciError, not_found

JOB_STATUSES = ("new", "pre-run", "running", "post-run", "success", "failure", "killed", "error")
"""Every status a job may have; any may follow any other (the DCI server checks no transition)."""

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def now_iso() -> str:
    """The time now, as DCI writes times: ISO 8601 UTC with microseconds and no zone."""
    return datetime.now(UTC).strftime(TIME_FORMAT)


def new_etag() -> str:
    """A fresh etag: the md5 of a random UUID, as the DCI server makes them."""
    return hashlib.md5(uuid.uuid4().bytes, usedforsecurity=False).hexdigest()


def new_id() -> str:
    """A new entity id (a random UUID)."""
    return str(uuid.uuid4())


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _escape_like(text: str) -> str:
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


def text_filter(column: ColumnElement) -> Callable[[str, tuple[Any, ...]], ColumnElement]:
    """The ``filter_sql`` of a text field: comparisons ignore case, a None value means IS NULL.

    DCI's ``where=name:rhel-9.4`` matches ``RHEL-9.4``, and ``name:rhel*`` is a substring match.
    """

    def one(value: Any) -> ColumnElement:
        return column.is_(None) if value is None else sa.func.lower(column) == str(value).lower()

    def make(op: str, values: tuple[Any, ...]) -> ColumnElement:
        if op == "contains":
            return sa.or_(*(sa.func.lower(column).like(f"%{_escape_like(v.lower())}%", escape="/") for v in values))
        if op in ("eq", "in"):
            return sa.or_(*(one(v) for v in values))
        if op in ("ne", "notin"):
            return sa.and_(*(sa.not_(one(v)) if v is not None else column.is_not(None) for v in values))
        compare = {"lt": column.__lt__, "le": column.__le__, "gt": column.__gt__, "ge": column.__ge__}[op]
        return compare(values[0])

    return make


def id_filter(column: ColumnElement) -> Callable[[str, tuple[Any, ...]], ColumnElement]:
    """The ``filter_sql`` of a UUID field: ids are stored lower-case, so the value is lowered, not the column.

    Leaving the column bare keeps its index usable.  A None value means IS NULL.
    """

    def one(value: Any) -> ColumnElement:
        return column.is_(None) if value is None else column == str(value).lower()

    def make(op: str, values: tuple[Any, ...]) -> ColumnElement:
        if op == "contains":
            return sa.or_(*(column.like(f"%{_escape_like(v.lower())}%", escape="/") for v in values))
        if op in ("ne", "notin"):
            return sa.and_(*(sa.not_(one(v)) if v is not None else column.is_not(None) for v in values))
        return sa.or_(*(one(v) for v in values))

    return make


class Number(FieldType):
    """A JSON number (job key-values)."""

    openapi_type = {"type": "number"}

    def from_string(self, text: str) -> float:
        """Parse a decimal number."""
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None

    def from_json(self, value: Any) -> float:
        """Accept an integer or a float, not a boolean."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        return float(value)


def _text(column: ColumnElement, doc: str, nullable: bool = False) -> Field:
    kind = NoneOk(String()) if nullable else String()
    return Field(kind, column, doc, filter_sql=text_filter(column))


def _uuid(column: ColumnElement, doc: str, nullable: bool = False) -> Field:
    kind = NoneOk(String()) if nullable else String()
    return Field(kind, column, doc, filter_sql=id_filter(column))


def _common_fields(table: sa.Table, singular: str) -> dict[str, Field]:
    return {
        "id": _uuid(table.c.id, f"the {singular}'s id (a UUID)"),
        "etag": Field(String(), table.c.etag, "changes with every update; send it back in If-Match"),
        "state": _text(table.c.state, "active, inactive or archived"),
        "created_at": Field(String(), table.c.created_at, "ISO 8601 UTC, microseconds"),
        "updated_at": Field(String(), table.c.updated_at, "ISO 8601 UTC, microseconds"),
    }


class _DciType(ResourceType):
    """What every DCI type shares: a UUID ``id`` field."""

    id_field = "id"

    async def written(self, entity_id: str) -> dict[str, Any]:
        """The entity this type has just written and committed (read back with every field)."""
        entity = await self.get_entity(entity_id)
        if entity is None:  # deleted by another request between the commit and this read
            raise DciError(404, f"{self.name.removeprefix('dci_')} {entity_id} was deleted meanwhile")
        return entity


class Teams(_DciType):
    """``/dci_teams``: the groups that own remotecis, feeders and jobs."""

    name = "dci_team"
    plural = "dci_teams"
    event_paths = ("dci_teams/:id",)

    def declare(self):
        """Fields and getters of teams."""
        t = tables.teams
        fields = {
            **_common_fields(t, "team"),
            "name": _text(t.c.name, "the team's unique name"),
            "has_pre_release_access": Field(Boolean(), t.c.has_pre_release_access, "sees pre-release topics"),
        }
        return t, fields, [Endpoint("/dci_teams", Kind.COLLECTION), Endpoint("/dci_teams/s:id")], {}

    @update_method
    async def dci_find_or_create_team(self, name: str) -> dict[str, Any]:
        """The team named *name*, created if it does not exist."""
        t = tables.teams

        async def work(txn: Any) -> tuple[str, bool]:
            rows = await txn.fetch_all(sa.select(t.c.id).where(t.c.name == name))
            if rows:
                return rows[0]["id"], False
            team_id, stamp = new_id(), now_iso()
            await txn.execute(
                sa.insert(t).values(id=team_id, name=name, etag=new_etag(), created_at=stamp, updated_at=stamp)
            )
            return team_id, True

        team_id, created = await self.data.storage.transaction(work)
        team = await self.written(team_id)
        if created:
            await self.produce_event(team, "new")
        return team


class _Clients(_DciType):
    """Remotecis and feeders: named HMAC clients of a team, each with an API secret."""

    table: sa.Table

    def declare(self):
        """Fields and getters; the API secret is never a field."""
        t = self.table
        fields = {
            **_common_fields(t, self.name),
            "name": _text(t.c.name, "the name, unique in its team"),
            "team_id": _uuid(t.c.team_id, "the team it belongs to"),
            "data": Field(JsonObject(), t.c.data, "free data"),
        }
        return t, fields, [Endpoint(f"/{self.plural}", Kind.COLLECTION), Endpoint(f"/{self.plural}/s:id")], {}

    async def _create(self, name: str, team_id: str) -> tuple[dict[str, Any], str]:
        client_id, stamp, secret = new_id(), now_iso(), secrets.token_hex(32)
        try:
            await self.data.storage.execute(
                sa.insert(self.table).values(
                    id=client_id, name=name, team_id=team_id, api_secret=secret,
                    etag=new_etag(), created_at=stamp, updated_at=stamp,
                )
            )
        except IntegrityError:
            raise DciError(409, f"a {self.name.removeprefix('dci_')} named {name!r} exists in this team") from None
        entity = await self.written(client_id)
        await self.produce_event(entity, "new")
        return entity, secret

    async def credentials(self, client_id: str) -> tuple[dict[str, Any], str] | None:
        """The client with id *client_id* and its API secret, or None (the signature check needs the secret).

        The secret is stored as it is: DCI's HMAC v2 derives its signing keys from the secret
        itself, so no hash of it could check a signature (see the README, "Hardening").
        """
        try:
            uuid.UUID(client_id)
        except ValueError:
            return None
        entity = await self.get_entity(client_id.lower())
        if entity is None:
            return None
        rows = await self.data.storage.fetch_all(
            sa.select(self.table.c.api_secret).where(self.table.c.id == entity["id"])
        )
        return entity, rows[0]["api_secret"]


class Remotecis(_Clients):
    """``/dci_remotecis``: a partner lab's CI, which creates jobs and reports on them."""

    name = "dci_remoteci"
    plural = "dci_remotecis"
    event_paths = ("dci_remotecis/:id",)
    table = tables.remotecis

    @update_method
    async def dci_create_remoteci(self, name: str, team_id: str) -> tuple[dict[str, Any], str]:
        """Add remoteci *name* to team *team_id*; return it and its API secret (shown this once)."""
        return await self._create(name, team_id)


class Feeders(_Clients):
    """``/dci_feeders``: a client that publishes topics' components."""

    name = "dci_feeder"
    plural = "dci_feeders"
    event_paths = ("dci_feeders/:id",)
    table = tables.feeders

    @update_method
    async def dci_create_feeder(self, name: str, team_id: str) -> tuple[dict[str, Any], str]:
        """Add feeder *name* to team *team_id*; return it and its API secret."""
        return await self._create(name, team_id)


class Topics(_DciType):
    """``/dci_topics``: a product release line (``RHEL-9.4``) and the component types its jobs test."""

    name = "dci_topic"
    plural = "dci_topics"
    event_paths = ("dci_topics/:id",)

    def declare(self):
        """Fields and getters of topics."""
        t = tables.topics
        fields = {
            **_common_fields(t, "topic"),
            "name": _text(t.c.name, "the topic's unique name"),
            "component_types": Field(List(String()), t.c.component_types, "one component of each per job"),
            "data": Field(JsonObject(), t.c.data, "free data"),
            "export_control": Field(Boolean(), t.c.export_control, "export controlled"),
            "next_topic_id": _uuid(t.c.next_topic_id, "the topic that follows", nullable=True),
            "product_id": _uuid(t.c.product_id, "the product", nullable=True),
        }
        return t, fields, [Endpoint("/dci_topics", Kind.COLLECTION), Endpoint("/dci_topics/s:id")], {}

    @update_method
    async def dci_create_topic(
        self,
        name: str,
        component_types: list[str],
        product_id: str | None = None,
        export_control: bool = False,
        data: dict[str, Any] | None = None,
        state: str = "active",
        next_topic_id: str | None = None,
    ) -> dict[str, Any]:
        """Add a topic; 409 if the name is taken."""
        topic_id, stamp = new_id(), now_iso()
        try:
            await self.data.storage.execute(
                sa.insert(tables.topics).values(
                    id=topic_id, name=name, component_types=_dumps(component_types), product_id=product_id,
                    export_control=export_control, data=_dumps(data or {}), state=state,
                    next_topic_id=next_topic_id, etag=new_etag(), created_at=stamp, updated_at=stamp,
                )
            )
        except IntegrityError:
            raise DciError(409, f"a topic named {name!r} exists already") from None
        topic = await self.written(topic_id)
        await self.produce_event(topic, "new")
        return topic


def _in_job(bind: Any) -> ColumnElement:
    """Components of the job bound as *bind*."""
    jc = tables.jobs_components
    return tables.components.c.id.in_(sa.select(jc.c.component_id).where(jc.c.job_id == bind))


class Components(_DciType):
    """``/dci_components``: one deliverable of a topic (a compose, a certification suite...)."""

    name = "dci_component"
    plural = "dci_components"
    event_paths = ("dci_components/:id", "dci_topics/:topic_id/dci_components/:id")

    def declare(self):
        """Fields and getters of components, also under their topic and their jobs."""
        t = tables.components
        fields = {
            **_common_fields(t, "component"),
            "name": _text(t.c.name, "the component's name"),
            "canonical_project_name": _text(t.c.canonical_project_name, "the full name", nullable=True),
            "title": _text(t.c.title, "a title", nullable=True),
            "message": _text(t.c.message, "a message", nullable=True),
            "version": _text(t.c.version, "its version", nullable=True),
            "type": _text(t.c.type, "one of its topic's component_types"),
            "url": _text(t.c.url, "where to get it", nullable=True),
            "data": Field(JsonObject(), t.c.data, "free data"),
            "tags": Field(List(String()), t.c.tags, "tags"),
            "topic_id": _uuid(t.c.topic_id, "its topic"),
            "team_id": _uuid(t.c.team_id, "set for a team's private component", nullable=True),
            "released_at": Field(String(), t.c.released_at, "when it was released (ISO 8601)"),
        }
        endpoints = [
            Endpoint("/dci_components", Kind.COLLECTION),
            Endpoint("/dci_components/s:id"),
            Endpoint("/dci_topics/s:topic_id/dci_components", Kind.COLLECTION),
            Endpoint("/dci_jobs/s:job_id/dci_components", Kind.COLLECTION, arg_columns={"job_id": _in_job}),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def dci_create_component(
        self,
        topic_id: str,
        name: str,
        type: str,  # noqa: A002 (DCI's field name)
        canonical_project_name: str | None = None,
        title: str | None = None,
        message: str | None = None,
        version: str | None = None,
        url: str | None = None,
        data: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        team_id: str | None = None,
        state: str = "active",
        released_at: str | None = None,
    ) -> dict[str, Any]:
        """Add a component to topic *topic_id* (404 if there is no such topic)."""
        if await self.data.get(("dci_topics", topic_id)) is None:
            raise not_found("topic")
        component_id, stamp = new_id(), now_iso()
        await self.data.storage.execute(
            sa.insert(tables.components).values(
                id=component_id, topic_id=topic_id, name=name, type=type,
                canonical_project_name=canonical_project_name or name, title=title, message=message,
                version=version, url=url, data=_dumps(data or {}), tags=_dumps(tags or []), team_id=team_id,
                state=state, released_at=released_at or stamp, etag=new_etag(), created_at=stamp, updated_at=stamp,
            )
        )
        component = await self.written(component_id)
        await self.produce_event(component, "new")
        return component


JOB_WRITABLE = ("name", "comment", "configuration", "url", "tags", "data", "previous_job_id",
                "update_previous_job_id", "state", "status", "status_reason")
"""Job columns a client may set (at creation, or by PUT for a subset)."""


class Jobs(_DciType):
    """``/dci_jobs``: one run of a remoteci on a topic's components, with its status and duration."""

    name = "dci_job"
    plural = "dci_jobs"
    event_paths = ("dci_jobs/:id", "dci_remotecis/:remoteci_id/dci_jobs/:id")

    def declare(self):
        """Fields and getters of jobs."""
        t = tables.jobs
        fields = {
            **_common_fields(t, "job"),
            "name": _text(t.c.name, "the job's name", nullable=True),
            "comment": _text(t.c.comment, "free text", nullable=True),
            "status": _text(t.c.status, "one of " + ", ".join(JOB_STATUSES)),
            "status_reason": _text(t.c.status_reason, "why the status", nullable=True),
            "configuration": _text(t.c.configuration, "the configuration run", nullable=True),
            "url": _text(t.c.url, "a link to the run", nullable=True),
            "tags": Field(List(String()), t.c.tags, "tags"),
            "data": Field(JsonObject(), t.c.data, "free data"),
            "duration": Field(Integer(), t.c.duration, "seconds from creation to the last state change"),
            "topic_id": _uuid(t.c.topic_id, "the topic", nullable=True),
            "topic_id_secondary": _uuid(t.c.topic_id_secondary, "a second topic", nullable=True),
            "remoteci_id": _uuid(t.c.remoteci_id, "the remoteci running it"),
            "team_id": _uuid(t.c.team_id, "the remoteci's team"),
            "product_id": _uuid(t.c.product_id, "the topic's product", nullable=True),
            "previous_job_id": _uuid(t.c.previous_job_id, "the job this one follows", nullable=True),
            "update_previous_job_id": _uuid(t.c.update_previous_job_id, "the job updated", nullable=True),
            "user_agent": _text(t.c.user_agent, "the creating client's User-Agent", nullable=True),
            "client_version": _text(t.c.client_version, "the creating client's Client-Version", nullable=True),
        }
        endpoints = [
            Endpoint("/dci_jobs", Kind.COLLECTION),
            Endpoint("/dci_jobs/s:id"),
            Endpoint("/dci_remotecis/s:remoteci_id/dci_jobs", Kind.COLLECTION),
        ]
        return t, fields, endpoints, {}

    async def _insert(
        self, txn: Any, remoteci: dict[str, Any], topic: dict[str, Any] | None, component_ids: list[str],
        values: dict[str, Any], user_agent: str | None, client_version: str | None,
    ) -> str:
        job_id, stamp = new_id(), now_iso()
        row = {key: values[key] for key in JOB_WRITABLE if key in values}
        for key in ("tags", "data"):
            row[key] = _dumps(row.get(key) or ([] if key == "tags" else {}))
        row.update(
            id=job_id, status="new", duration=0, remoteci_id=remoteci["id"], team_id=remoteci["team_id"],
            topic_id=topic["id"] if topic else None, product_id=topic["product_id"] if topic else None,
            user_agent=user_agent, client_version=client_version, etag=new_etag(),
            created_at=stamp, updated_at=stamp,
        )
        row.setdefault("state", "active")
        await txn.execute(sa.insert(tables.jobs).values(**row))
        if component_ids:
            await txn.execute(
                sa.insert(tables.jobs_components).values([{"job_id": job_id, "component_id": c} for c in component_ids])
            )
        return job_id

    async def _topic(self, txn: Any, topic_id: str) -> dict[str, Any]:
        t = tables.topics
        rows = await txn.fetch_all(
            sa.select(t.c.id, t.c.state, t.c.product_id, t.c.component_types).where(t.c.id == topic_id.lower())
        )
        if not rows or rows[0]["state"] == "archived":
            raise not_found("topic")
        if rows[0]["state"] != "active":
            raise DciError(412, "Topic is not active")
        return rows[0]

    @staticmethod
    def _check_remoteci(remoteci: dict[str, Any]) -> None:
        if remoteci["state"] != "active":
            raise DciError(412, "Remoteci is not active")

    async def _finish(self, job_id: str) -> dict[str, Any]:
        job = await self.written(job_id)
        await self.produce_event(job, "new")
        return job

    @update_method
    async def dci_create_job(
        self, remoteci: dict[str, Any], topic_id: str | None, component_ids: list[str], values: dict[str, Any],
        user_agent: str | None = None, client_version: str | None = None,
    ) -> dict[str, Any]:
        """A new job of *remoteci* on *component_ids* (404 for an unknown component or topic, 412 inactive)."""
        self._check_remoteci(remoteci)
        c = tables.components

        async def work(txn: Any) -> str:
            topic = await self._topic(txn, topic_id) if topic_id else None
            wanted = sorted({cid.lower() for cid in component_ids})
            if wanted:
                found = await txn.fetch_all(sa.select(c.c.id).where(c.c.id.in_(wanted), c.c.state != "archived"))
                if len(found) != len(wanted):
                    missing = sorted(set(wanted) - {row["id"] for row in found})
                    raise DciError(404, "component not found", {"components": missing})
            return await self._insert(txn, remoteci, topic, wanted, values, user_agent, client_version)

        return await self._finish(await self.data.storage.transaction(work))

    @update_method
    async def dci_schedule_job(
        self, remoteci: dict[str, Any], topic_id: str, component_ids: list[str], values: dict[str, Any],
        user_agent: str | None = None, client_version: str | None = None,
    ) -> dict[str, Any]:
        """A new job on one component of each of the topic's types: the newest public active one, or those given.

        412 when a type has no such component, when the ids given do not match the types one to
        one; 404 when a given id is not an active component of the topic.
        """
        self._check_remoteci(remoteci)
        c = tables.components

        async def work(txn: Any) -> str:
            topic = await self._topic(txn, topic_id)
            types = orjson.loads(topic["component_types"])
            chosen: list[str] = []
            if not component_ids:
                for kind in types:
                    rows = await txn.fetch_all(
                        sa.select(c.c.id)
                        .where(c.c.topic_id == topic["id"], c.c.type == kind, c.c.state == "active",
                               c.c.team_id.is_(None))
                        .order_by(c.c.created_at.desc(), c.c.id.desc())
                        .limit(1)
                    )
                    if not rows:
                        raise DciError(412, f'Component of type "{kind}" not found or not exported.')
                    chosen.append(rows[0]["id"])
            else:
                if len(component_ids) != len(types):
                    raise DciError(412, f"Invalid number of components: the topic has {len(types)} component types")
                seen: set[str] = set()
                for cid in component_ids:
                    rows = await txn.fetch_all(
                        sa.select(c.c.id, c.c.type)
                        .where(c.c.id == cid.lower(), c.c.topic_id == topic["id"], c.c.state == "active")
                    )
                    if not rows:
                        raise DciError(404, "component not found", {"component_id": cid})
                    if rows[0]["type"] in seen:
                        raise DciError(412, f'Component of type "{rows[0]["type"]}" given twice')
                    seen.add(rows[0]["type"])
                    chosen.append(rows[0]["id"])
            return await self._insert(txn, remoteci, topic, chosen, values, user_agent, client_version)

        return await self._finish(await self.data.storage.transaction(work))

    @update_method
    async def dci_update_job(self, job_id: str, etag: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply *changes* if the job's etag is still *etag* (else 404, as DCI does); a new status adds a jobstate."""
        t = tables.jobs

        async def work(txn: Any) -> dict[str, Any] | None:
            rows = await txn.fetch_all(
                sa.select(t.c.status, t.c.team_id, t.c.created_at)
                .where(t.c.id == job_id, t.c.etag == etag, t.c.state != "archived")
            )
            if not rows:
                raise not_found("job")
            row = {key: _dumps(value) if key in ("tags", "data") else value for key, value in changes.items()}
            stamp = now_iso()
            row.update(etag=new_etag(), updated_at=stamp)
            if "status" in changes:
                row["duration"] = _duration(rows[0]["created_at"], stamp)
            await txn.execute(sa.update(t).where(t.c.id == job_id).values(**row))
            if "status" in changes and changes["status"] != rows[0]["status"]:
                jobstate_id = new_id()
                await txn.execute(
                    sa.insert(tables.jobstates).values(
                        id=jobstate_id, job_id=job_id, status=changes["status"], comment=None,
                        team_id=rows[0]["team_id"], created_at=stamp,
                    )
                )
                return {"jobstate_id": jobstate_id}
            return None

        added = await self.data.storage.transaction(work)
        if added:
            await self.data.rtypes["dci_jobstates"].produce_event(
                await self.data.get(("dci_jobstates", added["jobstate_id"])), "new"
            )
        job = await self.written(job_id)
        await self.produce_event(job, "update")
        return job

    @update_method
    async def dci_archive_job(self, job_id: str, etag: str) -> None:
        """DELETE: the job becomes ``archived`` (invisible) if its etag is still *etag*, else 404."""
        t = tables.jobs
        changed = await self.data.storage.execute(
            sa.update(t)
            .where(t.c.id == job_id, t.c.etag == etag, t.c.state != "archived")
            .values(state="archived", etag=new_etag(), updated_at=now_iso())
        )
        if not changed:
            raise not_found("job")
        await self.produce_event(await self.get_entity(job_id), "update")


def _duration(created_at: str, now: str) -> int:
    start = datetime.strptime(created_at, TIME_FORMAT)
    return max(0, int((datetime.strptime(now, TIME_FORMAT) - start).total_seconds()))


class Jobstates(_DciType):
    """``/dci_jobstates``: each status a job went through, with a comment."""

    name = "dci_jobstate"
    plural = "dci_jobstates"
    event_paths = ("dci_jobstates/:id", "dci_jobs/:job_id/dci_jobstates/:id")

    def declare(self):
        """Fields and getters of jobstates."""
        t = tables.jobstates
        fields = {
            "id": _uuid(t.c.id, "the jobstate's id"),
            "created_at": Field(String(), t.c.created_at, "ISO 8601 UTC, microseconds"),
            "status": _text(t.c.status, "the job's status from then"),
            "comment": _text(t.c.comment, "free text", nullable=True),
            "job_id": _uuid(t.c.job_id, "the job"),
            "team_id": _uuid(t.c.team_id, "the job's team"),
        }
        endpoints = [
            Endpoint("/dci_jobstates", Kind.COLLECTION),
            Endpoint("/dci_jobstates/s:id"),
            Endpoint("/dci_jobs/s:job_id/dci_jobstates", Kind.COLLECTION),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def dci_add_jobstate(self, job_id: str, status: str, comment: str | None = None) -> dict[str, Any]:
        """Record *status* for the job and make it the job's status; 404 if there is no such job.

        As on the DCI server, a ``failure``/``error`` reported while the job is still ``new`` or
        ``pre-run`` is recorded as an ``error`` jobstate, while the job gets the status asked for.
        """
        j = tables.jobs

        async def work(txn: Any) -> str:
            rows = await txn.fetch_all(
                sa.select(j.c.status, j.c.created_at, j.c.team_id).where(j.c.id == job_id, j.c.state != "archived")
            )
            if not rows:
                raise not_found("job")
            job = rows[0]
            recorded = "error" if status in ("failure", "error") and job["status"] in ("new", "pre-run") else status
            jobstate_id, stamp = new_id(), now_iso()
            await txn.execute(
                sa.insert(tables.jobstates).values(
                    id=jobstate_id, job_id=job_id, status=recorded, comment=comment,
                    team_id=job["team_id"], created_at=stamp,
                )
            )
            await txn.execute(
                sa.update(j).where(j.c.id == job_id).values(
                    status=status, duration=_duration(job["created_at"], stamp), etag=new_etag(), updated_at=stamp,
                )
            )
            return jobstate_id

        jobstate = await self.written(await self.data.storage.transaction(work))
        await self.produce_event(jobstate, "new")
        jobs = self.data.rtypes["dci_jobs"]
        await jobs.produce_event(await jobs.get_entity(job_id), "update")
        return jobstate


class FileContentEndpoint(Endpoint):
    """``/dci_files/<id>/content``: the file as uploaded, with its media type."""

    def __init__(self) -> None:
        super().__init__("/dci_files/s:id/content", Kind.RAW, doc="the file's content")

    async def get(self, data: DataAPI, spec: Any, args: dict[str, Any]) -> RawContent:
        """A RawContent of the stored bytes; NotFound for an unknown file."""
        f = tables.files
        rows = await data.storage.fetch_all(
            sa.select(f.c.name, f.c.mime, f.c.content).where(f.c.id == args["id"], f.c.state != "archived")
        )
        if not rows:
            raise NotFound("file not found")
        content = bytes(rows[0]["content"])

        async def chunks() -> AsyncIterator[bytes]:
            yield content

        return RawContent(rows[0]["mime"] or "application/octet-stream", chunks(), rows[0]["name"], len(content))


class Files(_DciType):
    """``/dci_files``: a file a job uploaded (logs, JUnit results...)."""

    name = "dci_file"
    plural = "dci_files"
    event_paths = ("dci_files/:id", "dci_jobs/:job_id/dci_files/:id")

    def declare(self):
        """Fields and getters of files; the content is a raw getter of its own."""
        t = tables.files
        fields = {
            **_common_fields(t, "file"),
            "name": _text(t.c.name, "the file's name"),
            "mime": _text(t.c.mime, "its media type", nullable=True),
            "md5": Field(NoneOk(String()), t.c.md5, "always null, as on the DCI server"),
            "size": Field(Integer(), t.c.size, "bytes"),
            "job_id": _uuid(t.c.job_id, "the job"),
            "jobstate_id": _uuid(t.c.jobstate_id, "the jobstate it was uploaded for", nullable=True),
            "team_id": _uuid(t.c.team_id, "the job's team"),
        }
        endpoints = [
            Endpoint("/dci_files", Kind.COLLECTION),
            Endpoint("/dci_files/s:id"),
            Endpoint("/dci_jobs/s:job_id/dci_files", Kind.COLLECTION),
            FileContentEndpoint(),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def dci_add_file(
        self, job: dict[str, Any], jobstate_id: str | None, name: str, mime: str | None, content: bytes,
        junit: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """Store a file of *job*; with *junit* (counts parsed from it) also its test results.

        The job gets a new etag, as on the DCI server.
        """
        file_id, stamp = new_id(), now_iso()
        result_id = new_id() if junit is not None else None

        async def work(txn: Any) -> None:
            await txn.execute(
                sa.insert(tables.files).values(
                    id=file_id, name=name, mime=mime, md5=None, size=len(content), job_id=job["id"],
                    jobstate_id=jobstate_id, team_id=job["team_id"], content=content,
                    etag=new_etag(), created_at=stamp, updated_at=stamp,
                )
            )
            if junit is not None:
                await txn.execute(
                    sa.insert(tables.tests_results).values(
                        id=result_id, name=name, file_id=file_id, job_id=job["id"],
                        created_at=stamp, updated_at=stamp, **junit,
                    )
                )
            await txn.execute(
                sa.update(tables.jobs).where(tables.jobs.c.id == job["id"]).values(etag=new_etag())
            )

        await self.data.storage.transaction(work)
        entity = await self.written(file_id)
        await self.produce_event(entity, "new")
        if result_id is not None:
            results = self.data.rtypes["dci_results"]
            await results.produce_event(await results.get_entity(result_id), "new")
        jobs = self.data.rtypes["dci_jobs"]
        await jobs.produce_event(await jobs.get_entity(job["id"]), "update")
        return entity


class Results(_DciType):
    """``/dci_results``: the test counts parsed from a job's JUnit file."""

    name = "dci_result"
    plural = "dci_results"
    event_paths = ("dci_results/:id", "dci_jobs/:job_id/dci_results/:id")

    def declare(self):
        """Fields and getters of test results."""
        t = tables.tests_results
        fields = {
            "id": _uuid(t.c.id, "the result's id"),
            "created_at": Field(String(), t.c.created_at, "ISO 8601 UTC, microseconds"),
            "updated_at": Field(String(), t.c.updated_at, "ISO 8601 UTC, microseconds"),
            "name": _text(t.c.name, "the JUnit file's name"),
            "total": Field(Integer(), t.c.total, "test cases"),
            "success": Field(Integer(), t.c.success, "passed"),
            "skips": Field(Integer(), t.c.skips, "skipped"),
            "failures": Field(Integer(), t.c.failures, "failed"),
            "errors": Field(Integer(), t.c.errors, "in error"),
            "regressions": Field(Integer(), t.c.regressions, "failing now, passing in the previous job"),
            "successfixes": Field(Integer(), t.c.successfixes, "passing now, failing in the previous job"),
            "time": Field(Integer(), t.c.time, "milliseconds, summed over test cases"),
            "file_id": _uuid(t.c.file_id, "the JUnit file"),
            "job_id": _uuid(t.c.job_id, "the job"),
        }
        endpoints = [
            Endpoint("/dci_results/s:id"),
            Endpoint("/dci_jobs/s:job_id/dci_results", Kind.COLLECTION),
        ]
        return t, fields, endpoints, {}


class JobKeyValues(_DciType):
    """``/dci_jobs/<id>/dci_kv``: numbers a job reports under names (timings, counts)."""

    name = "dci_kv"
    plural = "dci_kv"
    event_paths = ("dci_jobs/:job_id/dci_kv/:id",)

    def declare(self):
        """Fields and getters of key-values."""
        t = tables.jobs_kv
        fields = {
            "id": _uuid(t.c.id, "the key-value's id"),
            "created_at": Field(String(), t.c.created_at, "ISO 8601 UTC, microseconds"),
            "job_id": _uuid(t.c.job_id, "the job"),
            "key": _text(t.c.key, "the name"),
            "value": Field(Number(), t.c.value, "the number"),
        }
        endpoints = [Endpoint("/dci_jobs/s:job_id/dci_kv", Kind.COLLECTION)]
        return t, fields, endpoints, {}

    @update_method
    async def dci_set_job_kv(self, job_id: str, key: str, value: float) -> dict[str, Any]:
        """Set *key* of the job to *value* (replacing an older value of that key)."""
        t = tables.jobs_kv
        kv_id = new_id()

        async def work(txn: Any) -> None:
            await txn.execute(sa.delete(t).where(t.c.job_id == job_id, t.c.key == key))
            await txn.execute(sa.insert(t).values(id=kv_id, job_id=job_id, key=key, value=value, created_at=now_iso()))

        await self.data.storage.transaction(work)
        entity = (await self.data.get(("dci_jobs", job_id, "dci_kv"), query={"key": [key]})).items[0]
        await self.produce_event(entity, "new")
        return entity


def resource_types() -> list[ResourceType]:
    """A fresh instance of each DCI resource type."""
    return [Teams(), Remotecis(), Feeders(), Topics(), Components(), Jobs(), Jobstates(), Files(), Results(),
            JobKeyValues()]
