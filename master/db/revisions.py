"""Schema revisions read without Alembic: the head of a folder of revisions, and a database's stamp.

A master checks both at every start; Alembic (with Mako and Pygments under it) costs about
10 MB of memory once imported, which a master that only serves should not pay.  The
revision files are read as text (their literal ``revision`` and ``down_revision``
assignments, as Alembic's own templates write them) and the version table with one SELECT.
Anything this reader cannot settle alone (no literal assignments, several heads, several
rows in a version table) returns :data:`UNKNOWN`, and the caller asks Alembic.
"""

from __future__ import annotations

import ast
import enum
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa


class _Unknown(enum.Enum):
    UNKNOWN = "unknown"


UNKNOWN = _Unknown.UNKNOWN
"""Returned when only Alembic can tell."""

Found = str | None | Literal[_Unknown.UNKNOWN]
"""A revision, None for none, or :data:`UNKNOWN`."""


def _literal_assignments(path: Path, names: tuple[str, ...]) -> dict[str, Any] | None:
    """The literal values assigned to *names* at the top level of *path*, or None when it has none."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return None
    found: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        if name in names:
            try:
                found[name] = ast.literal_eval(value)
            except ValueError:
                return None
    return found if "revision" in found else None


def head(folder: str | Path) -> Found:
    """The single newest revision in *folder*; None for no revisions; :data:`UNKNOWN` when unsure."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(Path(folder).glob("*.py")):
        if path.name.startswith("__"):
            continue
        values = _literal_assignments(path, ("revision", "down_revision", "depends_on"))
        if values is None or not isinstance(values["revision"], str) or values.get("depends_on"):
            return UNKNOWN
        revisions.add(values["revision"])
        down = values.get("down_revision")
        if isinstance(down, str):
            parents.add(down)
        elif isinstance(down, (tuple, list)):  # a merge point
            parents.update(down)
        elif down is not None:
            return UNKNOWN
    if not revisions:
        return None
    heads = revisions - parents
    if len(heads) != 1 or not parents <= revisions:
        return UNKNOWN
    return heads.pop()


def stamped(connection: sa.engine.Connection, version_table: str = "alembic_version") -> Found:
    """The revision *connection*'s database is stamped at in *version_table* (None without the table)."""
    if not sa.inspect(connection).has_table(version_table):
        return None
    table = sa.table(version_table, sa.column("version_num"))
    rows = connection.execute(sa.select(table.c.version_num)).scalars().all()
    connection.rollback()  # a read: leave no transaction open behind us
    if not rows:
        return None
    return rows[0] if len(rows) == 1 else UNKNOWN
