"""Steps: the numbered stages of a build, each with its state, results and links."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement

from master.data.base import Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.errors import NotFound
from master.data.resources.common import dumps, now
from master.data.resources.livecache import LiveEntities
from master.data.types import Boolean, DateTime, Integer, JsonObject, List, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction, Prepared

t = schema.steps
NAME_LENGTH = 255  # the width of steps.name
# the fields LiveEntities keeps up to date from what the update methods write
KNOWN_FIELDS = (
    "stepid", "number", "name", "buildid", "started_at", "locks_acquired_at", "complete", "complete_at",
    "state_string", "results", "urls", "hidden",
)
# prepared once: building a statement with SQLAlchemy costs more than running it
_SET_STATE = Prepared(("steps", "state"), lambda: sa.update(t).where(t.c.id == sa.bindparam("stepid")).values(
    state_string=sa.bindparam("state_string")))
_FINISH = Prepared(("steps", "finish"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("stepid"), t.c.complete_at.is_(None)).values(
    complete_at=sa.bindparam("complete_at"), results=sa.bindparam("results"), hidden=sa.bindparam("hidden")))
_BUILD_EXISTS = Prepared(("steps", "build-exists"), lambda: sa.select(schema.builds.c.id).where(
    schema.builds.c.id == sa.bindparam("buildid")))
_STEPS_OF_BUILD = Prepared(("steps", "of-build"), lambda: sa.select(t.c.number, t.c.name).where(
    t.c.buildid == sa.bindparam("buildid")))
_INSERT_STEP = Prepared(("steps", "insert"), lambda: sa.insert(t).values(
    {name: sa.bindparam(name) for name in ("buildid", "number", "name", "state_string")}).returning(t.c.id))
_START = Prepared(("steps", "start"), lambda: sa.update(t).where(t.c.id == sa.bindparam("stepid")).values(
    started_at=sa.bindparam("started_at"), locks_acquired_at=sa.bindparam("locks_acquired_at")))
_FINISH_SAYING = Prepared(("steps", "finish-saying"), lambda: sa.update(t).where(
    t.c.id == sa.bindparam("stepid"), t.c.complete_at.is_(None)).values(
    complete_at=sa.bindparam("complete_at"), results=sa.bindparam("results"), hidden=sa.bindparam("hidden"),
    state_string=sa.bindparam("state_string")))

BUILDER_ARGS = ("n:builderid", "i:buildername")
"""The two ways a path names a builder, as in ``/builders/<builder>/builds/n:build_number``."""


def no_condition(bind: Any) -> ColumnElement[Any]:
    """An ``arg_columns`` entry for an argument whose condition another argument of the path carries."""
    return sa.true()


def build_id_of(builder: str | None) -> ColumnElement[Any]:
    """The id of the build a nested path names, from the path's bound arguments.

    *builder* is None for ``/builds/n:buildid/...``, else ``"builderid"`` or ``"buildername"``
    for ``/builders/<builder>/builds/n:build_number/...`` (one lookup on the (builderid,
    number) unique index).
    """
    if builder is None:
        return sa.bindparam("arg_buildid")
    builderid: ColumnElement[Any]
    if builder == "builderid":
        builderid = sa.bindparam("arg_builderid")
    else:
        builders = schema.builders
        builderid = sa.select(builders.c.id).where(builders.c.name == sa.bindparam("arg_buildername")).scalar_subquery()
    builds = schema.builds
    number: sa.BindParameter[Any] = sa.bindparam("arg_build_number")
    found = sa.select(builds.c.id).where(builds.c.builderid == builderid, builds.c.number == number)
    return found.scalar_subquery()


def build_paths() -> list[tuple[str, str | None]]:
    """Every path prefix naming one build, with its *builder* for :func:`build_id_of`."""
    prefixes: list[tuple[str, str | None]] = [("/builds/n:buildid", None)]
    for arg in BUILDER_ARGS:
        prefixes.append((f"/builders/{arg}/builds/n:build_number", arg.split(":")[1]))
    return prefixes


def build_arg_columns(
    builder: str | None, condition: Callable[[], ColumnElement[Any]]
) -> dict[str, Callable[[Any], ColumnElement[Any]]]:
    """``arg_columns`` for the build part of a nested path: *condition* once, the other arguments none.

    *condition* reads the bound builder and build number itself (see :func:`build_id_of`),
    so the build is found by one indexed subquery rather than by one per argument.
    """
    if builder is None:
        return {"buildid": lambda bind: condition()}
    return {builder: no_condition, "build_number": lambda bind: condition()}


def _complete_filter(op: str, values: tuple[Any, ...]) -> Any:
    """complete=true/false as complete_at IS [NOT] NULL."""
    wanted = set(values) if op in ("eq", "in") else {True, False} - set(values)
    if wanted == {True}:
        return t.c.complete_at.is_not(None)
    if wanted == {False}:
        return t.c.complete_at.is_(None)
    return sa.true() if wanted else sa.false()


def _unique_name(name: str, taken: set[str]) -> str:
    """*name*, or the first of ``name_2``, ``name_3``... not in *taken* (within the column width)."""
    candidate = name[:NAME_LENGTH]
    number = 2
    while candidate in taken:
        suffix = f"_{number}"
        candidate = name[: NAME_LENGTH - len(suffix)] + suffix
        number += 1
    return candidate


class Steps(ResourceType):
    """``/builds/N/steps``: the steps of builds, numbered from 0 in the order they were added."""

    name = "step"
    plural = "steps"
    id_field = "stepid"
    # As in Buildbot: the entity carries no builder id nor build number, so the
    # /builders/... paths cannot be keys; the UI subscribes to builds/N/steps/*/*.
    event_paths = (
        "builds/:buildid/steps/:stepid",
        "steps/:stepid",
    )

    def declare(self) -> Declaration:
        """Fields and endpoints of steps."""
        fields = {
            "stepid": Field(Integer(), t.c.id, "the step's id"),
            "number": Field(Integer(), t.c.number, "the step's number within its build, from 0"),
            "name": Field(String(), t.c.name, "the step's name, unique within its build"),
            "buildid": Field(Integer(), t.c.buildid, "the build it belongs to"),
            "started_at": Field(NoneOk(DateTime()), t.c.started_at, "when it started, null until then"),
            "locks_acquired_at": Field(NoneOk(DateTime()), t.c.locks_acquired_at, "when it got its locks"),
            "complete": Field(Boolean(), t.c.complete_at.is_not(None), "whether it has finished",
                              filter_sql=_complete_filter),
            "complete_at": Field(NoneOk(DateTime()), t.c.complete_at, "when it finished"),
            "state_string": Field(String(), t.c.state_string, "what it is doing or did, in words"),
            "results": Field(NoneOk(Integer()), t.c.results, "result code 0..6, null while running"),
            "urls": Field(List(JsonObject()), t.c.urls, "links it produced: [{name, url}]"),
            "hidden": Field(Boolean(), t.c.hidden, "whether the UI should hide it"),
        }
        endpoints = [
            Endpoint("/steps/n:stepid"),
            Endpoint("/builds/n:buildid/steps", Kind.COLLECTION),
            Endpoint("/builds/n:buildid/steps/n:step_number", arg_columns={"step_number": t.c.number}),
            Endpoint("/builds/n:buildid/steps/i:step_name", arg_columns={"step_name": t.c.name}),
        ]
        for prefix, builder in build_paths()[1:]:

            def condition(builder: str | None = builder) -> ColumnElement[bool]:
                return t.c.buildid == build_id_of(builder)

            columns = build_arg_columns(builder, condition)
            endpoints += [
                Endpoint(f"{prefix}/steps", Kind.COLLECTION, arg_columns=columns),
                Endpoint(f"{prefix}/steps/n:step_number", arg_columns={**columns, "step_number": t.c.number}),
                Endpoint(f"{prefix}/steps/i:step_name", arg_columns={**columns, "step_name": t.c.name}),
            ]
        return t, fields, endpoints, {}

    def attach(self, data: Any) -> None:
        """Remember the DataAPI; start the cache of the steps this master runs."""
        super().attach(data)
        self.live = LiveEntities(self, KNOWN_FIELDS)

    async def _publish(self, stepid: int, event: str, entity: dict[str, Any] | None = None) -> None:
        """Publish *event* of the step: *entity* when known here, else the step read back."""
        if entity is None:
            entity = await self.get_entity(stepid)
        if entity is None:
            raise NotFound(f"no step {stepid}")
        await self.produce_event(entity, event)

    @update_method
    async def add_step(self, buildid: int, name: str) -> tuple[int, int, str]:
        """Add a pending step to build *buildid*; return ``(stepid, number, name)``.

        Numbers count from 0 within the build; a name already used in the build gets
        ``_2``, ``_3``... appended, so that steps stay reachable by name.
        """

        async def work(txn: ITransaction) -> tuple[int, int, str]:
            if not await txn.fetch_all(_BUILD_EXISTS, {"buildid": buildid}):
                raise NotFound(f"no build {buildid}")
            rows = await txn.fetch_all(_STEPS_OF_BUILD, {"buildid": buildid})
            number = max((row["number"] for row in rows), default=-1) + 1
            unique = _unique_name(name, {row["name"] for row in rows})
            inserted = await txn.fetch_all(
                _INSERT_STEP, {"buildid": buildid, "number": number, "name": unique, "state_string": "pending"}
            )
            return inserted[0]["id"], number, unique

        for attempt in range(5):
            try:
                stepid, number, unique = await self.data.storage.transaction(work)
                break
            except IntegrityError:
                # another writer added a step to the same build at the same moment
                if attempt == 4:
                    raise
        entity = self.live.put(stepid, {
            "stepid": stepid, "number": number, "name": unique, "buildid": buildid, "started_at": None,
            "locks_acquired_at": None, "complete": False, "complete_at": None, "state_string": "pending",
            "results": None, "urls": [], "hidden": False,
        })
        await self._publish(stepid, "new", entity)
        return stepid, number, unique

    @update_method
    async def start_step(self, stepid: int, locks_acquired: bool = False) -> None:
        """Mark a step started now (and holding its locks, if *locks_acquired*)."""
        started = now()
        values: dict[str, Any] = {"started_at": started, "locks_acquired_at": started if locks_acquired else None}
        if locks_acquired:
            await self.data.storage.execute(_START, {"stepid": stepid, **values})
        else:
            del values["locks_acquired_at"]
            await self.data.storage.execute(sa.update(t).where(t.c.id == stepid).values(**values))
        await self._publish(stepid, "started", self.live.update(stepid, **values))

    @update_method
    async def set_step_locks_acquired(self, stepid: int) -> None:
        """Record that a started step got its locks now."""
        acquired = now()
        await self.data.storage.execute(sa.update(t).where(t.c.id == stepid).values(locks_acquired_at=acquired))
        await self._publish(stepid, "updated", self.live.update(stepid, locks_acquired_at=acquired))

    @update_method
    async def set_step_state_string(self, stepid: int, state_string: str) -> None:
        """Say in words what the step is doing."""
        await self.data.storage.execute(_SET_STATE, {"stepid": stepid, "state_string": state_string})
        await self._publish(stepid, "updated", self.live.update(stepid, state_string=state_string))

    @update_method
    async def add_step_url(self, stepid: int, name: str, url: str) -> None:
        """Add a link ``{name, url}`` to a step (a link it has already is not added twice)."""
        async def work(txn: ITransaction) -> list[dict[str, str]] | None:
            # FOR UPDATE: two links added at once must not overwrite each other (SQLite ignores it
            # and needs it not: its transactions are serialised)
            rows = await txn.fetch_all(sa.select(t.c.urls).where(t.c.id == stepid).with_for_update())
            if not rows:
                raise NotFound(f"no step {stepid}")
            urls = orjson.loads(rows[0]["urls"])
            link = {"name": name, "url": url}
            if link in urls:
                return None
            urls = [*urls, link]
            await txn.execute(sa.update(t).where(t.c.id == stepid).values(urls=dumps(urls)))
            return urls

        urls = await self.data.storage.transaction(work)
        if urls is not None:
            await self._publish(stepid, "updated", self.live.update(stepid, urls=urls))

    @update_method
    async def finish_step(
        self, stepid: int, results: int, hidden: bool = False, state_string: str | None = None
    ) -> None:
        """Mark a step complete with *results* (a step finished already is left as it is).

        With *state_string*, it publishes what ``set_step_state_string`` then ``finish_step``
        would, with one write instead of two when the step is one this master runs.
        """
        if state_string is not None and not self.live.known(stepid):
            await self.set_step_state_string(stepid, state_string)
            state_string = None
        complete_at = now()
        params = {"stepid": stepid, "complete_at": complete_at, "results": results, "hidden": hidden}
        if state_string is None:
            changed = await self.data.storage.execute(_FINISH, params)
        else:
            changed = await self.data.storage.execute(_FINISH_SAYING, {**params, "state_string": state_string})
            if changed:
                await self._publish(stepid, "updated", self.live.update(stepid, state_string=state_string))
            else:  # finished already: the state string is still set, as set_step_state_string does
                self.live.forget(stepid)
                await self.set_step_state_string(stepid, state_string)
        if changed:
            entity = self.live.finish(
                stepid, complete_at=complete_at, complete=True, results=results, hidden=bool(hidden)
            )
            await self._publish(stepid, "finished", entity)
            return
        self.live.forget(stepid)
        if await self.get_entity(stepid) is None:
            raise NotFound(f"no step {stepid}")
