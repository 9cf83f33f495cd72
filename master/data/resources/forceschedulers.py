"""Force schedulers: the forms that start builds by hand, as the web UI shows them."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from master.data.base import Action, ActionCall, Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.errors import InvalidQuery
from master.data.resources.common import dumps
from master.data.types import Boolean, Identifier, JsonObject, List, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction

t = schema.forceschedulers


class json_array_has(FunctionElement[bool]):  # lowercase, as SQL functions are spelled
    r"""``json_array_has(array_text, value)``: whether a JSON array stored as text has the string *value*.

    builder_names is a JSON array in a text column.  A LIKE on ``%"name"%`` is not exact:
    the name ``a`` would match the stored element ``b"a`` (written ``"b\"a"``), and
    escaping quotes, backslashes and control characters in SQL to mirror the JSON encoder
    is fragile.  Both databases parse JSON natively, so the test compares whole elements:
    SQLite walks the array with ``json_each``, PostgreSQL uses jsonb containment.
    """

    type = sa.Boolean()
    name = "json_array_has"
    inherit_cache = True


@compiles(json_array_has, "sqlite")
def _json_array_has_sqlite(element: json_array_has, compiler: Any, **kw: Any) -> str:
    array, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"EXISTS (SELECT 1 FROM json_each({array}) AS je WHERE je.type = 'text' AND je.value = {value})"


@compiles(json_array_has, "postgresql")
def _json_array_has_postgresql(element: json_array_has, compiler: Any, **kw: Any) -> str:
    array, value = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST({array} AS JSONB) @> jsonb_build_array(CAST({value} AS TEXT)))"


def _builder_names_filter(op: str, values: tuple[Any, ...]) -> Any:
    """builder_names=x / builder_names__contains=x: force schedulers offering builder x (any of several)."""
    if op not in ("eq", "ne", "in", "notin", "contains"):
        parameter = f"builder_names__{op}"
        raise InvalidQuery(f"{parameter!r}: operator {op!r} does not apply to a list", parameter)
    has = sa.or_(*(json_array_has(t.c.builder_names, sa.literal(value, sa.String())) for value in values))
    return sa.not_(has) if op in ("ne", "notin") else has


def _offers_builder(bind: Any) -> Any:
    name = sa.select(schema.builders.c.name).where(schema.builders.c.id == bind).scalar_subquery()
    return json_array_has(t.c.builder_names, name)


def _enabled_column() -> Any:
    # A force scheduler is also a scheduler of the same name; it is enabled unless that
    # scheduler is disabled (none registered yet counts as enabled, as a fresh one is).
    scheduler = sa.select(schema.schedulers.c.enabled).where(schema.schedulers.c.name == t.c.name)
    return sa.func.coalesce(scheduler.scalar_subquery(), sa.true(), type_=sa.Boolean())


async def _force(call: ActionCall) -> Any:
    return await call.data.controls().force(call.args["schedulername"], call.params, call.user)


class ForceSchedulers(ResourceType):
    """``/forceschedulers``: force forms by name, with the builders they can start and their fields."""

    name = "forcescheduler"
    plural = "forceschedulers"
    id_field = "name"
    event_paths = ("forceschedulers/:name",)

    def declare(self) -> Declaration:
        """Fields and endpoints of force schedulers."""
        fields = {
            "name": Field(String(), t.c.name, "the scheduler's unique name"),
            "label": Field(String(), t.c.label, "the title of the form"),
            "button_name": Field(String(), t.c.button_name, "the text of the button that submits it"),
            "builder_names": Field(List(String()), t.c.builder_names, "names of the builders it can start",
                                   filter_sql=_builder_names_filter),
            "enabled": Field(Boolean(), _enabled_column(), "whether the scheduler of that name is enabled"),
            "all_fields": Field(List(JsonObject()), t.c.all_fields, "the form's fields, nested as in Buildbot"),
        }
        endpoints = [
            Endpoint("/forceschedulers", Kind.COLLECTION),
            Endpoint("/forceschedulers/i:schedulername", arg_columns={"schedulername": t.c.name}, actions=[
                # the form's fields are the scheduler's own: it validates them (open_params)
                Action("force", _force, open_params=True,
                       doc="start builds: {builderid, <field>: value}; returns [buildsetid, {builderid: brid}]"),
            ]),
            Endpoint("/builders/n:builderid/forceschedulers", Kind.COLLECTION,
                     arg_columns={"builderid": _offers_builder}),
        ]
        return t, fields, endpoints, {}

    @update_method
    async def update_forcescheduler(
        self,
        name: str,
        label: str,
        button_name: str,
        builder_names: list[str],
        all_fields: list[dict[str, Any]],
    ) -> None:
        """Create force scheduler *name* or replace its form; *name* must be an identifier (it is a path segment)."""
        Identifier().from_string(name)
        values = {
            "label": label,
            "button_name": button_name,
            "builder_names": dumps(list(builder_names)),
            "all_fields": dumps(list(all_fields)),
        }

        async def work(txn: ITransaction) -> bool:
            if await txn.execute(sa.update(t).where(t.c.name == name).values(**values)):
                return False
            await txn.execute(sa.insert(t).values(name=name, **values))
            return True

        try:
            created = await self.data.storage.transaction(work)
        except IntegrityError:
            # another master inserted it at the same moment: the retry updates it
            created = await self.data.storage.transaction(work)
        await self.produce_event(await self.get_entity(name), "new" if created else "update")

    @update_method
    async def remove_forcescheduler(self, name: str) -> None:
        """Forget force scheduler *name* (no longer configured); ``removed`` carries its last state."""
        entity = await self.get_entity(name)
        if entity is None:
            return
        if await self.data.storage.execute(sa.delete(t).where(t.c.name == name)):
            await self.produce_event(entity, "removed")
