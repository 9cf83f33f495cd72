"""Artifacts: the files builds upload to the master (FileUpload, DirectoryUpload...).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("buildid", sa.Integer(), nullable=False),
        sa.Column("stepid", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("masterid", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["buildid"], ["builds.id"], name=op.f("fk_artifacts_buildid_builds"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["masterid"], ["masters.id"], name=op.f("fk_artifacts_masterid_masters"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["stepid"], ["steps.id"], name=op.f("fk_artifacts_stepid_steps"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("buildid", "name", name=op.f("uq_artifacts_buildid_name")),
    )
    op.create_index(op.f("ix_artifacts_created_at"), "artifacts", ["created_at"], unique=False)
