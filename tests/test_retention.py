"""Retention: old log contents emptied, old builds deleted, recent ones kept, on both backends; the CLI."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from cliutil import run

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db import schema
from master.retention import DAY, clean_up


async def build_with_log(data: DataAPI, builderid: int, brid: int, age_days: float) -> tuple[int, int]:
    u = data.updates
    buildid, _ = await u.add_build(builderid, brid, None, None)
    stepid, _, _ = await u.add_step(buildid, "compile")
    logid = await u.add_log(stepid, "stdio", "s")
    await u.append_log(logid, "oline one\noline two\n")
    await u.finish_log(logid)
    await u.finish_build(buildid, 0)
    # the past is set directly: no update method moves a build back in time
    await data.storage.execute(
        sa.update(schema.builds)
        .where(schema.builds.c.id == buildid)
        .values(complete_at=int(time.time() - age_days * DAY))
    )
    return buildid, logid


@pytest_twisted.ensureDeferred
async def test_old_logs_are_emptied_and_old_builds_deleted(storage: Any) -> None:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    builderid = await data.updates.update_builder("b")
    bsid, brids = await data.updates.add_buildset(
        scheduler="s", sourcestamps=[], reason="r", properties={}, builderids=[builderid]
    )
    old_build, old_log = await build_with_log(data, builderid, brids[builderid], age_days=90)
    mid_build, mid_log = await build_with_log(data, builderid, brids[builderid], age_days=40)
    new_build, new_log = await build_with_log(data, builderid, brids[builderid], age_days=1)
    lines: list[str] = []

    assert await clean_up(data, log_days=30, build_days=None, progress=lines.append) == (2, 0)
    assert lines[0].startswith("emptying the logs of builds that completed more than 30 day(s) ago")
    for logid, emptied in ((old_log, True), (mid_log, True), (new_log, False)):
        log = await data.get(("logs", str(logid)))
        contents = await data.get(("logs", str(logid), "contents"))
        assert (log["type"] == "d") is emptied and log["num_lines"] == 2
        assert contents["content"] == ("" if emptied else "oline one\noline two\n")
    assert await clean_up(data, log_days=30, build_days=None, progress=lines.append) == (0, 0)  # idempotent

    assert await clean_up(data, log_days=None, build_days=60, progress=lines.append) == (0, 1)
    assert await data.get(("builds", str(old_build))) is None
    assert await data.get(("logs", str(old_log))) is None  # gone with its build
    remaining = await data.get("builds", query={"order": ["buildid"]})
    assert [b["buildid"] for b in remaining.items] == [mid_build, new_build]
    assert (await data.get(("buildrequests", str(brids[builderid]))))["buildrequestid"] == brids[builderid]


@pytest.mark.slow  # runs ci-master cleanup
def test_cleanup_command(tmp_path: Path) -> None:
    assert run("create-master", "m", cwd=tmp_path).returncode == 0
    master_dir = tmp_path / "m"
    nothing = run("cleanup", str(master_dir), cwd=tmp_path)
    assert nothing.returncode == 1 and "nothing to do" in nothing.stderr
    done = run("cleanup", str(master_dir), "--builds-older-than", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleting builds that completed more than 30 day(s) ago" in done.stdout
    assert "0 build(s) deleted" in done.stdout
    bad = run("cleanup", str(master_dir), "--logs-older-than", "-1", cwd=tmp_path)
    assert bad.returncode == 1 and "--logs-older-than: expected a positive number" in bad.stderr
