"""The reports of the configured reporters (GitHub/GitLab statuses, HTTP pushes, mails), kept until delivered.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reporter_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("reporter", sa.String(length=255), nullable=False),
        sa.Column("buildid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("masterid", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("delivered_at", sa.Integer(), nullable=True),
        sa.Column("failed", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["buildid"], ["builds.id"], name=op.f("fk_reporter_reports_buildid_builds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporter_reports")),
        sa.UniqueConstraint("reporter", "buildid", "state", name=op.f("uq_reporter_reports_reporter_buildid_state")),
    )
    op.create_index(
        op.f("ix_reporter_reports_reporter_masterid_delivered_at"),
        "reporter_reports", ["reporter", "masterid", "delivered_at"], unique=False,
    )
