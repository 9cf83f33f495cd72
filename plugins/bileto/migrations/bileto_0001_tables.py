"""Create bileto_tickets and bileto_comments."""

import sqlalchemy as sa
from alembic import op

revision = "bileto_0001"
down_revision = None
branch_labels = ("bileto",)

# a revision is frozen: it spells out the columns of its time rather than importing tables.py
TEXT_FIELDS = (
    "description", "dest", "distribution", "download_links", "jenkins", "landers", "merge_proposals",
    "published_versions", "qa_signoff", "series", "siloname", "sources", "status", "sync_request", "test_plan",
)


def upgrade() -> None:
    """Create both tables and their indexes."""
    op.create_table(
        "bileto_tickets",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("date", sa.Text, nullable=False),
        *(sa.Column(name, sa.Text, nullable=False, server_default="") for name in TEXT_FIELDS),
        sa.Column("search", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("bileto_tickets_status", "bileto_tickets", ["status"])
    op.create_table(
        "bileto_comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("bileto_tickets.id"), nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("date", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("bileto_comments_request", "bileto_comments", ["request_id", "id"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_table("bileto_comments")
    op.drop_table("bileto_tickets")
