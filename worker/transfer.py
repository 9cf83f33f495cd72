"""The worker's side of file transfers: sending files and directories to the master, receiving files from it.

See :mod:`ci_common.protocol` for the messages.  A file is read and written a chunk at a
time and never more than ``TRANSFER_WINDOW`` chunks are out unacknowledged, so a file of any
size costs a few MiB of memory.  A directory is packed into a tar file under the worker
directory (in a thread: the connection keeps answering pings meanwhile), sent as a file, then
removed.  A received file is written under a temporary name beside its destination and renamed
only once its size and sha256 match what the master says it sent, so a transfer cut short never
leaves a partial file under the final name.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.failure import Failure

from ci_common import protocol
from worker.runner import CommandRejected, resolve_workdir

log = Logger()

TAR_DIR = ".transfers"  # under the worker directory: tar files of directories being uploaded
COMPRESSIONS: dict[str | None, Literal["w", "w:gz", "w:bz2"]] = {None: "w", "gz": "w:gz", "bz2": "w:bz2"}


class TransferError(Exception):
    """A transfer cannot go on; the message (sent to the master) says why."""


def _string(message: dict[str, Any], key: str, default: str | None = None) -> str:
    value = message.get(key, default)
    if not isinstance(value, str):
        raise TransferError(f"{message['type']}: {key!r} must be a string")
    return value


def _optional_int(message: dict[str, Any], key: str) -> int | None:
    value = message.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise TransferError(f"{message['type']}: {key!r} must be a non-negative integer or null")
    return value


def _pack(source: Path, target: Path, compress: str | None) -> None:
    """Write the tar of directory *source* (members relative to it; symlinks kept as links) to *target*."""
    with tarfile.open(target, COMPRESSIONS[compress]) as tar:
        tar.add(str(source), arcname=".")


class _Upload:
    """Sends one file (or a directory's tar) to the master, within the window."""

    def __init__(self, owner: WorkerTransfers, xfer: str) -> None:
        self.owner = owner
        self.xfer = xfer
        self.file: IO[bytes] | None = None
        self.tar_path: Path | None = None
        self.kind = "file"
        self.mode = 0o644
        self.maxsize: int | None = None
        self.sent = 0  # chunks sent
        self.acked = 0  # chunks acknowledged
        self.size = 0
        self.hash = hashlib.sha256()
        self.over = False

    async def start(self, message: dict[str, Any]) -> None:
        builder, workdir = _string(message, "builder", ""), _string(message, "workdir", "build")
        base = resolve_workdir(self.owner.basedir, builder, workdir)
        path = _string(message, "path")
        if not path:
            raise TransferError("upload: 'path' must not be empty")
        wanted = message.get("kind", "file")
        if wanted not in ("file", "dir", "any"):
            raise TransferError("upload: 'kind' must be file, dir or any")
        compress = message.get("compress")
        if compress not in COMPRESSIONS:
            raise TransferError("upload: 'compress' must be null, 'gz' or 'bz2'")
        self.maxsize = _optional_int(message, "maxsize")
        source = base / path  # an absolute path stays as it is
        try:
            info = source.stat()
        except FileNotFoundError:
            raise TransferError(f"{path}: no such file or directory on the worker") from None
        except OSError as e:
            raise TransferError(f"{path}: {e.strerror}") from None
        is_dir, is_file = stat.S_ISDIR(info.st_mode), stat.S_ISREG(info.st_mode)
        if wanted == "file" and not is_file:
            hint = " (a directory: use DirectoryUpload)" if is_dir else ""
            raise TransferError(f"{path}: not a regular file{hint}")
        if wanted == "dir" and not is_dir:
            raise TransferError(f"{path}: not a directory")
        if not (is_dir or is_file):
            raise TransferError(f"{path}: neither a regular file nor a directory")
        self.mode = stat.S_IMODE(info.st_mode)
        if is_dir:
            self.kind = "dir"
            tar_dir = self.owner.basedir / TAR_DIR
            tar_dir.mkdir(exist_ok=True)
            tar_path = self.tar_path = tar_dir / f"{uuid.uuid4().hex}.tar"
            try:
                await threads.deferToThread(_pack, source, tar_path, compress)
            except (OSError, tarfile.TarError) as e:
                raise TransferError(f"{path}: cannot pack the directory: {e}") from None
            finally:
                if self.over:  # stopped by the master, or the connection lost, while packing
                    tar_path.unlink(missing_ok=True)
            if self.over:
                return
            size = tar_path.stat().st_size
            opened = tar_path
        else:
            size, opened = info.st_size, source
        if self.maxsize is not None and size > self.maxsize:
            raise TransferError(f"{path}: {size} bytes, more than maxsize ({self.maxsize})")
        try:
            self.file = open(opened, "rb")  # noqa: SIM115 (closed by close(), when the upload ends)
        except OSError as e:
            raise TransferError(f"{path}: {e.strerror}") from None
        self.pump()

    def pump(self) -> None:
        """Send chunks while the window allows; send ``end`` after the last one."""
        while not self.over and self.file is not None and self.sent - self.acked < protocol.TRANSFER_WINDOW:
            chunk = self.file.read(protocol.TRANSFER_CHUNK)
            if not chunk:
                self.owner.send({"type": protocol.END, "xfer": self.xfer, "size": self.size,
                                 "sha256": self.hash.hexdigest(), "kind": self.kind, "mode": self.mode})
                self.owner.finished(self)
                return
            self.size += len(chunk)
            if self.maxsize is not None and self.size > self.maxsize:  # the file grew while being sent
                raise TransferError(f"more than maxsize ({self.maxsize}) bytes")
            self.hash.update(chunk)
            self.owner.send({"type": protocol.DATA, "xfer": self.xfer, "seq": self.sent,
                             "data": base64.b64encode(chunk).decode("ascii")})
            self.sent += 1

    def received(self, message: dict[str, Any]) -> None:
        if message["type"] != protocol.ACK:
            raise TransferError(f"an upload gets acks, not {message['type']!r}")
        seq = message.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool) and self.acked <= seq < self.sent:
            self.acked = seq + 1
        self.pump()

    def close(self) -> None:
        self.over = True
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tar_path is not None:
            self.tar_path.unlink(missing_ok=True)
            self.tar_path = None


class _Download:
    """Receives one file from the master into a temporary name, renamed once checked."""

    def __init__(self, owner: WorkerTransfers, xfer: str) -> None:
        self.owner = owner
        self.xfer = xfer
        self.fd: int | None = None
        self.temp: Path | None = None
        self.final: Path | None = None
        self.mode: int | None = None
        self.seq = 0
        self.size = 0
        self.hash = hashlib.sha256()

    async def start(self, message: dict[str, Any]) -> None:
        path = _string(message, "path")
        self.mode = _optional_int(message, "mode")
        head, name = os.path.split(path)
        if name in ("", ".", ".."):
            raise TransferError(f"download: {path!r} does not name a file")
        workdir = os.path.join(_string(message, "workdir", "build"), head)
        try:
            parent = resolve_workdir(self.owner.basedir, _string(message, "builder", ""), workdir)
        except CommandRejected:
            raise TransferError(f"{path}: outside the worker directory") from None
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.final = parent / name
            self.temp = parent / f".{name}.{self.xfer}-{uuid.uuid4().hex[:8]}.part"
            self.fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise TransferError(f"{path}: {e.strerror or e}") from None

    def received(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.fd is None:
            raise TransferError("data before the destination was opened")
        if kind == protocol.DATA:
            if message.get("seq") != self.seq:
                raise TransferError(f"chunk {message.get('seq')!r} out of order (expected {self.seq})")
            try:
                chunk = base64.b64decode(_string(message, "data"), validate=True)
            except binascii.Error:
                raise TransferError("a data message is not base64") from None
            try:
                _write_all(self.fd, chunk)
            except OSError as e:
                raise TransferError(f"cannot write {self.final}: {e.strerror}") from None
            self.size += len(chunk)
            self.hash.update(chunk)
            self.owner.send({"type": protocol.ACK, "xfer": self.xfer, "seq": self.seq})
            self.seq += 1
        elif kind == protocol.END:
            digest = self.hash.hexdigest()
            if message.get("size") != self.size or message.get("sha256") != digest:
                raise TransferError(f"received {self.size} bytes with sha256 {digest}; the master sent "
                                    f"{message.get('size')} bytes with sha256 {message.get('sha256')}")
            try:
                os.fchmod(self.fd, self.mode if self.mode is not None else 0o644)
                os.close(self.fd)
                self.fd = None
                if self.temp is None or self.final is None:
                    raise TransferError("the download's file was never opened")
                os.replace(self.temp, self.final)
            except OSError as e:
                raise TransferError(f"cannot write {self.final}: {e.strerror}") from None
            self.temp = None
            self.owner.send({"type": protocol.DONE, "xfer": self.xfer})
            self.owner.finished(self)
        else:
            raise TransferError(f"a download gets data and end, not {kind!r}")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class WorkerTransfers:
    """The transfers of one connection to the master; *send* sends a message on that connection."""

    def __init__(self, basedir: Path, send: Callable[[dict[str, Any]], None]) -> None:
        self.basedir = basedir
        self.send = send
        self.active: dict[str, _Upload | _Download] = {}

    def received(self, message: dict[str, Any]) -> None:
        """Handle a transfer message of the master."""
        kind, xfer = message["type"], message.get("xfer")
        if not isinstance(xfer, str) or not xfer:
            log.error("a {kind} message without a transfer id; ignored", kind=kind)
            return
        if kind in (protocol.UPLOAD, protocol.DOWNLOAD):
            if xfer in self.active:
                log.error("transfer {xfer!r} is under way already; ignored", xfer=xfer)
                return
            started = _Upload(self, xfer) if kind == protocol.UPLOAD else _Download(self, xfer)
            self.active[xfer] = started
            d = defer.ensureDeferred(started.start(message))
            d.addErrback(self._failed, started)
            return
        transfer = self.active.get(xfer)
        if transfer is None:
            return  # an ack or a failure arriving after the transfer ended here: nothing to do
        if kind == protocol.FAILED:
            log.info("transfer {xfer}: stopped by the master: {why}", xfer=xfer, why=message.get("message"))
            self.finished(transfer)
            return
        try:
            transfer.received(message)
        except Exception:
            self._failed(Failure(), transfer)

    def _failed(self, failure: Any, transfer: _Upload | _Download) -> None:
        if failure.check(TransferError, CommandRejected):
            why = failure.getErrorMessage()
        else:
            log.failure("transfer {xfer} failed", failure, xfer=transfer.xfer)
            why = f"error on the worker: {failure.getErrorMessage()}"
        if self.active.get(transfer.xfer) is transfer:
            log.warn("transfer {xfer} failed: {why}", xfer=transfer.xfer, why=why)
            self.send({"type": protocol.FAILED, "xfer": transfer.xfer, "message": why})
        self.finished(transfer)

    def finished(self, transfer: _Upload | _Download) -> None:
        """*transfer* is over (done, failed or stopped): close its files."""
        if self.active.get(transfer.xfer) is transfer:
            del self.active[transfer.xfer]
        transfer.close()

    def close_all(self) -> None:
        """The connection is gone: every transfer is over (temporary files removed)."""
        for transfer in list(self.active.values()):
            self.finished(transfer)
