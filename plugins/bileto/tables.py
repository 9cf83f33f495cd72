"""The Bileto plugin's tables: landing tickets and their comments.

The schema is owned by the plugin's Alembic revisions (``plugins/bileto/migrations``);
these Table objects describe the newest revision, for the queries and for creating the
tables of a new database at once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


class CaseInsensitiveText(sa.types.TypeDecorator):
    """Text whose ``LIKE`` comparisons ignore case, on both backends.

    Bileto's queries are substring searches that ignore case (``?qa_signoff=ready`` finds
    "Ready for QA").  The data API filters text with ``column LIKE :pattern``; making the
    comparison case-insensitive here, in the column's type, keeps each query's SQL the same
    whatever the value (so it is compiled once) and lets PostgreSQL run ``ILIKE`` while
    SQLite runs ``lower(column) LIKE lower(:pattern)``.  Equality stays exact.
    """

    impl = sa.Text
    cache_ok = True

    class comparator_factory(sa.Text.Comparator[str]):  # noqa: N801 (SQLAlchemy's hook name)
        """The comparator turning ``like`` into ``ilike``."""

        def like(self, other: Any, escape: str | None = None) -> Any:
            """``ILIKE`` in place of ``LIKE``."""
            return self.ilike(other, escape=escape)


TEXT_FIELDS = (
    "description",
    "dest",
    "distribution",
    "download_links",
    "jenkins",
    "landers",
    "merge_proposals",
    "published_versions",
    "qa_signoff",
    "series",
    "siloname",
    "sources",
    "status",
    "sync_request",
    "test_plan",
)
"""The ticket fields a client writes, all text ("" when empty), in the seed's (alphabetical) order."""

metadata = sa.MetaData()

tickets = sa.Table(
    "bileto_tickets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # ISO 8601 with microseconds, UTC, as text: the same on both backends and it sorts by time
    sa.Column("date", sa.Text, nullable=False),
    *(sa.Column(name, CaseInsensitiveText, nullable=False, server_default="") for name in TEXT_FIELDS),
    sa.Column("search", CaseInsensitiveText, nullable=False, server_default=""),
    sa.Index("bileto_tickets_status", "status"),
)

comments = sa.Table(
    "bileto_comments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("request_id", sa.Integer, sa.ForeignKey("bileto_tickets.id"), nullable=False),
    sa.Column("author", CaseInsensitiveText, nullable=False),
    sa.Column("date", sa.Text, nullable=False),
    sa.Column("text", CaseInsensitiveText, nullable=False),
    sa.Index("bileto_comments_request", "request_id", "id"),
)
