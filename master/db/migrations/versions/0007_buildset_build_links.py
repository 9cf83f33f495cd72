"""Index buildsets' links to builds (rebuilt_buildid, parent_buildid).

The web UI's build page asks ``buildsets?rebuilt_buildid=N&limit=1`` for every build it
shows: without an index that is a scan of every buildset (190 ms at 1,000,000 builds on
PostgreSQL).  Both columns are foreign keys ``ON DELETE SET NULL`` to builds, so deleting
old builds (retention) looked through every buildset per build as well.

Revision ID: 0007
Revises: 0006
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("rebuilt_buildid", "parent_buildid")


def _progress(message: str) -> None:
    # master.db.migrate passes upgrade-master's progress printer; plain alembic runs print
    config = op.get_context().config  # None only outside a command run, where nothing passes a printer
    (config.attributes.get("progress", print) if config is not None else print)(message)


def upgrade() -> None:
    rows = op.get_bind().execute(sa.text("SELECT count(*) FROM buildsets")).scalar_one()
    for column in COLUMNS:
        began = time.monotonic()
        _progress(f"  indexing buildsets ({rows:,} rows): {column}")
        op.create_index(op.f(f"ix_buildsets_{column}"), "buildsets", [column], unique=False)
        _progress(f"  indexed buildsets in {time.monotonic() - began:.1f}s")


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(op.f(f"ix_buildsets_{column}"), table_name="buildsets")
