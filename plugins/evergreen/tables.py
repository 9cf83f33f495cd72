"""The plugin's one table: test results parsed from the JUnit files tasks produce.

Nothing else is stored: versions, builds and tasks are read from ci-master's own tables.
Rows belong to a build and its step, and go with them (``ON DELETE CASCADE``) when build
retention deletes the build.
"""

from __future__ import annotations

import sqlalchemy as sa

from master.sdk import core_tables

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

test_results = sa.Table(
    "evergreen_test_results",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # Column objects, not "builds.id": the core tables live on another MetaData
    sa.Column("buildid", sa.Integer, sa.ForeignKey(core_tables.builds.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("stepid", sa.Integer, sa.ForeignKey(core_tables.steps.c.id, ondelete="CASCADE"), nullable=False),
    sa.Column("logid", sa.Integer, sa.ForeignKey(core_tables.logs.c.id, ondelete="SET NULL")),
    sa.Column("name", sa.String(1024), nullable=False),
    # pass, fail or skip, as Evergreen names test statuses
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("duration_ns", sa.BigInteger, nullable=False, server_default="0"),
    # a task's results, in the order its file listed them
    sa.Index(None, "buildid", "id"),
    sa.Index(None, "stepid"),
)
