"""Row counters kept by triggers (meta.total without a COUNT), and indexes for the filtered build pages.

Revision ID: 0005
Revises: 0004
"""

import time

import sqlalchemy as sa
from alembic import op

from master.db import counters

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


INDEXES: list[tuple[str, tuple[str, ...]]] = []
"""Further indexes the web UI's and the plugins' queries need: (table, columns)."""


def _progress(message: str) -> None:
    # master.db.migrate passes upgrade-master's progress printer; plain alembic runs print
    config = op.get_context().config  # None only outside a command run, where nothing passes a printer
    (config.attributes.get("progress", print) if config is not None else print)(message)


def _rows(table: str) -> int:
    count: int = op.get_bind().execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    return count


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    builds = _rows("builds")
    _progress(f"  indexing builds ({builds:,} rows): builderid, results, id")
    began = time.monotonic()
    # builds?builderid=X&results=R ordered by id: a range of the index, already in order
    op.drop_index("ix_builds_builderid_results", table_name="builds")
    op.create_index(op.f("ix_builds_builderid_results_id"), "builds", ["builderid", "results", "id"], unique=False)
    _progress(f"  indexed builds in {time.monotonic() - began:.1f}s")
    for table, columns in INDEXES:
        began = time.monotonic()
        _progress(f"  indexing {table} ({_rows(table):,} rows): {', '.join(columns)}")
        op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns), unique=False)
        _progress(f"  indexed {table} in {time.monotonic() - began:.1f}s")
    op.create_table(
        "row_counts",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_row_counts")),
    )
    _progress("  counting rows of " + ", ".join(counters.COUNTERS))
    counters.recount(lambda sql: bind.execute(sa.text(sql)), dialect, _progress)
    for statement in counters.trigger_ddl(dialect):
        bind.execute(sa.text(statement))
