"""Artifacts through the data API (as plugins reach them), on both backends: records, raw reads, retention."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from cliutil import run

from master.config import ConfigError, load_config
from master.data.base import RawContent
from master.data.connector import DataAPI
from master.data.errors import NotFound
from master.data.resources import core_resource_types
from master.data.resources.artifacts import content_type_of
from master.db import schema
from master.retention import DAY, clean_up


async def make_data(storage: Any, basedir: Path) -> DataAPI:
    data = DataAPI(storage, basedir=basedir)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    return data


async def build_with_artifact(data: DataAPI, name: str, content: bytes, age_days: float = 0) -> int:
    """A finished build that uploaded *name*: its file written where the steps write it, and recorded."""
    u = data.updates
    builderid = await u.update_builder("b")
    _, brids = await u.add_buildset(scheduler="s", sourcestamps=[], reason="r", properties={}, builderids=[builderid])
    buildid, _ = await u.add_build(builderid, brids[builderid], None, None)
    stepid, _, _ = await u.add_step(buildid, "upload")
    path = data.basedir / "artifacts" / str(buildid) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    await u.add_artifact(buildid, stepid, name, len(content), hashlib.sha256(content).hexdigest())
    await u.finish_build(buildid, 0)
    await data.storage.execute(sa.update(schema.builds).where(schema.builds.c.id == buildid)
                               .values(complete_at=int(time.time() - age_days * DAY)))
    return buildid


async def read_all(raw: RawContent, start: int | None = None, end: int | None = None) -> bytes:
    chunks = raw.chunks if start is None else raw.read_range(start, end)
    return b"".join([chunk async for chunk in chunks])


@pytest_twisted.ensureDeferred
async def test_artifacts_are_listed_and_read_through_the_data_api(storage: Any, tmp_path: Path) -> None:
    data = await make_data(storage, tmp_path)
    content = b"0123456789" * 100_000  # 1 MB: several read chunks
    buildid = await build_with_artifact(data, "dist/app.tar.gz", content)
    events: list[tuple[tuple[str, ...], dict]] = []
    data.events.subscribe(("builds", "*", "artifacts", "*", "*"), lambda key, entity: events.append((key, entity)))

    listed = (await data.get(("builds", str(buildid), "artifacts"))).items
    assert [(a["name"], a["size"], a["sha256"], a["content_type"]) for a in listed] == [
        ("dist/app.tar.gz", len(content), hashlib.sha256(content).hexdigest(), "application/gzip")]
    by_name = await data.get(("builds", str(buildid), "artifacts", "dist/app.tar.gz"))
    assert by_name["artifactid"] == listed[0]["artifactid"]
    by_builder = (await data.get(("builders", "b", "builds", "1", "artifacts"))).items
    assert [a["artifactid"] for a in by_builder] == [by_name["artifactid"]]

    raw = await data.get(("artifacts", str(by_name["artifactid"]), "raw"))
    assert (raw.length, raw.etag, raw.filename) == (len(content), hashlib.sha256(content).hexdigest(), "app.tar.gz")
    assert await read_all(raw) == content
    assert await read_all(raw, 999_990, 1_000_000) == content[-10:]
    raw = await data.get(("builds", str(buildid), "artifacts", "dist/app.tar.gz", "raw"))
    assert await read_all(raw, 5, 300_000) == content[5:300_000]

    # the same name uploaded again replaces the record
    artifactid = await data.updates.add_artifact(buildid, None, "dist/app.tar.gz", 3, "ab" * 32, "text/plain")
    assert artifactid == by_name["artifactid"]
    again = await data.get(("artifacts", str(artifactid)))
    assert (again["size"], again["content_type"], again["stepid"]) == (3, "text/plain", None)
    assert [key[-1] for key, _ in events] == ["updated"]


@pytest_twisted.ensureDeferred
async def test_raw_reads_refuse_missing_files_and_links(storage: Any, tmp_path: Path) -> None:
    data = await make_data(storage, tmp_path)
    buildid = await build_with_artifact(data, "a/b.txt", b"b\n")
    stored = tmp_path / "artifacts" / str(buildid)
    (stored / "a" / "b.txt").unlink()
    with pytest.raises(NotFound, match="not on this master's disk"):
        await data.get(("builds", str(buildid), "artifacts", "a/b.txt", "raw"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.txt").write_text("secret\n")
    (stored / "a").rmdir()
    (stored / "a").symlink_to(outside)
    with pytest.raises(NotFound, match="symbolic link"):
        await data.get(("builds", str(buildid), "artifacts", "a/b.txt", "raw"))
    with pytest.raises(NotFound, match="no such artifact"):
        await data.get(("builds", str(buildid), "artifacts", "nothing", "raw"))


@pytest_twisted.ensureDeferred
async def test_retention_deletes_old_artifacts_with_their_files(storage: Any, tmp_path: Path) -> None:
    data = await make_data(storage, tmp_path)
    old = await build_with_artifact(data, "old.bin", b"old", age_days=40)
    recent = await build_with_artifact(data, "new.bin", b"new", age_days=1)
    lines: list[str] = []
    assert await clean_up(data, None, None, progress=lines.append, artifact_days=30) == (0, 0)
    assert "1 artifact(s) deleted" in lines[-1]
    assert not (tmp_path / "artifacts" / str(old)).exists()
    assert (tmp_path / "artifacts" / str(recent) / "new.bin").read_bytes() == b"new"
    assert (await data.get(("builds", str(old), "artifacts"))).items == []
    assert len((await data.get(("builds", str(recent), "artifacts"))).items) == 1
    assert await data.get(("builds", str(old))) is not None  # the build stays

    # builds deleted by build retention lose their files too, whatever artifact_retention_days says
    await data.storage.execute(sa.update(schema.builds).where(schema.builds.c.id == recent)
                               .values(complete_at=int(time.time() - 100 * DAY)))
    await clean_up(data, None, 60, progress=lines.append, artifact_days=None)
    assert not (tmp_path / "artifacts" / str(recent)).exists()
    assert await data.get(("builds", str(recent))) is None


def test_artifact_retention_days_is_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "master.cfg"
    cfg.write_text("from master.config import MasterConfig\nconfig = MasterConfig(artifact_retention_days=-1)\n")
    with pytest.raises(ConfigError, match="artifact_retention_days: expected a positive number"):
        load_config(tmp_path)
    cfg.write_text("from master.config import MasterConfig\nconfig = MasterConfig(artifact_retention_days=7)\n")
    assert load_config(tmp_path).artifact_retention_days == 7


@pytest.mark.slow  # runs ci-master cleanup
def test_cleanup_command_deletes_artifacts(tmp_path: Path) -> None:
    assert run("create-master", "m", cwd=tmp_path).returncode == 0
    done = run("cleanup", str(tmp_path / "m"), "--artifacts-older-than", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "deleting the artifacts of builds that completed more than 30 day(s) ago" in done.stdout
    assert "0 artifact(s) deleted" in done.stdout
    bad = run("cleanup", str(tmp_path / "m"), "--artifacts-older-than", "0", cwd=tmp_path)
    assert bad.returncode == 1 and "--artifacts-older-than: expected a positive number" in bad.stderr


@pytest.mark.parametrize("name, expected", [
    ("app.tar.gz", "application/gzip"), ("report.html", "text/html"), ("a.txt", "text/plain"),
    ("blob", "application/octet-stream"), ("x.json", "application/json"),
])
def test_content_types_come_from_names(name: str, expected: str) -> None:
    assert content_type_of(name) == expected
