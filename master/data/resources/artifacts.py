"""Artifacts: the files a build uploaded to the master, listed with their size and sha256, and served raw.

The files live on the disk of the master that received them, under
``<master dir>/artifacts/<buildid>/<name>`` (``name`` is the step's ``masterdest``, a relative
path); the rows say what is there.  ``.../artifacts/NAME/raw`` streams a file a chunk at a
time, whole or a byte range; a NAME holding slashes is one path segment, its slashes sent as
``%2F``.  Reading a file goes through :func:`artifact_path`, which refuses any path leading
outside the build's directory, symbolic links included.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement
from twisted.internet import threads

from master.data.base import Declaration, Endpoint, Field, Kind, RawContent, ResourceType, update_method
from master.data.errors import NotFound
from master.data.resources.common import now
from master.data.resources.steps import build_arg_columns, build_id_of, build_paths
from master.data.resultspec import ResultSpec
from master.data.types import DateTime, Integer, NoneOk, String
from master.db import schema
from master.db.interfaces import IntegrityError, ITransaction

if TYPE_CHECKING:
    from master.data.connector import DataAPI

t = schema.artifacts
ARTIFACTS_DIR = "artifacts"
READ_CHUNK = 256 * 1024
FIELDS = ("artifactid", "buildid", "stepid", "name", "size", "sha256", "content_type", "masterid", "created_at")


def artifacts_root(data: DataAPI) -> Path | None:
    """``<master dir>/artifacts``, or None when the DataAPI belongs to no master directory."""
    return None if data.basedir is None else data.basedir / ARTIFACTS_DIR


def content_type_of(name: str) -> str:
    """The media type a file name suggests; application/octet-stream when it suggests none."""
    guessed, encoding = mimetypes.guess_type(name, strict=False)
    if encoding is not None:  # app.tar.gz is a gzip file, whatever is inside
        return {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}.get(
            encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def artifact_path(root: Path, buildid: int, name: str) -> Path:
    """The file of artifact *name* of build *buildid*; NotFound if it would be outside the build's directory.

    Every component under *root* must be a real directory or file, never a symbolic link.
    """
    parts = name.split("/")
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise NotFound(f"bad artifact name {name!r}")
    current = root / str(buildid)
    for part in ["", *parts]:
        current = current / part if part else current
        try:
            mode = os.lstat(current).st_mode
        except OSError:
            raise NotFound(f"artifact {name!r} of build {buildid} is not on this master's disk") from None
        if stat.S_ISLNK(mode):
            raise NotFound(f"artifact {name!r} of build {buildid}: a symbolic link on the way; not served")
    if not stat.S_ISREG(mode):
        raise NotFound(f"artifact {name!r} of build {buildid} is not a file")
    return current


async def read_file(path: Path, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
    """Bytes *start* to *end* (exclusive; None: to the end) of *path*, a chunk at a time, read in threads."""
    handle = await threads.deferToThread(open, path, "rb")
    try:
        handle.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            size = READ_CHUNK if left is None else min(READ_CHUNK, left)
            chunk = await threads.deferToThread(handle.read, size)
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        handle.close()


def remove_build_files(root: Path, buildid: int, names: list[str]) -> None:
    """Remove artifact files of a build, then the directories left empty (never following links)."""
    base = root / str(buildid)
    for name in names:
        try:
            path = artifact_path(root, buildid, name)
        except NotFound:
            continue
        path.unlink(missing_ok=True)
    # the build's directory goes when nothing recorded is left in it
    if base.is_dir() and not base.is_symlink():
        shutil.rmtree(base, ignore_errors=True)


class ArtifactRawEndpoint(Endpoint):
    """``.../raw``: the artifact's bytes, streamed, with its length, sha256 (as an ETag) and byte ranges."""

    def __init__(self, artifact_pattern: str) -> None:
        super().__init__(f"{artifact_pattern}/raw", Kind.RAW, doc="the artifact's content (byte ranges allowed)")
        self.artifact_pattern = artifact_pattern

    async def get(self, data: DataAPI, spec: ResultSpec, args: dict[str, Any]) -> RawContent:
        """A RawContent reading the file; NotFound when there is no such artifact or no such file here."""
        rtype = data.rtypes["artifacts"]
        endpoint = rtype.endpoint_at(self.artifact_pattern)
        artifact = await endpoint.get(data, ResultSpec(fields=FIELDS), args)
        if artifact is None:
            raise NotFound("no such artifact")
        root = artifacts_root(data)
        if root is None:
            raise NotFound("this master keeps no artifacts")
        path = await threads.deferToThread(artifact_path, root, artifact["buildid"], artifact["name"])
        size = artifact["size"]
        return RawContent(
            artifact["content_type"], read_file(path), artifact["name"].rsplit("/", 1)[-1], length=size,
            read_range=lambda start, end: read_file(path, start, end), etag=artifact["sha256"],
        )


class Artifacts(ResourceType):
    """``/builds/N/artifacts``: what a build uploaded (name, size, sha256, content_type); ``.../raw`` serves one."""

    name = "artifact"
    plural = "artifacts"
    id_field = "artifactid"
    event_paths = ("builds/:buildid/artifacts/:artifactid", "artifacts/:artifactid")

    def declare(self) -> Declaration:
        """Fields and endpoints of artifacts."""
        fields = {
            "artifactid": Field(Integer(), t.c.id, "the artifact's id"),
            "buildid": Field(Integer(), t.c.buildid, "the build that uploaded it"),
            "stepid": Field(NoneOk(Integer()), t.c.stepid, "the step that uploaded it"),
            "name": Field(String(), t.c.name, "its path under the build's artifacts (the step's masterdest)"),
            "size": Field(Integer(), t.c.size, "its size in bytes"),
            "sha256": Field(String(), t.c.sha256, "the SHA-256 of its content, in hex"),
            "content_type": Field(String(), t.c.content_type, "its media type, guessed from its name"),
            "masterid": Field(NoneOk(Integer()), t.c.masterid, "the master whose disk holds it"),
            "created_at": Field(DateTime(), t.c.created_at, "when it was uploaded"),
        }
        endpoints = [
            Endpoint("/artifacts", Kind.COLLECTION),
            Endpoint("/artifacts/n:artifactid"),
            Endpoint("/builds/n:buildid/artifacts", Kind.COLLECTION),
            Endpoint("/builds/n:buildid/artifacts/s:name"),
        ]
        for prefix, builder in build_paths()[1:]:

            def condition(builder: str | None = builder) -> ColumnElement[bool]:
                return t.c.buildid == build_id_of(builder)

            columns = build_arg_columns(builder, condition)
            endpoints += [
                Endpoint(f"{prefix}/artifacts", Kind.COLLECTION, arg_columns=columns),
                Endpoint(f"{prefix}/artifacts/s:name", arg_columns=columns),
            ]
        endpoints += [ArtifactRawEndpoint(e.pattern) for e in endpoints if e.kind is Kind.SINGLE]
        return t, fields, endpoints, {}

    @update_method
    async def add_artifact(
        self, buildid: int, stepid: int | None, name: str, size: int, sha256: str, content_type: str | None = None,
        masterid: int | None = None,
    ) -> int:
        """Record that build *buildid* has file *name* on the disk of *masterid*; return the artifact's id.

        A build that uploads the same name again replaces the record (and the file, which the
        caller has written already).
        """
        values = {"stepid": stepid, "size": size, "sha256": sha256, "masterid": masterid, "created_at": now(),
                  "content_type": content_type or content_type_of(name)}

        async def work(txn: ITransaction) -> tuple[int, bool]:
            if not await txn.fetch_all(sa.select(schema.builds.c.id).where(schema.builds.c.id == buildid)):
                raise NotFound(f"no build {buildid}")
            rows = await txn.fetch_all(sa.select(t.c.id).where(t.c.buildid == buildid, t.c.name == name))
            if rows:
                await txn.execute(sa.update(t).where(t.c.id == rows[0]["id"]).values(**values))
                return rows[0]["id"], False
            inserted = await txn.fetch_all(
                sa.insert(t).values(buildid=buildid, name=name, **values).returning(t.c.id))
            return inserted[0]["id"], True

        for attempt in range(5):
            try:
                artifactid, created = await self.data.storage.transaction(work)
                break
            except IntegrityError:
                if attempt == 4:  # the same name recorded at the same moment by another writer
                    raise
        entity = {"artifactid": artifactid, "buildid": buildid, "name": name, **values}
        await self.produce_event(entity, "new" if created else "updated")
        return artifactid

    @update_method
    async def delete_artifacts_before(self, when: int, batch: int = 200) -> int:
        """Delete the artifacts (rows, and files on this master's disk) of builds that completed before *when*.

        Returns how many were deleted.  Batches of short transactions; the files go first, so
        a file is never left behind without its row.
        """
        builds = schema.builds
        old = (
            sa.select(t.c.id, t.c.buildid, t.c.name)
            .join(builds, builds.c.id == t.c.buildid)
            .where(builds.c.complete_at < when)
            .order_by(t.c.id)
            .limit(batch)
        )
        root = artifacts_root(self.data)
        deleted = 0
        while True:
            rows = await self.data.storage.fetch_all(old)
            if root is not None:
                by_build: dict[int, list[str]] = {}
                for row in rows:
                    by_build.setdefault(row["buildid"], []).append(row["name"])
                for buildid, names in by_build.items():
                    await threads.deferToThread(remove_build_files, root, buildid, names)
            if rows:
                await self.data.storage.execute(sa.delete(t).where(t.c.id.in_([row["id"] for row in rows])))
            deleted += len(rows)
            if len(rows) < batch:
                return deleted
