"""File transfers end to end: real ci-master and ci-worker processes, on SQLite and PostgreSQL.

A build writes a 200 MB file and a directory and uploads both; what REST serves has the
worker's sha256, the master's memory stays flat meanwhile, downloads reach the worker with
their modes; uploads that would leave the build's artifacts directory fail and write nothing;
a worker killed mid-upload leaves no file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cliutil import free_port, http_get, run
from test_end_to_end import rpc, start_worker, worker
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master and worker processes

BIG = 200 * 1024 * 1024

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.properties import Interpolate
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.engine.transfer import DirectoryUpload, FileDownload, FileUpload, MultipleFileUpload, StringDownload

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w1", "s3cret")],
    builders=[
        BuilderConfig(name="produce", workernames=["w1"], steps=[
            ShellCommand(name="make", command=(
                "head -c {big} /dev/urandom > big.bin && mkdir -p out/sub && echo hello > out/a.txt"
                " && printf '#!/bin/sh\\\\necho hi\\\\n' > out/sub/run.sh && chmod 750 out/sub/run.sh"
                " && ln -s a.txt out/link.txt && echo one > one.txt && sha256sum big.bin")),
            FileUpload(workersrc="big.bin", masterdest="big.bin"),
            DirectoryUpload(workersrc="out", masterdest="dist/out"),
            MultipleFileUpload(workersrcs=["one.txt", "out/sub"], masterdest="many"),
            FileDownload(mastersrc=Interpolate("artifacts/%(prop:buildid)s/dist/out/sub/run.sh"),
                         workerdest="back/run.sh", mode=0o700),
            StringDownload(Interpolate("build %(prop:buildnumber)s\\n"), workerdest="back/s.txt", mode=0o640),
            ShellCommand(name="check", command="cat back/s.txt && ./back/run.sh && stat -c %a back/s.txt back/run.sh"),
        ]),
        BuilderConfig(name="escape", workernames=["w1"], steps=[
            ShellCommand(name="make", command="echo secret > small.txt"),
            FileUpload(name="dotdot", workersrc="small.txt", masterdest="../../etc/x"),
            FileUpload(name="absolute", workersrc="small.txt", masterdest="/tmp/x"),
            FileUpload(name="link", workersrc="small.txt", masterdest="link/x"),
            FileUpload(name="toobig", workersrc="small.txt", masterdest="small.txt", maxsize=3),
            FileUpload(name="missing", workersrc="nothing.txt", masterdest="nothing.txt"),
        ]),
        BuilderConfig(name="killed", workernames=["w1"], steps=[
            ShellCommand(name="make", command="head -c {big} /dev/zero > big.bin"),
            FileUpload(workersrc="big.bin", masterdest="big.bin"),
        ]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["produce", "escape", "killed"])],
)
"""


@pytest.fixture
def site(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    port = free_port()
    master_dir = tmp_path / "master"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    db_url = "sqlite:///state.sqlite"
    if backend == "postgresql":
        db_url = request.getfixturevalue("pg_server").create_database(f"xfer_{os.getpid()}_{time.monotonic_ns()}")
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(port=port, db_url=db_url, big=BIG)))
    if backend == "postgresql":
        upgraded = run("upgrade-master", str(master_dir), cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    worker_dir = start_worker(tmp_path, port)
    try:
        yield {"port": port, "master": master_dir, "worker": worker_dir, "root": tmp_path,
               "master_pid": int((master_dir / "twistd.pid").read_text()),
               "worker_pid": int((worker_dir / "twistd.pid").read_text())}
    finally:
        worker("stop", str(worker_dir), cwd=tmp_path)
        run("stop", str(master_dir), cwd=tmp_path)


def rss(pid: int) -> int:
    """The resident set size of *pid*, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class PeakRss:
    """Samples a process's RSS in a thread until stopped; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def force(port: int, builder: str) -> int:
    builderid = http_get(port, f"/api/v2/builders/{builder}")["builders"][0]["builderid"]
    result = rpc(port, "forceschedulers/force", "force", builderid=builderid)["result"]
    return next(iter(result[1].values()))


def finished_build(port: int, brid: int, timeout: float = 120) -> dict[str, Any]:
    return wait_until(lambda: http_get(port, f"/api/v2/buildrequests/{brid}/builds?complete=true")["builds"],
                      timeout=timeout)[0]


def steps_of(port: int, buildid: int) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in http_get(port, f"/api/v2/builds/{buildid}/steps?order=number")["steps"]}


def log_text(port: int, stepid: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/steps/{stepid}/logs/stdio/raw", timeout=10) as r:
        return r.read().decode()


def get_raw(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_a_build_uploads_a_big_file_and_a_directory_and_rest_serves_them(site: dict[str, Any]) -> None:
    port, master_pid = site["port"], site["master_pid"]
    time.sleep(1)  # let start-up allocations settle before the baseline
    baseline = rss(master_pid)
    sampler = PeakRss(master_pid)
    build = finished_build(port, force(port, "produce"))
    peak_upload = sampler.stop()
    steps = steps_of(port, build["buildid"])
    assert build["results"] == 0, {name: (s["results"], s["state_string"]) for name, s in steps.items()}
    worker_sha = re.search(r"^([0-9a-f]{64})  big\.bin$", log_text(port, steps["make"]["stepid"]), re.M).group(1)

    buildid = build["buildid"]
    artifacts = {a["name"]: a for a in http_get(port, f"/api/v2/builds/{buildid}/artifacts")["artifacts"]}
    assert set(artifacts) == {"big.bin", "dist/out/a.txt", "dist/out/sub/run.sh", "many/one.txt",
                              "many/sub/run.sh"}
    big = artifacts["big.bin"]
    assert (big["size"], big["sha256"], big["content_type"]) == (BIG, worker_sha, "application/octet-stream")
    assert artifacts["dist/out/a.txt"]["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert artifacts["dist/out/a.txt"]["content_type"] == "text/plain"
    # the same list under the builder's path, and one artifact by its name (slashes as %2F)
    by_builder = http_get(port, f"/api/v2/builders/produce/builds/{build['number']}/artifacts")["artifacts"]
    assert {a["name"] for a in by_builder} == set(artifacts)
    one = http_get(port, f"/api/v2/builds/{buildid}/artifacts/dist%2Fout%2Fa.txt")["artifacts"][0]
    assert one["artifactid"] == artifacts["dist/out/a.txt"]["artifactid"]

    # the 200 MB file downloaded through REST, streamed: the worker's sha256, flat master memory
    sampler = PeakRss(master_pid)
    digest, size = hashlib.sha256(), 0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/builds/{buildid}/artifacts/big.bin/raw",
                                timeout=60) as response:
        assert response.headers["Content-Length"] == str(BIG)
        assert response.headers["Accept-Ranges"] == "bytes"
        while chunk := response.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    peak_download = sampler.stop()
    assert (size, digest.hexdigest()) == (BIG, worker_sha)
    print(f"master RSS: baseline {baseline / 2**20:.1f} MiB, peak during upload {peak_upload / 2**20:.1f} MiB, "
          f"during download {peak_download / 2**20:.1f} MiB")
    assert peak_upload - baseline < 50 * 2**20
    assert peak_download - baseline < 50 * 2**20

    # files on the master's disk, with their modes; the link inside the directory stays a link
    stored = site["master"] / "artifacts" / str(buildid)
    assert (stored / "big.bin").stat().st_size == BIG
    assert (stored / "dist/out/sub/run.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(stored / "dist/out/link.txt") == "a.txt"
    assert not [p for p in stored.rglob("*") if ".upload-" in p.name]

    # byte ranges
    base = f"http://127.0.0.1:{port}/api/v2/artifacts/{artifacts['dist/out/a.txt']['artifactid']}/raw"
    assert get_raw(base, {"Range": "bytes=1-3"})[::2] == (206, b"ell")
    status, headers, body = get_raw(base, {"Range": "bytes=-2"})
    assert (status, headers["Content-Range"], body) == (206, "bytes 4-5/6", b"o\n")
    status, headers, body = get_raw(base, {"Range": "bytes=10-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */6") and "outside" in json.loads(body)["error"]
    assert get_raw(base, {"Range": "bytes=0-1,3-4"})[::2] == (200, b"hello\n")  # several ranges: the whole
    etag = headers["ETag"]
    assert get_raw(base, {"Range": "bytes=0-0", "If-Range": etag})[::2] == (206, b"h")
    assert get_raw(base, {"Range": "bytes=0-0", "If-Range": '"other"'})[::2] == (200, b"hello\n")
    status, headers, body = get_raw(base.replace("/raw", "") + "9999/raw")
    assert status == 404

    # the step links its artifacts (what Buildbot's UI shows on the build page)
    urls = steps["upload"]["urls"]
    assert urls == [{"name": "big.bin", "url": f"http://127.0.0.1:{port}/api/v2/builds/{buildid}/artifacts/big.bin/raw"}]
    assert {u["name"] for u in steps["upload_2"]["urls"]} == {"dist/out/a.txt", "dist/out/sub/run.sh"}

    # downloads reached the worker with the modes asked
    check = log_text(port, steps["check"]["stepid"])
    assert f"build {build['number']}\nhi\n640\n700\n" in check


def test_uploads_outside_the_artifacts_directory_fail_and_write_nothing(site: dict[str, Any]) -> None:
    port, master_dir = site["port"], site["master"]
    outside = site["root"] / "outside"
    outside.mkdir()
    # the first build gets id 1: its artifacts directory holds a link leading out of it
    (master_dir / "artifacts" / "1").mkdir(parents=True)
    (master_dir / "artifacts" / "1" / "link").symlink_to(outside)
    build = finished_build(port, force(port, "escape"))
    assert build["buildid"] == 1 and build["results"] == 2
    steps = steps_of(port, 1)
    results = {name: (step["results"], step["state_string"]) for name, step in steps.items()}
    assert results["dotdot"][0] == 2 and "'..' is not allowed" in results["dotdot"][1]
    assert results["absolute"][0] == 2 and "absolute paths are not allowed" in results["absolute"][1]
    assert results["link"][0] == 2 and "symbolic link" in results["link"][1]
    assert results["toobig"][0] == 2 and "more than maxsize (3)" in results["toobig"][1]
    assert results["missing"][0] == 2 and "no such file" in results["missing"][1]
    assert "'..' is not allowed" in log_text(port, steps["dotdot"]["stepid"])
    assert list(outside.iterdir()) == []
    assert not (master_dir / "etc").exists() and not (site["root"] / "etc").exists()
    assert not Path("/tmp/x").exists() or Path("/tmp/x").read_text() != "secret\n"
    assert sorted(p.name for p in (master_dir / "artifacts" / "1").iterdir()) == ["link"]
    assert http_get(port, "/api/v2/builds/1/artifacts")["artifacts"] == []


def test_a_build_stopped_or_a_worker_killed_mid_upload_leaves_no_file_under_the_final_name(
    site: dict[str, Any],
) -> None:
    port, master_dir, worker_pid = site["port"], site["master"], site["worker_pid"]

    def partial(buildid: int) -> list[Path]:
        build_dir = master_dir / "artifacts" / str(buildid)
        return [p for p in build_dir.iterdir() if ".upload-" in p.name] if build_dir.is_dir() else []

    def finished(buildid: int) -> dict[str, Any]:
        return wait_until(lambda: http_get(port, f"/api/v2/builds/{buildid}")["builds"][0]["complete"]
                          and http_get(port, f"/api/v2/builds/{buildid}")["builds"][0], timeout=60)

    def upload_under_way(buildid: int) -> Path:
        # the temporary file has some bytes: the transfer has begun
        def begun() -> list[Path]:
            try:
                return [p for p in partial(buildid) if p.stat().st_size > 0]
            except FileNotFoundError:
                return []

        temp = wait_until(begun, timeout=120)[0]
        os.kill(worker_pid, signal.SIGSTOP)  # frozen mid-transfer: the upload cannot finish behind our back
        try:
            assert temp.exists() and 0 < temp.stat().st_size < BIG
            assert not (temp.parent / "big.bin").exists()
        except BaseException:
            os.kill(worker_pid, signal.SIGCONT)  # so that the fixture can stop it
            raise
        return temp

    # a build stopped during an upload: cancelled, nothing kept; the worker goes on
    force(port, "killed")
    upload_under_way(1)
    try:
        assert rpc(port, "builds/1", "stop", reason="enough")["result"] is None
        assert finished(1)["results"] == 6  # cancelled
    finally:
        os.kill(worker_pid, signal.SIGCONT)
    assert partial(1) == [] and not (master_dir / "artifacts" / "1" / "big.bin").exists()
    upload = steps_of(port, 1)["upload"]
    assert upload["results"] == 6 and "stopped: enough" in log_text(port, upload["stepid"])

    # a worker killed during an upload: retry, nothing kept
    force(port, "killed")
    upload_under_way(2)
    os.kill(worker_pid, signal.SIGKILL)
    assert finished(2)["results"] == 5  # retry: the worker was lost
    assert partial(2) == [] and not (master_dir / "artifacts" / "2" / "big.bin").exists()
    assert http_get(port, "/api/v2/artifacts")["artifacts"] == []
