"""Count builds per builder and result, so that a builder's failures know their total without a COUNT.

``builds?builderid=X&results=R`` counted up to 10,000 matching rows per request: at a
million builds a builder's failures are thousands of rows, and the count cost more than the
page.  The counting triggers are made again from :mod:`master.db.counters` (which now has
the builderid x results counter) and every counter is recounted.

Revision ID: 0008
Revises: 0007
"""

import time

import sqlalchemy as sa
from alembic import op

from master.db import counters

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _progress(message: str) -> None:
    # master.db.migrate passes upgrade-master's progress printer; plain alembic runs print
    config = op.get_context().config  # None only outside a command run, where nothing passes a printer
    (config.attributes.get("progress", print) if config is not None else print)(message)


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    began = time.monotonic()
    for statement in counters.drop_ddl(dialect) + counters.trigger_ddl(dialect):
        bind.execute(sa.text(statement))
    _progress("  counting builds per builder and result")
    counters.recount(lambda sql: bind.execute(sa.text(sql)), dialect, _progress)
    _progress(f"  recounted in {time.monotonic() - began:.1f}s")


def downgrade() -> None:
    pass  # the extra counter rows and trigger statements are harmless to 0007's code
