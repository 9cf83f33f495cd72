"""Index builds by (builderid, complete_at) so builder pages count completed builds from the index.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_builds_builderid_complete_at"), "builds", ["builderid", "complete_at"], unique=False)
