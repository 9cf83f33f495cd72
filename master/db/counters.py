"""Row counters kept by the database itself, so that big collections know their size without a COUNT.

``meta.total`` of ``/builds`` at a million builds would cost a scan of a million index
entries per page.  Instead, triggers on the counted tables keep ``row_counts`` up to date
in the same transaction as each insert, delete and update: one row per table (the total)
and one per value of each counted dimension (e.g. the builds of builder 3, or the finished
builds of builder 3).  A counter is named ``table`` or ``table/dim=value[/dim=value]``
with the dimensions in alphabetical order; booleans are ``0``/``1``.  A counter that has no
row counts zero.  Rows whose dimension is null are not counted under that dimension.

The same names are computed in Python by :func:`counter_name` for the read path.
Seeding tools that load rows with triggers off (COPY with ``session_replication_role``)
call :func:`recount` afterwards, and so does the migration that adds the counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

TABLE = "row_counts"


@dataclass(frozen=True)
class Dimension:
    """One counted dimension: its name, and the SQL expression of a row (``{row}.col``) it counts by."""

    name: str
    expr: str
    boolean: bool = False
    columns: tuple[str, ...] = ()

    def sql(self, row: str, dialect: str) -> str:
        """The value of this dimension in row *row* (``NEW``/``OLD`` or a table), as text."""
        value = self.expr.format(row=row)
        if self.boolean:
            return f"(CASE WHEN {value} THEN '1' ELSE '0' END)"
        return f"CAST({value} AS TEXT)"


def _column(name: str) -> Dimension:
    return Dimension(name, "{row}." + name, columns=(name,))


_BUILD_COMPLETE = Dimension("complete", "{row}.complete_at IS NOT NULL", boolean=True, columns=("complete_at",))
_REQUEST_COMPLETE = Dimension("complete", "{row}.complete", boolean=True, columns=("complete",))

COUNTERS: dict[str, list[tuple[Dimension, ...]]] = {
    "builds": [
        (),
        (_column("builderid"),),
        (_column("workerid"),),
        (_column("masterid"),),
        (_column("builderid"), _BUILD_COMPLETE),
        (_BUILD_COMPLETE,),
        # builds?builderid=X&results=R (a builder's failures): exact and O(1) however long its history
        (_column("builderid"), _column("results")),
    ],
    "buildrequests": [
        (),
        (_column("builderid"),),
        (_REQUEST_COMPLETE,),
        (_column("builderid"), _REQUEST_COMPLETE),
    ],
    "buildsets": [(), (_column("complete"),)],
    "changes": [()],
    "sourcestamps": [()],
}
"""Per counted table, the dimension sets it is counted by (``()``: the table's total)."""


_COUNTED_NAMES = {table: frozenset(frozenset(d.name for d in dimset) for dimset in dims)
                  for table, dims in COUNTERS.items()}
"""Per counted table, the sets of dimension names it has counters for (read on every collection read)."""


def _sorted(dims: tuple[Dimension, ...]) -> tuple[Dimension, ...]:
    return tuple(sorted(dims, key=lambda d: d.name))


def counter_name(table: str, values: Mapping[str, Any]) -> str | None:
    """The counter of *table* restricted to ``{dimension: value}``, or None when none is kept.

    Values are ints or bools; a null value, or a set of dimensions not counted, has no counter.
    """
    counted = _COUNTED_NAMES.get(table)
    if counted is None or frozenset(values) not in counted:
        return None
    parts = [table]
    for name in sorted(values):
        value = values[name]
        if value is None or not isinstance(value, bool | int):
            return None
        parts.append(f"{name}={int(value)}")
    return "/".join(parts)


def _name_sql(table: str, dims: tuple[Dimension, ...], row: str, dialect: str) -> str:
    parts = [f"'{table}'"]
    for dim in _sorted(dims):
        parts.append(f"'/{dim.name}='")
        parts.append(dim.sql(row, dialect))
    return " || ".join(parts)


def _not_null(dims: tuple[Dimension, ...], row: str) -> str:
    checks = [f"{dim.expr.format(row=row)} IS NOT NULL" for dim in dims if not dim.boolean]
    return " AND ".join(checks) or "1 = 1"


def _bump(table: str, dims: tuple[Dimension, ...], row: str, delta: int, dialect: str, guard: str = "") -> str:
    """One statement adding *delta* to the counter of *row*, unless a dimension is null."""
    where = _not_null(dims, row) + (f" AND ({guard})" if guard else "")
    return (
        f"INSERT INTO {TABLE} (name, n) SELECT {_name_sql(table, dims, row, dialect)}, {delta} WHERE {where} "
        f"ON CONFLICT (name) DO UPDATE SET n = {TABLE}.n + excluded.n"
    )


def _changed(table: str, dims: tuple[Dimension, ...], dialect: str) -> str:
    return f"({_name_sql(table, dims, 'OLD', dialect)}) IS DISTINCT FROM ({_name_sql(table, dims, 'NEW', dialect)})"


def _trigger_statements(table: str, dialect: str) -> dict[str, list[str]]:
    """Per event (INSERT, DELETE, UPDATE), the statements the trigger runs."""
    dimsets = COUNTERS[table]
    events: dict[str, list[str]] = {"INSERT": [], "DELETE": [], "UPDATE": []}
    for dims in dimsets:
        events["INSERT"].append(_bump(table, dims, "NEW", 1, dialect))
        events["DELETE"].append(_bump(table, dims, "OLD", -1, dialect))
        if dims:
            changed = _changed(table, dims, dialect)
            if dialect == "sqlite":
                changed = changed.replace("IS DISTINCT FROM", "IS NOT")
            events["UPDATE"].append(_bump(table, dims, "OLD", -1, dialect, changed))
            events["UPDATE"].append(_bump(table, dims, "NEW", 1, dialect, changed))
    return events


def _update_columns(table: str) -> list[str]:
    columns = []
    for dims in COUNTERS[table]:
        for dim in dims:
            for column in dim.columns:
                if column not in columns:
                    columns.append(column)
    return columns


def trigger_ddl(dialect: str) -> list[str]:
    """The statements that create the counting triggers (and, on PostgreSQL, their functions)."""
    ddl = []
    for table in COUNTERS:
        for event, statements in _trigger_statements(table, dialect).items():
            if not statements:
                continue
            name = f"{TABLE}_{table}_{event.lower()}"
            of = f" OF {', '.join(_update_columns(table))}" if event == "UPDATE" else ""
            if dialect == "sqlite":
                body = "".join(f"  {s};\n" for s in statements)
                ddl.append(f"CREATE TRIGGER {name} AFTER {event}{of} ON {table} FOR EACH ROW BEGIN\n{body}END")
            else:
                body = "".join(f"  {s};\n" for s in statements)
                ddl.append(
                    f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n{body}"
                    "  RETURN NULL;\nEND $$"
                )
                ddl.append(f"CREATE TRIGGER {name} AFTER {event}{of} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    return ddl


def drop_ddl(dialect: str) -> list[str]:
    """The statements that drop the counting triggers (to bulk-load, then :func:`recount`)."""
    ddl = []
    for table in COUNTERS:
        for event in ("insert", "delete", "update"):
            name = f"{TABLE}_{table}_{event}"
            if dialect == "sqlite":
                ddl.append(f"DROP TRIGGER IF EXISTS {name}")
            else:
                ddl.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                ddl.append(f"DROP FUNCTION IF EXISTS {name}()")
    return ddl


def recount_sql(dialect: str) -> list[tuple[str, str]]:
    """``(table, statement)`` pairs that rebuild ``row_counts`` from the tables, one per table."""
    statements = []
    for table, dimsets in COUNTERS.items():
        selects = []
        for dims in dimsets:
            name = _name_sql(table, dims, table, dialect)
            selects.append(
                f"SELECT {name} AS name, count(*) AS n FROM {table} WHERE {_not_null(dims, table)} GROUP BY 1"
            )
        statements.append((table, f"INSERT INTO {TABLE} (name, n) {' UNION ALL '.join(selects)}"))
    return statements


def recount(execute: Callable[[str], Any], dialect: str, progress: Callable[[str], None] | None = None) -> None:
    """Empty ``row_counts`` and count every counted table again, through ``execute(sql)``."""
    execute(f"DELETE FROM {TABLE}")
    for table, statement in recount_sql(dialect):
        began = time.monotonic()
        execute(statement)
        if progress is not None:
            progress(f"  counted {table} ({time.monotonic() - began:.1f}s)")
