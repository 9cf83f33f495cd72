"""The core tables, declared once.

Fresh databases are created from this metadata and stamped at the newest migration;
older databases are brought here by the Alembic migrations in ``master/db/migrations``
(a test checks that both roads lead to the same schema).  Conventions: times are integer
seconds since the epoch; JSON values are stored as text; every index names the query it
serves.  Plugins declare their tables on their own ``MetaData``.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)


masters = sa.Table(
    "masters",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("last_active", sa.Integer, nullable=False),
)

projects = sa.Table(
    "projects",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("slug", sa.String(255), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("description_format", sa.String(32)),
    sa.Column("description_html", sa.Text),
)

builders = sa.Table(
    "builders",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text),
    sa.Column("description_format", sa.String(32)),
    sa.Column("description_html", sa.Text),
    sa.Column("projectid", sa.Integer, sa.ForeignKey("projects.id", ondelete="SET NULL"), index=True),
)

builder_tags = sa.Table(
    "builder_tags",
    metadata,
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(255), primary_key=True),
    sa.Index(None, "tag"),
)

builder_masters = sa.Table(
    "builder_masters",
    metadata,
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "masterid"),
)

workers = sa.Table(
    "workers",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("info", sa.Text, nullable=False, server_default="{}"),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("pause_reason", sa.Text),
    sa.Column("graceful", sa.Boolean, nullable=False, server_default=sa.false()),
)

configured_workers = sa.Table(
    "configured_workers",
    metadata,
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("workerid", sa.Integer, sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "workerid"),
)

connected_workers = sa.Table(
    "connected_workers",
    metadata,
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("workerid", sa.Integer, sa.ForeignKey("workers.id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "workerid"),
)

sourcestamps = sa.Table(
    "sourcestamps",
    metadata,
    _id(),
    sa.Column("ss_hash", sa.String(40), nullable=False, unique=True),
    sa.Column("branch", sa.String(255)),
    sa.Column("revision", sa.String(255)),
    sa.Column("repository", sa.String(512), nullable=False, server_default=""),
    sa.Column("codebase", sa.String(255), nullable=False, server_default=""),
    sa.Column("project", sa.String(512), nullable=False, server_default=""),
    sa.Column("created_at", sa.Integer, nullable=False),
)

changes = sa.Table(
    "changes",
    metadata,
    _id(),
    sa.Column("author", sa.String(255), nullable=False),
    sa.Column("committer", sa.String(255)),
    sa.Column("comments", sa.Text, nullable=False, server_default=""),
    sa.Column("branch", sa.String(255)),
    sa.Column("revision", sa.String(255)),
    sa.Column("revlink", sa.String(512)),
    sa.Column("when_timestamp", sa.Integer, nullable=False),
    sa.Column("category", sa.String(255)),
    sa.Column("repository", sa.String(512), nullable=False, server_default=""),
    sa.Column("codebase", sa.String(255), nullable=False, server_default=""),
    sa.Column("project", sa.String(512), nullable=False, server_default=""),
    sa.Column("sourcestampid", sa.Integer, sa.ForeignKey("sourcestamps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("parent_changeid", sa.Integer, sa.ForeignKey("changes.id", ondelete="SET NULL")),
    sa.Index(None, "sourcestampid"),
    sa.Index(None, "branch"),
    sa.Index(None, "project"),
)

change_files = sa.Table(
    "change_files",
    metadata,
    sa.Column("changeid", sa.Integer, sa.ForeignKey("changes.id", ondelete="CASCADE"), nullable=False),
    sa.Column("filename", sa.String(1024), nullable=False),
    sa.Index(None, "changeid"),
)

change_properties = sa.Table(
    "change_properties",
    metadata,
    sa.Column("changeid", sa.Integer, sa.ForeignKey("changes.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("source", sa.String(255), nullable=False, server_default="Change"),
)

schedulers = sa.Table(
    "schedulers",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="SET NULL")),
)

forceschedulers = sa.Table(
    "forceschedulers",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("button_name", sa.Text, nullable=False),
    sa.Column("builder_names", sa.Text, nullable=False, server_default="[]"),
    sa.Column("all_fields", sa.Text, nullable=False, server_default="[]"),
)

buildsets = sa.Table(
    "buildsets",
    metadata,
    _id(),
    sa.Column("external_idstring", sa.String(255)),
    sa.Column("reason", sa.String(255)),
    sa.Column("submitted_at", sa.Integer, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("complete_at", sa.Integer),
    sa.Column("results", sa.SmallInteger),
    sa.Column("parent_buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="SET NULL", use_alter=True)),
    sa.Column("parent_relationship", sa.Text),
    sa.Column("rebuilt_buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="SET NULL", use_alter=True)),
    sa.Column("scheduler", sa.String(255)),
    sa.Index(None, "complete"),
    sa.Index(None, "submitted_at"),
    sa.Index(None, "rebuilt_buildid"),  # the UI's build page; deleting builds (SET NULL)
    sa.Index(None, "parent_buildid"),
)

buildset_properties = sa.Table(
    "buildset_properties",
    metadata,
    sa.Column("buildsetid", sa.Integer, sa.ForeignKey("buildsets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("source", sa.String(255), nullable=False),
)

buildset_sourcestamps = sa.Table(
    "buildset_sourcestamps",
    metadata,
    sa.Column("buildsetid", sa.Integer, sa.ForeignKey("buildsets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("sourcestampid", sa.Integer, sa.ForeignKey("sourcestamps.id", ondelete="CASCADE"), primary_key=True),
    sa.Index(None, "sourcestampid"),
)

buildrequests = sa.Table(
    "buildrequests",
    metadata,
    _id(),
    sa.Column("buildsetid", sa.Integer, sa.ForeignKey("buildsets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("results", sa.SmallInteger),
    sa.Column("submitted_at", sa.Integer, nullable=False),
    sa.Column("complete_at", sa.Integer),
    sa.Column("waited_for", sa.Boolean, nullable=False, server_default=sa.false()),
    # A claim is a column, not a row of its own: one UPDATE ... WHERE claimed_by_masterid
    # IS NULL claims a request exactly once, on SQLite and on a shared PostgreSQL alike.
    sa.Column("claimed_by_masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="SET NULL")),
    sa.Column("claimed_at", sa.Integer),
    sa.Index(None, "buildsetid"),
    # the queue: pending requests of a builder by priority, then age
    sa.Index(None, "complete", "builderid", "priority", "submitted_at"),
    sa.Index(None, "builderid", "submitted_at"),
)

builds = sa.Table(
    "builds",
    metadata,
    _id(),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("buildrequestid", sa.Integer, sa.ForeignKey("buildrequests.id", ondelete="CASCADE"), nullable=False),
    sa.Column("workerid", sa.Integer, sa.ForeignKey("workers.id", ondelete="SET NULL")),
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="SET NULL")),
    sa.Column("started_at", sa.Integer, nullable=False),
    sa.Column("complete_at", sa.Integer),
    sa.Column("locks_duration_s", sa.Integer, nullable=False, server_default="0"),
    sa.Column("state_string", sa.Text, nullable=False, server_default=""),
    sa.Column("results", sa.SmallInteger),
    # builder pages: builders/N/builds?order=-number, by number and by completion
    sa.UniqueConstraint("builderid", "number"),
    # builds?builderid=X&results=R, ordered by id (PostgreSQL's indexes do not end with the row id)
    sa.Index(None, "builderid", "results", "id"),
    sa.Index(None, "buildrequestid"),
    sa.Index(None, "workerid"),
    sa.Index(None, "started_at"),
    sa.Index(None, "complete_at"),
    # builders/N/builds?complete=true counts from the index alone
    sa.Index(None, "builderid", "complete_at"),
)

build_properties = sa.Table(
    "build_properties",
    metadata,
    sa.Column("buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("source", sa.String(255), nullable=False),
)

steps = sa.Table(
    "steps",
    metadata,
    _id(),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    sa.Column("started_at", sa.Integer),
    sa.Column("locks_acquired_at", sa.Integer),
    sa.Column("complete_at", sa.Integer),
    sa.Column("state_string", sa.Text, nullable=False, server_default=""),
    sa.Column("results", sa.SmallInteger),
    sa.Column("urls", sa.Text, nullable=False, server_default="[]"),
    sa.Column("hidden", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.UniqueConstraint("buildid", "number"),
    sa.UniqueConstraint("buildid", "name"),
)

logs = sa.Table(
    "logs",
    metadata,
    _id(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("slug", sa.String(255), nullable=False),
    sa.Column("stepid", sa.Integer, sa.ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("num_lines", sa.Integer, nullable=False, server_default="0"),
    # 's' stdio (lines prefixed o/e/h), 't' text, 'h' html
    sa.Column("type", sa.String(1), nullable=False, server_default="s"),
    sa.UniqueConstraint("stepid", "slug"),
)

logchunks = sa.Table(
    "logchunks",
    metadata,
    sa.Column("logid", sa.Integer, sa.ForeignKey("logs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("first_line", sa.Integer, primary_key=True),
    sa.Column("last_line", sa.Integer, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    # 0 plain utf-8, 1 zlib
    sa.Column("compressed", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Index(None, "logid", "last_line"),
)

# The event journal: every published change, in order, for a configurable window.  Clients that
# reconnect resume from an id; other masters read rows after the last id they delivered (a
# NOTIFY tells them when).  AUTOINCREMENT so SQLite never reuses an id once old rows are pruned.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.Integer, nullable=False),
    sa.Column("masterid", sa.Integer, nullable=True),
    # routing keys, "/"-joined and "\n"-separated; the last segment is the event name
    sa.Column("keys", sa.Text, nullable=False),
    sa.Column("rtype", sa.String(255), nullable=False),
    sa.Column("entity", sa.Text, nullable=False),
    sa.Index(None, "at"),
    sqlite_autoincrement=True,
)

# Reports of the configured reporters (master/reporters): one row per reporter, build and state
# ("start" or "finish"), written before delivery is tried so that a restart delivers what a
# stopped or killed master left, and the unique key keeps a report from being made twice.
# event_id is the journal id of the build's event: the highest one a reporter has recorded on a
# master is where its catch-up from the journal resumes after a crash.
reporter_reports = sa.Table(
    "reporter_reports",
    metadata,
    _id(),
    sa.Column("reporter", sa.String(255), nullable=False),
    sa.Column("buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("masterid", sa.Integer, nullable=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.Integer, nullable=False),
    sa.Column("delivered_at", sa.Integer),
    # why the report was given up (a 4xx, or the retry limit), else null
    sa.Column("failed", sa.Text),
    sa.UniqueConstraint("reporter", "buildid", "state"),
    # a reporter's undelivered reports on its master, and its catch-up point
    sa.Index(None, "reporter", "masterid", "delivered_at"),
)

# Row counters kept by triggers (master/db/counters.py), so that big collections know their
# size without a COUNT: ``builds``, ``builds/builderid=3``, ``builds/builderid=3/complete=1``...
row_counts = sa.Table(
    "row_counts",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False, server_default="0"),
)

# Files builds uploaded to the master (FileUpload, DirectoryUpload...), kept on the disk of the master
# that received them under <master dir>/artifacts/<buildid>/<name>; a row per file.
artifacts = sa.Table(
    "artifacts",
    metadata,
    _id(),
    sa.Column("buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    sa.Column("stepid", sa.Integer, sa.ForeignKey("steps.id", ondelete="SET NULL")),
    # the path under the build's artifacts directory ("dist/app.tar.gz"), the masterdest of the step
    sa.Column("name", sa.String(1024), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="SET NULL")),
    sa.Column("created_at", sa.Integer, nullable=False),
    # builds/N/artifacts/NAME; a second upload to the same name replaces the row
    sa.UniqueConstraint("buildid", "name"),
    # retention: the artifacts of old builds
    sa.Index(None, "created_at"),
)

# Locks (MasterLock, WorkerLock) taken by builds and steps: a row per slot taken.  The primary
# key (lock, slot) makes a claim atomic across masters: two claims of one slot cannot both commit.
lock_claims = sa.Table(
    "lock_claims",
    metadata,
    # "master:NAME", or "worker:WORKER:NAME" (a worker lock counts per worker)
    sa.Column("lock", sa.String(255), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True),
    # one acquisition (a build's locks, or a step's): released together
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("masterid", sa.Integer, sa.ForeignKey("masters.id", ondelete="CASCADE"), nullable=False),
    sa.Column("buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="CASCADE")),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("claimed_at", sa.Integer, nullable=False),
    # release by owner; a master declared dead releases its claims
    sa.Index(None, "owner"),
    sa.Index(None, "masterid"),
    sa.Index(None, "buildid"),
)

# Test results (Buildbot's test_result_sets and test_results), filled by the TestResults step.
test_result_sets = sa.Table(
    "test_result_sets",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("buildid", sa.Integer, sa.ForeignKey("builds.id", ondelete="CASCADE"), nullable=False),
    sa.Column("stepid", sa.Integer, sa.ForeignKey("steps.id", ondelete="CASCADE"), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("value_unit", sa.Text, nullable=False),
    sa.Column("tests_passed", sa.Integer),
    sa.Column("tests_failed", sa.Integer),
    sa.Column("complete", sa.Boolean, nullable=False, server_default=sa.false()),
    # builds/N/test_result_sets, steps/N/test_result_sets
    sa.Index(None, "buildid"),
    sa.Index(None, "stepid"),
    sa.Index(None, "builderid"),
)

test_results = sa.Table(
    "test_results",
    metadata,
    _id(),
    sa.Column("builderid", sa.Integer, sa.ForeignKey("builders.id", ondelete="CASCADE"), nullable=False),
    sa.Column("test_result_setid", sa.Integer, sa.ForeignKey("test_result_sets.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("test_name", sa.Text),
    sa.Column("test_code_path", sa.Text),
    sa.Column("line", sa.Integer),
    sa.Column("duration_ns", sa.BigInteger),
    sa.Column("value", sa.Text, nullable=False),
    # test_result_sets/N/results
    sa.Index(None, "test_result_setid"),
)
