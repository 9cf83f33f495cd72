"""The DCI plugin's tables (prefixed ``dci_``); only :mod:`plugins.dci.resources` reads or writes them.

Ids are UUID strings; times are ISO 8601 UTC text with microseconds (``2019-10-10T06:14:55.269457``),
a fixed width, so text order is time order on both backends.  JSON values (``data``, ``tags``,
``component_types``) are stored as JSON text.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_UUID = sa.String(36)
_TIME = sa.String(26)


def _common() -> list[sa.Column]:
    """Columns every DCI entity has: id, etag, state and the two times."""
    return [
        sa.Column("id", _UUID, primary_key=True),
        sa.Column("etag", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    ]


teams = sa.Table(
    "dci_teams",
    metadata,
    *_common(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("has_pre_release_access", sa.Boolean, nullable=False, server_default=sa.false()),
)

remotecis = sa.Table(
    "dci_remotecis",
    metadata,
    *_common(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("team_id", _UUID, sa.ForeignKey("dci_teams.id"), nullable=False, index=True),
    # the HMAC key must be known to check a signature, so it is kept as is (as the DCI server does)
    sa.Column("api_secret", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.UniqueConstraint("team_id", "name", name="dci_remotecis_team_name"),
)

feeders = sa.Table(
    "dci_feeders",
    metadata,
    *_common(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("team_id", _UUID, sa.ForeignKey("dci_teams.id"), nullable=False, index=True),
    sa.Column("api_secret", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.UniqueConstraint("team_id", "name", name="dci_feeders_team_name"),
)

topics = sa.Table(
    "dci_topics",
    metadata,
    *_common(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("component_types", sa.Text, nullable=False, server_default="[]"),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("export_control", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("next_topic_id", _UUID, nullable=True),
    sa.Column("product_id", _UUID, nullable=True),
    sa.Index("dci_topics_created", "created_at"),
)

components = sa.Table(
    "dci_components",
    metadata,
    *_common(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("canonical_project_name", sa.String(255), nullable=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("version", sa.String(255), nullable=True),
    sa.Column("type", sa.String(255), nullable=False),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("topic_id", _UUID, sa.ForeignKey("dci_topics.id"), nullable=False),
    sa.Column("team_id", _UUID, nullable=True),
    sa.Column("released_at", _TIME, nullable=False),
    # scheduling takes the newest active component of a type in a topic: this index answers it
    sa.Index("dci_components_topic_type", "topic_id", "type", "created_at"),
    sa.Index("dci_components_topic_released", "topic_id", "released_at"),
)

jobs = sa.Table(
    "dci_jobs",
    metadata,
    *_common(),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_reason", sa.Text, nullable=True),
    sa.Column("configuration", sa.Text, nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
    sa.Column("data", sa.Text, nullable=False, server_default="{}"),
    sa.Column("duration", sa.Integer, nullable=False, server_default="0"),
    sa.Column("topic_id", _UUID, sa.ForeignKey("dci_topics.id"), nullable=True, index=True),
    sa.Column("topic_id_secondary", _UUID, nullable=True),
    sa.Column("remoteci_id", _UUID, sa.ForeignKey("dci_remotecis.id"), nullable=False, index=True),
    sa.Column("team_id", _UUID, sa.ForeignKey("dci_teams.id"), nullable=False),
    sa.Column("product_id", _UUID, nullable=True),
    sa.Column("previous_job_id", _UUID, nullable=True),
    sa.Column("update_previous_job_id", _UUID, nullable=True),
    sa.Column("user_agent", sa.String(255), nullable=True),
    sa.Column("client_version", sa.String(255), nullable=True),
    sa.Index("dci_jobs_team_created", "team_id", "created_at"),
)

jobs_components = sa.Table(
    "dci_jobs_components",
    metadata,
    sa.Column("job_id", _UUID, sa.ForeignKey("dci_jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("component_id", _UUID, sa.ForeignKey("dci_components.id"), primary_key=True),
)

jobstates = sa.Table(
    "dci_jobstates",
    metadata,
    sa.Column("id", _UUID, primary_key=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("job_id", _UUID, sa.ForeignKey("dci_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("team_id", _UUID, nullable=False),
    sa.Index("dci_jobstates_job", "job_id", "created_at"),
)

files = sa.Table(
    "dci_files",
    metadata,
    *_common(),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("mime", sa.String(255), nullable=True),
    sa.Column("md5", sa.String(32), nullable=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("job_id", _UUID, sa.ForeignKey("dci_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("jobstate_id", _UUID, nullable=True),
    sa.Column("team_id", _UUID, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Index("dci_files_job", "job_id", "created_at"),
)

tests_results = sa.Table(
    "dci_tests_results",
    metadata,
    sa.Column("id", _UUID, primary_key=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("updated_at", _TIME, nullable=False),
    sa.Column("name", sa.String(512), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("success", sa.Integer, nullable=False),
    sa.Column("skips", sa.Integer, nullable=False),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("errors", sa.Integer, nullable=False),
    sa.Column("regressions", sa.Integer, nullable=False, server_default="0"),
    sa.Column("successfixes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("time", sa.BigInteger, nullable=False),
    sa.Column("file_id", _UUID, sa.ForeignKey("dci_files.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_id", _UUID, sa.ForeignKey("dci_jobs.id", ondelete="CASCADE"), nullable=False, index=True),
)

jobs_kv = sa.Table(
    "dci_jobs_kv",
    metadata,
    sa.Column("id", _UUID, primary_key=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("job_id", _UUID, sa.ForeignKey("dci_jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "key", name="dci_jobs_kv_job_key"),
)
