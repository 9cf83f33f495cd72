"""File transfer steps: FileUpload, DirectoryUpload, MultipleFileUpload, FileDownload, StringDownload.

They move files over the worker's own WebSocket (see :mod:`master.engine.filelink`), a chunk at a
time.  Uploads land in the build's artifacts directory on the master,
``<master dir>/artifacts/<buildid>/<masterdest>``, and nowhere else: a ``masterdest`` that is
absolute or holds ``..`` is refused, and so is a path through a symbolic link.  An upload is
written under a temporary name beside its destination and renamed once its sha256 and size
match the worker's, so a worker lost half-way leaves nothing under the final name.  Each
uploaded file is recorded as an artifact of the build (``builds/N/artifacts``) and linked from
the step's ``urls``, which Buildbot's web UI shows on the build page.

As in Buildbot: ``workersrc`` and ``workerdest`` are relative to the step's ``workdir`` on the
worker (``workersrc`` may be absolute), ``mastersrc`` is relative to the master directory,
``maxsize`` bounds the bytes sent, ``mode`` sets the permission bits of the written file
(by default those of the worker's file are kept, less setuid, setgid and sticky).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from twisted.internet import threads
from twisted.logger import Logger

from master.data.resources.artifacts import artifacts_root, content_type_of
from master.engine.filelink import FileTransfers, Transfer, TransferFailed, TransferStopped
from master.engine.interfaces import WorkerLost
from master.engine.steps import BuildStep, StepLog
from master.results import CANCELLED, FAILURE, SUCCESS

log = Logger()

MAX_STEP_URLS = 20  # links per step; a directory of more files links to the build's artifacts list


class DestinationError(ValueError):
    """A masterdest that would lead outside the build's artifacts directory; the message says why."""


def check_masterdest(masterdest: Any) -> str:
    """*masterdest* as a normalized relative path (``a/b``), or DestinationError."""
    if not isinstance(masterdest, str) or not masterdest.strip():
        raise DestinationError(f"masterdest must be a non-empty path, not {masterdest!r}")
    if "\0" in masterdest or "\\" in masterdest:
        raise DestinationError(f"masterdest {masterdest!r}: NUL and backslash are not allowed")
    path = PurePosixPath(masterdest)
    if path.is_absolute():
        raise DestinationError(f"masterdest {masterdest!r}: absolute paths are not allowed (it is relative "
                               "to the build's artifacts directory)")
    if ".." in path.parts:
        raise DestinationError(f"masterdest {masterdest!r}: '..' is not allowed (it would leave the build's "
                               "artifacts directory)")
    parts = [part for part in path.parts if part != "."]
    if not parts:
        raise DestinationError(f"masterdest {masterdest!r} names no file")
    return "/".join(parts)


def make_parent(root: Path, buildid: int, name: str) -> Path:
    """Make the directories of artifact *name* of build *buildid* under *root*; return its parent directory.

    Each component under *root* must be a directory of its own: a symbolic link (which could
    lead anywhere) or a file on the way is a DestinationError.
    """
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in [str(buildid), *name.split("/")[:-1]]:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            current.mkdir(mode=0o755)
            continue
        if stat.S_ISLNK(mode):
            raise DestinationError(f"masterdest {name!r}: {current.relative_to(root)} is a symbolic link on the "
                                   "master; artifacts are never written through links")
        if not stat.S_ISDIR(mode):
            raise DestinationError(f"masterdest {name!r}: {current.relative_to(root)} is not a directory")
    return current


def _kept_mode(mode: int) -> int:
    """The permission bits kept from the worker: no setuid, setgid, sticky; the master can always read its copy."""
    return (mode & 0o777) | 0o600


def _unpack(tar_path: Path, target: Path, maxsize: int | None) -> list[tuple[str, int, str]]:
    """Extract the tar *tar_path* into the new directory *target*; return each regular file as (path, size, sha256).

    Python's "data" filter refuses absolute names, ``..``, links leading outside *target*,
    devices, and drops setuid/setgid bits.  *maxsize* bounds the bytes extracted (a
    compressed tar could otherwise expand without limit).
    """
    import hashlib

    extracted = 0

    def checked(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        nonlocal extracted
        member = tarfile.data_filter(member, path)
        extracted += member.size if member.isfile() else 0
        if maxsize is not None and extracted > maxsize:
            raise tarfile.FilterError(f"the directory holds more than maxsize ({maxsize} bytes)")
        return member

    target.mkdir()
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter=checked)
    files = []
    for dirpath, dirnames, filenames in os.walk(target):  # never follows links
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue
            digest, size = hashlib.sha256(), 0
            with open(path, "rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
            files.append((path.relative_to(target).as_posix(), size, digest.hexdigest()))
        dirnames.sort()
    return files


def _put_in_place(temp: Path, final: Path) -> None:
    """Rename *temp* to *final*, replacing what is there (a directory or file of an earlier upload included)."""
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    elif temp.is_dir() and (final.exists() or final.is_symlink()):
        final.unlink()
    os.replace(temp, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _TransferStep(BuildStep):
    """A step moving files between the master and the worker; a build stop stops the transfer."""

    description_verb = ("transferring", "transferred")

    def __init__(self, workdir: str | Any = "build", maxsize: int | None = None, mode: int | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if maxsize is not None and (isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0):
            raise ValueError(f"maxsize must be a number of bytes or None, not {maxsize!r}")
        if mode is not None and (isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o7777):
            raise ValueError(f"mode must be permission bits such as 0o644, or None, not {mode!r}")
        self.workdir = workdir
        self.maxsize = maxsize
        self.mode = mode
        self._transfer: Transfer | None = None
        self._what = ""
        self._why: str | None = None

    def describe(self, done: bool) -> str:
        """'uploading dist/app.tar.gz', then 'uploaded dist/app.tar.gz'."""
        if self._why is not None:  # the reason a transfer failed is what the build page should show
            return f"{self.description_verb[0]} {self._what}: {self._why}".replace("  ", " ")
        if self.description or (done and self.descriptionDone):
            return super().describe(done)
        return f"{self.description_verb[1 if done else 0]} {self._what}".strip()

    def interrupt(self, reason: str) -> None:
        """Stop the transfer under way."""
        super().interrupt(reason)
        if self._transfer is not None:
            self._transfer.stop(reason)

    def _files(self) -> FileTransfers:
        """The file transfers of the build's worker (the worker link's connections have them)."""
        files = getattr(self.build.worker, "files", None)  # IWorkerConnection does not promise them
        if not isinstance(files, FileTransfers):
            raise TransferFailed(f"worker {self.build.worker.name} cannot transfer files")
        return files

    async def _await(self, transfer: Transfer) -> Any:
        self._transfer = transfer
        if self.interrupted is not None:
            transfer.stop(self.interrupted)
        try:
            return await transfer.result
        finally:
            self._transfer = None

    async def run(self) -> int:
        """Run the transfer; a refused path or a failed transfer is FAILURE, with the reason in the log."""
        stdio = await self.add_log("stdio")
        try:
            await self.transfer(stdio)
        except (DestinationError, TransferFailed) as e:
            stdio.add_header(f"failed: {e}")
            self._why = str(e)
            return FAILURE
        except TransferStopped as e:
            stdio.add_header(f"stopped: {e}")
            return CANCELLED
        except WorkerLost:
            stdio.add_header("worker lost during the transfer")
            raise
        return CANCELLED if self.interrupted is not None else SUCCESS

    async def transfer(self, stdio: StepLog) -> None:
        """Do the transfer; raise DestinationError or TransferFailed to fail the step."""
        raise NotImplementedError

    # -- uploads ---------------------------------------------------------------------------------

    def _root(self) -> Path:
        root = artifacts_root(self.data)
        if root is None:
            raise TransferFailed("this master has no directory to keep artifacts in")
        return root

    async def upload(self, stdio: StepLog, workersrc: str, name: str, kind: str, compress: str | None = None) -> None:
        """Upload *workersrc* into the build's artifact *name* and record what arrived."""
        build = self.build
        root = self._root()
        if build.buildid is None:
            raise TransferFailed("the build has no id yet: it has not started")
        parent = await threads.deferToThread(make_parent, root, build.buildid, name)
        final = parent / name.rsplit("/", 1)[-1]
        temp = parent / f".{final.name}.upload-{uuid.uuid4().hex[:12]}"
        stdio.add_header(f"uploading {workersrc} from worker {build.conn.name} to artifacts/{build.buildid}/{name}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise TransferFailed(f"cannot write artifacts/{build.buildid}/{name}: {e.strerror}") from None
        unpacked = temp.with_name(temp.name + ".d")
        try:
            with open(fd, "wb", buffering=0) as sink:
                received = await self._await(self._files().upload(
                    sink, builder=build.builder.name, workdir=str(self.render(self.workdir)), path=workersrc,
                    kind=kind, maxsize=self.maxsize, compress=compress))
            if received.kind == "file":
                os.chmod(temp, self.mode if self.mode is not None else _kept_mode(received.mode))
                await threads.deferToThread(_put_in_place, temp, final)
                files = [(name, received.size, received.sha256)]
            else:
                try:
                    inside = await threads.deferToThread(_unpack, temp, unpacked, self.maxsize)
                except (tarfile.TarError, OSError) as e:
                    raise TransferFailed(f"cannot unpack {workersrc}: {e}") from None
                await threads.deferToThread(_put_in_place, unpacked, final)
                files = [(f"{name}/{path}", size, digest) for path, size, digest in inside]
        finally:
            def remove_both() -> None:
                _remove(temp)
                _remove(unpacked)

            await threads.deferToThread(remove_both)
        stdio.add_header(f"uploaded {received.size} bytes, sha256 {received.sha256}"
                         + (f" ({len(files)} files)" if received.kind == "dir" else ""))
        await self.record(files)

    async def record(self, files: Sequence[tuple[str, int, str]]) -> None:
        """Record uploaded files as artifacts of the build and link them from the step."""
        build = self.build
        links = 0
        for name, size, digest in files:
            await self.data.updates.add_artifact(build.id, self.id, name, size, digest,
                                                 content_type_of(name), build.engine.masterid)
            if links < MAX_STEP_URLS:
                await self.data.updates.add_step_url(self.id, name, self.artifact_url(name))
                links += 1
        if len(files) > links:
            await self.data.updates.add_step_url(self.id, f"all {len(files)} artifacts",
                                                 f"{self._base_url()}api/v2/builds/{build.buildid}/artifacts")

    def _base_url(self) -> str:
        www = getattr(getattr(self.build.engine, "config", None), "www", None)
        return getattr(www, "url", "") if www is not None and not isinstance(www, dict) else ""

    def artifact_url(self, name: str) -> str:
        """Where artifact *name* of this build is downloaded."""
        return f"{self._base_url()}api/v2/builds/{self.build.buildid}/artifacts/{quote(name, safe='')}/raw"

    # -- downloads -------------------------------------------------------------------------------

    async def download(self, stdio: StepLog, read: Callable[[int], bytes], workerdest: str, what: str) -> None:
        """Send what *read* gives to *workerdest* on the worker."""
        build = self.build
        stdio.add_header(f"downloading {what} to {workerdest} on worker {build.conn.name}")
        digest = await self._await(self._files().download(
            read, builder=build.builder.name, workdir=str(self.render(self.workdir)), path=workerdest,
            mode=self.mode))
        stdio.add_header(f"downloaded, sha256 {digest}")


class FileUpload(_TransferStep):
    """Upload the worker's file *workersrc* to the build's artifact *masterdest*."""

    default_name = "upload"
    description_verb = ("uploading", "uploaded")
    kind = "file"  # what the worker must find at workersrc

    def __init__(self, workersrc: str | Any, masterdest: str | Any, **kwargs: Any) -> None:
        self.compress = kwargs.pop("compress", None) if self.kind == "dir" else None
        if self.compress not in (None, "gz", "bz2"):
            raise ValueError(f"compress must be None, 'gz' or 'bz2', not {self.compress!r}")
        super().__init__(**kwargs)
        self.workersrc = workersrc
        self.masterdest = masterdest

    async def transfer(self, stdio: StepLog) -> None:
        """Upload it."""
        workersrc, masterdest = str(self.render(self.workersrc)), self.render(self.masterdest)
        self._what = workersrc
        await self.set_state(self.describe(False))
        await self.upload(stdio, workersrc, check_masterdest(masterdest), self.kind, self.compress)


class DirectoryUpload(FileUpload):
    """Upload the worker's directory *workersrc* (as a tar stream; ``compress`` None, "gz" or "bz2") to *masterdest*.

    Each file of the directory becomes an artifact named ``masterdest/path/in/directory``;
    symbolic links inside stay links, when they lead inside the directory.
    """

    kind = "dir"


class MultipleFileUpload(_TransferStep):
    """Upload each of *workersrcs* (files or directories) into the directory *masterdest*, by its base name."""

    default_name = "upload"
    description_verb = ("uploading", "uploaded")

    def __init__(self, workersrcs: Sequence[str | Any] | Any, masterdest: str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workersrcs = workersrcs
        self.masterdest = masterdest

    async def transfer(self, stdio: StepLog) -> None:
        """Upload them one after the other; the first that fails fails the step."""
        sources = [str(source) for source in self.render(self.workersrcs)]
        directory = check_masterdest(self.render(self.masterdest))
        self._what = f"{len(sources)} files"
        await self.set_state(self.describe(False))
        for source in sources:
            base = PurePosixPath(source.rstrip("/")).name
            await self.upload(stdio, source, check_masterdest(f"{directory}/{base}"), "any")


class FileDownload(_TransferStep):
    """Send the master's file *mastersrc* (relative to the master directory) to *workerdest* on the worker."""

    default_name = "download"
    description_verb = ("downloading", "downloaded")

    def __init__(self, mastersrc: str | Any, workerdest: str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mastersrc = mastersrc
        self.workerdest = workerdest

    async def transfer(self, stdio: StepLog) -> None:
        """Send the file."""
        mastersrc, workerdest = str(self.render(self.mastersrc)), str(self.render(self.workerdest))
        self._what = mastersrc
        await self.set_state(self.describe(False))
        path = Path(self.data.basedir or ".") / mastersrc
        try:
            size = path.stat().st_size
            source = open(path, "rb")  # noqa: SIM115 (closed below, once sent)
        except OSError as e:
            raise TransferFailed(f"{mastersrc}: {e.strerror} on the master") from None
        with source:
            if self.maxsize is not None and size > self.maxsize:
                raise TransferFailed(f"{mastersrc}: {size} bytes, more than maxsize ({self.maxsize})")
            await self.download(stdio, source.read, workerdest, mastersrc)


class StringDownload(_TransferStep):
    """Write the string *s* (rendered, UTF-8) to *workerdest* on the worker."""

    default_name = "download"
    description_verb = ("downloading", "downloaded")

    def __init__(self, s: str | Any, workerdest: str | Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.s = s
        self.workerdest = workerdest

    async def transfer(self, stdio: StepLog) -> None:
        """Send the string."""
        content, workerdest = str(self.render(self.s)).encode("utf-8"), str(self.render(self.workerdest))
        self._what = workerdest
        await self.set_state(self.describe(False))
        if self.maxsize is not None and len(content) > self.maxsize:
            raise TransferFailed(f"{len(content)} bytes, more than maxsize ({self.maxsize})")
        await self.download(stdio, io.BytesIO(content).read, workerdest, f"a string of {len(content)} bytes")
