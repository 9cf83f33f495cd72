"""The file-transfer part of the worker link: uploads received from a worker, downloads sent to it.

Each :class:`WorkerConnection` has a :class:`FileTransfers` (``conn.files``); steps call
:meth:`FileTransfers.upload` and :meth:`FileTransfers.download` and await the transfer's
``result``.  The messages are described in :mod:`ci_common.protocol`.  An upload is written
to a file the caller opened, a chunk at a time, and each chunk is acknowledged only once
written, so the worker never has more than a window of chunks on its way and the master never
holds more of the file than that.  The sha256 and size are computed here as the bytes arrive
and checked against what the worker says it sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet import defer
from twisted.python.failure import Failure

from ci_common import protocol as P
from master.engine.interfaces import WorkerLost


class TransferFailed(Exception):
    """A transfer did not complete; the message says why (from the worker or from the master)."""


class TransferStopped(Exception):
    """A transfer was stopped by the master (a build stop)."""


class TransferProtocolError(Exception):
    """The worker sent a transfer message that breaks the protocol."""


@dataclass
class Received:
    """What an upload brought: ``kind`` ("file" or "dir": then a tar), its size, sha256 and mode bits."""

    kind: str
    size: int
    sha256: str
    mode: int


class Transfer:
    """One transfer under way: ``result`` fires when it is over, or fails (TransferFailed, WorkerLost...)."""

    def __init__(self, files: FileTransfers, xfer: str) -> None:
        self.files = files
        self.xfer = xfer
        self.result: defer.Deferred = defer.Deferred()
        self.size = 0
        self.hash = hashlib.sha256()

    @property
    def over(self) -> bool:
        """Whether the transfer has ended, one way or another."""
        return self.result.called

    def stop(self, reason: str) -> None:
        """Stop the transfer: the worker is told, ``result`` fails with TransferStopped."""
        if not self.over:
            self.files.send({"type": P.FAILED, "xfer": self.xfer, "message": reason})
            self._end(Failure(TransferStopped(reason)))

    def _fail(self, why: str) -> None:
        """Fail the transfer for a reason of the master's, telling the worker."""
        self.files.send({"type": P.FAILED, "xfer": self.xfer, "message": why})
        self._end(Failure(TransferFailed(why)))

    def _end(self, outcome: Any) -> None:
        self.files.active.pop(self.xfer, None)
        if not self.result.called:
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)

    def received(self, message: dict[str, Any]) -> None:
        """Handle a message of the worker about this transfer."""
        raise NotImplementedError


class Upload(Transfer):
    """Receives a file (or a directory's tar) into *sink*, at most *maxsize* bytes; ``result`` gives Received."""

    def __init__(self, files: FileTransfers, xfer: str, sink: IO[bytes], maxsize: int | None) -> None:
        super().__init__(files, xfer)
        self.sink = sink
        self.maxsize = maxsize
        self.seq = 0

    def received(self, message: dict[str, Any]) -> None:
        """Write a chunk and acknowledge it, or check the end."""
        kind = message["type"]
        if kind == P.DATA:
            if message.get("seq") != self.seq:
                raise TransferProtocolError(f"data: chunk {message.get('seq')!r} of {self.xfer} out of order")
            text = message.get("data")
            try:
                chunk = base64.b64decode(text, validate=True) if isinstance(text, str) else None
            except binascii.Error:
                chunk = None
            if chunk is None:
                raise TransferProtocolError("data: 'data' must be base64 text")
            self.size += len(chunk)
            if self.maxsize is not None and self.size > self.maxsize:
                self._fail(f"more than maxsize ({self.maxsize} bytes)")
                return
            try:
                self.sink.write(chunk)
            except OSError as e:
                self._fail(f"cannot write on the master: {e.strerror or e}")
                return
            self.hash.update(chunk)
            self.files.send({"type": P.ACK, "xfer": self.xfer, "seq": self.seq})
            self.seq += 1
        elif kind == P.END:
            digest = self.hash.hexdigest()
            if message.get("size") != self.size or message.get("sha256") != digest:
                self._fail(f"checksum mismatch: the worker sent {message.get('size')!r} bytes with sha256 "
                           f"{message.get('sha256')!r}, the master received {self.size} with sha256 {digest}")
                return
            sent_kind, mode = message.get("kind"), message.get("mode")
            if sent_kind not in ("file", "dir") or isinstance(mode, bool) or not isinstance(mode, int):
                raise TransferProtocolError("end: 'kind' must be file or dir and 'mode' an integer")
            self._end(Received(sent_kind, self.size, digest, mode))
        elif kind == P.FAILED:
            self._end(Failure(TransferFailed(str(message.get("message") or "failed on the worker"))))
        else:
            raise TransferProtocolError(f"a worker does not send {kind!r} in an upload")


class Download(Transfer):
    """Sends what *read(n)* returns, until it returns nothing, to the worker; ``result`` gives the sha256."""

    def __init__(self, files: FileTransfers, xfer: str, read: Callable[[int], bytes]) -> None:
        super().__init__(files, xfer)
        self.read = read
        self.sent = 0
        self.acked = 0
        self.ended = False

    def pump(self) -> None:
        """Send chunks while the window allows, then ``end``."""
        while not self.over and not self.ended and self.sent - self.acked < P.TRANSFER_WINDOW:
            try:
                chunk = self.read(P.TRANSFER_CHUNK)
            except OSError as e:
                self._fail(f"cannot read on the master: {e.strerror or e}")
                return
            if not chunk:
                self.ended = True
                self.files.send({"type": P.END, "xfer": self.xfer, "size": self.size,
                                 "sha256": self.hash.hexdigest(), "kind": "file", "mode": None})
                return
            self.size += len(chunk)
            self.hash.update(chunk)
            self.files.send({"type": P.DATA, "xfer": self.xfer, "seq": self.sent,
                             "data": base64.b64encode(chunk).decode("ascii")})
            self.sent += 1

    def received(self, message: dict[str, Any]) -> None:
        """An ack (send more), ``done`` or ``failed``."""
        kind = message["type"]
        if kind == P.ACK:
            seq = message.get("seq")
            if isinstance(seq, bool) or not isinstance(seq, int) or not self.acked <= seq < self.sent:
                raise TransferProtocolError(f"ack: no chunk {seq!r} of {self.xfer} is waiting for one")
            self.acked = seq + 1
            self.pump()
        elif kind == P.DONE:
            if not self.ended:
                raise TransferProtocolError(f"done: {self.xfer} has not ended")
            self._end(self.hash.hexdigest())
        elif kind == P.FAILED:
            self._end(Failure(TransferFailed(str(message.get("message") or "failed on the worker"))))
        else:
            raise TransferProtocolError(f"a worker does not send {kind!r} in a download")


class FileTransfers:
    """The transfers of one worker connection.  *send* sends a message to the worker."""

    def __init__(self, send: Callable[[dict[str, Any]], None], name: str, supported: bool) -> None:
        self.send = send
        self.name = name
        self.supported = supported
        self.active: dict[str, Transfer] = {}
        self.connected = True
        self._numbers = itertools.count(1)
        self._last = 0

    def _new_id(self) -> str:
        if not self.supported:
            raise TransferFailed(f"worker {self.name} does not support file transfers (upgrade its ci-worker)")
        if not self.connected:
            raise WorkerLost(f"worker {self.name} is not connected")
        self._last = next(self._numbers)
        return f"t{self._last}"

    def upload(
        self, sink: IO[bytes], *, builder: str, workdir: str, path: str, kind: str = "file",
        maxsize: int | None = None, compress: str | None = None,
    ) -> Upload:
        """Ask the worker for *path* (a file, a directory as a tar, or "any"), written into *sink*."""
        transfer = Upload(self, self._new_id(), sink, maxsize)
        self.active[transfer.xfer] = transfer
        self.send({"type": P.UPLOAD, "xfer": transfer.xfer, "builder": builder, "workdir": workdir, "path": path,
                   "kind": kind, "maxsize": maxsize, "compress": compress})
        return transfer

    def download(
        self, read: Callable[[int], bytes], *, builder: str, workdir: str, path: str, mode: int | None = None
    ) -> Download:
        """Send what *read* gives to the worker, into *path* (relative to its working directory)."""
        transfer = Download(self, self._new_id(), read)
        self.active[transfer.xfer] = transfer
        self.send({"type": P.DOWNLOAD, "xfer": transfer.xfer, "builder": builder, "workdir": workdir, "path": path,
                   "mode": mode})
        transfer.pump()
        return transfer

    def received(self, message: dict[str, Any]) -> None:
        """A transfer message of the worker; TransferProtocolError when it breaks the protocol."""
        xfer = message.get("xfer")
        if not isinstance(xfer, str) or not xfer:
            raise TransferProtocolError(f"{message['type']}: missing field 'xfer'")
        transfer = self.active.get(xfer)
        if transfer is not None:
            transfer.received(message)
            return
        number = xfer[1:]
        if not (xfer.startswith("t") and number.isdigit() and 0 < int(number) <= self._last):
            raise TransferProtocolError(f"{message['type']}: no transfer {xfer!r}")
        # a message about a transfer the master has ended (stopped, or failed over maxsize) crossed
        # our failed on the wire: nothing left to do with it

    def lost(self) -> None:
        """The worker is gone: every transfer fails with WorkerLost."""
        self.connected = False
        transfers, self.active = self.active, {}
        for transfer in transfers.values():
            transfer._end(Failure(WorkerLost(f"worker {self.name} disconnected during transfer {transfer.xfer}")))
