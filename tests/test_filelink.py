"""File transfers, both ends of the wire, without a network: the master's FileTransfers and the worker's.

Messages go through a queue (as a WebSocket would carry them, in order), so the flow control,
the checks at the end and the clean-up of temporary files are seen message by message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from ci_common import protocol as P
from master.engine.filelink import FileTransfers, Received, TransferFailed, TransferProtocolError, TransferStopped
from master.engine.interfaces import WorkerLost
from master.engine.transfer import DestinationError, _unpack, check_masterdest, make_parent
from master.www.ranges import UNSATISFIABLE, parse_range, path_segments
from worker.transfer import WorkerTransfers


class Wire:
    """Carries messages between a master's FileTransfers and a worker's WorkerTransfers, in order."""

    def __init__(self, basedir: Path, supported: bool = True) -> None:
        self.queue: list[tuple[str, dict[str, Any]]] = []
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.master = FileTransfers(lambda m: self.queue.append(("worker", m)), "w1", supported)
        self.worker = WorkerTransfers(basedir, lambda m: self.queue.append(("master", m)))
        self.cut = False
        self.max_unacked = 0

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Deliver queued messages (and those they cause) until none is left, or *until* is true."""
        while self.queue and not self.cut and not (until and until()):
            to, message = self.queue.pop(0)
            self.log.append((to, message))
            if to == "worker":
                self.worker.received(message)
            else:
                self.master.received(message)
            self.max_unacked = max(self.max_unacked, self.unacked())

    def unacked(self) -> int:
        data = sum(1 for _, m in self.log if m["type"] == P.DATA)
        acks = sum(1 for _, m in self.log if m["type"] == P.ACK)
        return data - acks + sum(1 for _, m in self.queue if m["type"] == P.DATA)

    def types(self, to: str) -> list[str]:
        return [m["type"] for t, m in self.log if t == to]


def result_of(d: defer.Deferred) -> Any:
    """The result of a fired Deferred (its exception raised)."""
    outcome: list[Any] = []
    d.addBoth(outcome.append)
    assert outcome, "the transfer has not ended"
    if isinstance(outcome[0], defer.Failure):
        outcome[0].raiseException()
    return outcome[0]


@pytest.fixture
def wire(tmp_path: Path) -> Wire:
    (tmp_path / "b" / "build").mkdir(parents=True)
    return Wire(tmp_path)


# -- uploads (worker to master) -------------------------------------------------------------------


def test_a_file_is_uploaded_within_the_window_and_checked(wire: Wire, tmp_path: Path) -> None:
    content = os.urandom(P.TRANSFER_CHUNK * 20 + 123)
    source = tmp_path / "b" / "build" / "app.bin"
    source.write_bytes(content)
    source.chmod(0o751)
    sink = io.BytesIO()
    upload = wire.master.upload(sink, builder="b", workdir="build", path="app.bin")
    wire.run()
    received = result_of(upload.result)
    assert received == Received("file", len(content), hashlib.sha256(content).hexdigest(), 0o751)
    assert sink.getvalue() == content
    assert wire.max_unacked == P.TRANSFER_WINDOW  # never more chunks out than the window
    assert wire.types("worker").count(P.ACK) == 21 and wire.worker.active == {}


def test_an_upload_over_maxsize_is_refused_by_the_worker_before_sending(wire: Wire, tmp_path: Path) -> None:
    (tmp_path / "b" / "build" / "big").write_bytes(b"x" * 100)
    upload = wire.master.upload(io.BytesIO(), builder="b", workdir="build", path="big", maxsize=99)
    wire.run()
    with pytest.raises(TransferFailed, match=r"100 bytes, more than maxsize \(99\)"):
        result_of(upload.result)
    assert P.DATA not in wire.types("master")


def test_the_master_stops_an_upload_that_grows_past_maxsize(wire: Wire) -> None:
    sink = io.BytesIO()
    upload = wire.master.upload(sink, builder="b", workdir="build", path="x", maxsize=10)
    wire.queue.clear()  # no worker: the test plays it
    chunk = base64.b64encode(b"y" * 11).decode()
    wire.master.received({"type": P.DATA, "xfer": upload.xfer, "seq": 0, "data": chunk})
    with pytest.raises(TransferFailed, match=r"more than maxsize \(10 bytes\)"):
        result_of(upload.result)
    assert wire.queue[-1][1] == {"type": P.FAILED, "xfer": upload.xfer, "message": "more than maxsize (10 bytes)"}
    assert sink.getvalue() == b""
    # the worker's messages already on their way are dropped quietly
    wire.master.received({"type": P.END, "xfer": upload.xfer, "size": 11, "sha256": "0" * 64, "kind": "file",
                          "mode": 0o644})


def test_a_checksum_mismatch_fails_the_upload(wire: Wire) -> None:
    upload = wire.master.upload(io.BytesIO(), builder="b", workdir="build", path="x")
    wire.master.received({"type": P.DATA, "xfer": upload.xfer, "seq": 0, "data": base64.b64encode(b"abc").decode()})
    wire.master.received({"type": P.END, "xfer": upload.xfer, "size": 3, "sha256": "0" * 64, "kind": "file",
                          "mode": 0o644})
    with pytest.raises(TransferFailed, match="checksum mismatch"):
        result_of(upload.result)


@pytest.mark.parametrize("message, error", [
    ({"type": P.DATA, "xfer": "t1", "seq": 1, "data": ""}, "out of order"),
    ({"type": P.DATA, "xfer": "t1", "seq": 0, "data": "!!"}, "base64"),
    ({"type": P.DATA, "xfer": "t7", "seq": 0, "data": ""}, "no transfer 't7'"),
    ({"type": P.DATA, "seq": 0, "data": ""}, "missing field 'xfer'"),
    ({"type": P.DONE, "xfer": "t1"}, "does not send 'done' in an upload"),
    ({"type": P.END, "xfer": "t1", "size": 0, "sha256": hashlib.sha256(b"").hexdigest(), "kind": "link", "mode": 1},
     "'kind' must be file or dir"),
])
def test_transfer_messages_that_break_the_protocol_are_refused(wire: Wire, message: dict, error: str) -> None:
    wire.master.upload(io.BytesIO(), builder="b", workdir="build", path="x")
    with pytest.raises(TransferProtocolError, match=error):
        wire.master.received(message)


def test_a_lost_worker_fails_its_transfers_and_no_new_one_starts(wire: Wire) -> None:
    upload = wire.master.upload(io.BytesIO(), builder="b", workdir="build", path="x")
    wire.master.lost()
    with pytest.raises(WorkerLost):
        result_of(upload.result)
    with pytest.raises(WorkerLost):
        wire.master.upload(io.BytesIO(), builder="b", workdir="build", path="x")


def test_a_worker_without_transfers_is_said_so(tmp_path: Path) -> None:
    old = Wire(tmp_path, supported=False)
    with pytest.raises(TransferFailed, match="does not support file transfers"):
        old.master.upload(io.BytesIO(), builder="b", workdir="build", path="x")


def test_stopping_an_upload_tells_the_worker(wire: Wire, tmp_path: Path) -> None:
    (tmp_path / "b" / "build" / "f").write_bytes(os.urandom(P.TRANSFER_CHUNK * 20))
    upload = wire.master.upload(io.BytesIO(), builder="b", workdir="build", path="f")
    wire.run(until=lambda: wire.types("worker").count(P.ACK) == 3)
    upload.stop("build stopped")
    wire.run()
    with pytest.raises(TransferStopped):
        result_of(upload.result)
    assert wire.worker.active == {} and P.END not in wire.types("master")


@pytest_twisted.ensureDeferred
async def test_a_directory_travels_as_a_tar_and_the_worker_removes_it(wire: Wire, tmp_path: Path) -> None:
    source = tmp_path / "b" / "build" / "out"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("a\n")
    (source / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (source / "sub" / "run.sh").chmod(0o755)
    tar_file = tmp_path / "got.tar"
    with open(tar_file, "wb") as sink:
        upload = wire.master.upload(sink, builder="b", workdir="build", path="out", kind="dir", compress="gz")
        for _ in range(1000):  # the worker packs the tar in a thread: let the reactor turn
            wire.run()
            if upload.result.called:
                break
            await deferLater(reactor, 0.01, lambda: None)
    received = result_of(upload.result)
    assert received.kind == "dir"
    assert list((tmp_path / ".transfers").iterdir()) == []  # the worker's tar is gone
    files = _unpack(tar_file, tmp_path / "unpacked", None)
    assert sorted((name, size) for name, size, _ in files) == [("a.txt", 2), ("sub/run.sh", 10)]
    assert (tmp_path / "unpacked" / "sub" / "run.sh").stat().st_mode & 0o777 == 0o755
    with pytest.raises(tarfile.FilterError, match="maxsize"):
        _unpack(tar_file, tmp_path / "again", 5)


def test_a_tar_leading_outside_is_refused_on_unpacking(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.FilterError):
        _unpack(evil, tmp_path / "target", None)
    assert not (tmp_path / "escaped").exists()
    with tarfile.open(evil, "w") as tar:
        link = tarfile.TarInfo("up")
        link.type, link.linkname = tarfile.SYMTYPE, "../.."
        tar.addfile(link)
    with pytest.raises(tarfile.FilterError):
        _unpack(evil, tmp_path / "target2", None)


# -- downloads (master to worker) -----------------------------------------------------------------


def test_a_file_is_downloaded_within_the_window_with_its_mode(wire: Wire, tmp_path: Path) -> None:
    content = os.urandom(P.TRANSFER_CHUNK * 12 + 5)
    download = wire.master.download(io.BytesIO(content).read, builder="b", workdir="build", path="sub/c.bin",
                                    mode=0o640)
    wire.run()
    assert result_of(download.result) == hashlib.sha256(content).hexdigest()
    target = tmp_path / "b" / "build" / "sub" / "c.bin"
    assert target.read_bytes() == content and target.stat().st_mode & 0o777 == 0o640
    assert wire.max_unacked == P.TRANSFER_WINDOW
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.bin"]


@pytest.mark.parametrize("path", ["../../../outside.txt", "/etc/ci-master-test"])
def test_a_download_outside_the_worker_directory_is_refused(wire: Wire, tmp_path: Path, path: str) -> None:
    download = wire.master.download(io.BytesIO(b"x").read, builder="b", workdir="build", path=path)
    wire.run()
    with pytest.raises(TransferFailed, match="outside the worker directory"):
        result_of(download.result)
    assert not Path("/etc/ci-master-test").exists() and not (tmp_path.parent / "outside.txt").exists()


def test_a_download_cut_short_leaves_neither_the_file_nor_its_temporary(wire: Wire, tmp_path: Path) -> None:
    download = wire.master.download(io.BytesIO(os.urandom(P.TRANSFER_CHUNK * 30)).read, builder="b",
                                    workdir="build", path="c.bin")
    wire.run(until=lambda: wire.types("master").count(P.ACK) == 5)
    assert [p.name for p in (tmp_path / "b" / "build").iterdir()][0].endswith(".part")
    wire.worker.close_all()  # the connection dropped
    wire.master.lost()
    with pytest.raises(WorkerLost):
        result_of(download.result)
    assert list((tmp_path / "b" / "build").iterdir()) == []


def test_a_corrupted_download_is_not_renamed(wire: Wire, tmp_path: Path) -> None:
    download = wire.master.download(io.BytesIO(b"hello").read, builder="b", workdir="build", path="c.txt")
    for _, message in wire.queue:
        if message["type"] == P.END:
            message["sha256"] = "0" * 64
    wire.run()
    with pytest.raises(TransferFailed, match="sha256"):
        result_of(download.result)
    assert list((tmp_path / "b" / "build").iterdir()) == []


# -- where uploads may land, and byte ranges ------------------------------------------------------


@pytest.mark.parametrize("bad, why", [
    ("../../etc/x", "'..' is not allowed"), ("a/../../x", "'..' is not allowed"), ("/etc/x", "absolute"),
    ("", "non-empty"), (".", "names no file"), ("a\\..\\b", "backslash"), (None, "non-empty"),
])
def test_bad_masterdests_are_refused(bad: Any, why: str) -> None:
    with pytest.raises(DestinationError, match=why):
        check_masterdest(bad)


def test_good_masterdests_are_normalized() -> None:
    assert check_masterdest("./dist//app.tar.gz") == "dist/app.tar.gz"


def test_no_artifact_is_written_through_a_link(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    assert make_parent(root, 3, "a/b/c.txt") == root / "3" / "a" / "b"
    (root / "3" / "out").symlink_to(tmp_path)
    with pytest.raises(DestinationError, match="symbolic link"):
        make_parent(root, 3, "out/x")
    (root / "3" / "file").write_text("")
    with pytest.raises(DestinationError, match="not a directory"):
        make_parent(root, 3, "file/x")


@pytest.mark.parametrize("header, length, expected", [
    ("bytes=0-9", 100, (0, 10)), ("bytes=90-", 100, (90, 100)), ("bytes=-10", 100, (90, 100)),
    ("bytes=95-200", 100, (95, 100)), ("bytes=-200", 100, (0, 100)), ("bytes=100-", 100, UNSATISFIABLE),
    ("bytes=-0", 100, UNSATISFIABLE), ("bytes=0-", 0, UNSATISFIABLE), ("bytes=5-1", 100, None),
    ("bytes=0-1,5-6", 100, None), ("items=0-1", 100, None), ("bytes=a-b", 100, None), ("bytes=", 100, None),
])
def test_range_headers(header: str, length: int, expected: Any) -> None:
    assert parse_range(header, length) == expected


def test_paths_are_split_before_decoding() -> None:
    assert path_segments(b"/api/v2/builds/1/artifacts/out%2Fa%20b.txt/raw", b"/api/v2/") == (
        "builds", "1", "artifacts", "out/a b.txt", "raw")
    assert path_segments(b"/api/v2/", b"/api/v2/") == ()
    assert path_segments(b"/other", b"/api/v2/") is None
    assert path_segments(b"/api/v2/%ff", b"/api/v2/") is None
