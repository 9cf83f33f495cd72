"""The self-serve plugin's one table: the job records of BuildAPI's ``jobrequests``."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

jobs = sa.Table(
    "selfserve_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # rebuild_build, cancel_request, ... as BuildAPI names them
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("who", sa.String(255), nullable=False),
    sa.Column("when", sa.Integer, nullable=False),
    # the action's arguments, JSON text
    sa.Column("what", sa.Text, nullable=False),
    # the agent running it (a master's agent), and since when: a claim older than the
    # agent's timeout is taken over, so a job survives the crash of the master running it
    sa.Column("claimed_by", sa.String(255)),
    sa.Column("claimed_at", sa.Integer),
    sa.Column("completed_at", sa.Integer),
    # {"body": {"errors": bool, "msg": str, ...}, "request_id": id}, JSON text
    sa.Column("complete_data", sa.Text),
    # the agent's queue: incomplete jobs, oldest first
    sa.Index("ix_selfserve_jobs_completed_at_id", "completed_at", "id"),
    # /self-serve/jobs lists newest first
    sa.Index("ix_selfserve_jobs_when", "when"),
)
