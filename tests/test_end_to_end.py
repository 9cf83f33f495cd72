"""The whole road with real processes: ci-master and ci-worker from their CLIs, a forced build, REST, stop."""

from __future__ import annotations

import json
import os
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliutil import free_port, http_get, run
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master and worker processes

WORKER_CLI = ["-P", "-m", "worker.cli"]

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w1", "s3cret")],
    builders=[
        BuilderConfig(name="mixed", workernames=["w1"], steps=[
            ShellCommand(name="pass", command=["sh", "-c", "echo line one; echo line two"]),
            ShellCommand(name="fail", command="echo about to fail >&2; exit 3"),
        ]),
        BuilderConfig(name="slow", workernames=["w1"], steps=[
            ShellCommand(name="sleep", command="echo $$ > {pidfile}; exec sleep 300"),
        ]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["mixed", "slow"])],
)
"""


def worker(*args: str, cwd: Path) -> object:
    import subprocess
    import sys

    return subprocess.run([sys.executable, *WORKER_CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def start_worker(root: Path, port: int, name: str = "w1", password: str = "s3cret") -> Path:
    """Make and start a ci-worker in *root*/worker for the master on *port*; return its directory."""
    worker_dir = root / "worker"
    made = worker("create-worker", str(worker_dir), "--master", f"http://127.0.0.1:{port}", "--name", name,
                  "--password", password, cwd=root)
    assert made.returncode == 0, made.stderr
    up = worker("start", str(worker_dir), cwd=root)
    assert up.returncode == 0 and "connected" in up.stdout, (up.stdout, up.stderr)
    return worker_dir


def rpc(port: int, path: str, method: str, **params: object) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/{path}", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict]:
    port = free_port()
    master_dir = tmp_path / "master"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    pidfile = tmp_path / "sleep.pid"
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(port=port, pidfile=pidfile)))
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    worker_dir = start_worker(tmp_path, port)
    try:
        yield {"port": port, "pidfile": pidfile, "master": master_dir, "worker": worker_dir}
    finally:
        worker("stop", str(worker_dir), cwd=tmp_path)
        run("stop", str(master_dir), cwd=tmp_path)


def test_a_forced_build_runs_on_a_real_worker_and_is_read_through_rest(site: dict) -> None:
    port = site["port"]
    workers = http_get(port, "/api/v2/workers")["workers"]
    assert workers[0]["name"] == "w1" and workers[0]["connected_to"] == [{"masterid": 1}]
    builderid = http_get(port, "/api/v2/builders/mixed")["builders"][0]["builderid"]
    reply = rpc(port, "forceschedulers/force", "force", builderid=builderid)
    bsid, requests = reply["result"]
    assert list(requests) == [str(builderid)]

    build = wait_until(lambda: http_get(port, f"/api/v2/buildrequests/{requests[str(builderid)]}/builds?complete=true")
                       ["builds"])[0]
    assert build["results"] == 2 and build["complete"] is True  # failure
    steps = http_get(port, f"/api/v2/builds/{build['buildid']}/steps?order=number")["steps"]
    assert [(s["name"], s["results"]) for s in steps] == [("pass", 0), ("fail", 2)]
    logs = http_get(port, f"/api/v2/steps/{steps[0]['stepid']}/logs")["logs"]
    assert [log["slug"] for log in logs] == ["stdio"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/logs/{logs[0]['logid']}/raw_inline") as response:
        text = response.read().decode()
    assert "line one\nline two\n" in text and "program finished with exit code 0" in text
    failing = http_get(port, f"/api/v2/steps/{steps[1]['stepid']}/logs/stdio/contents")["logchunks"][0]["content"]
    assert "eabout to fail\n" in failing and "program finished with exit code 3" in failing
    assert http_get(port, f"/api/v2/buildsets/{bsid}")["buildsets"][0]["complete"] is True


def test_stopping_a_running_build_cancels_it_and_kills_its_process(site: dict) -> None:
    port = site["port"]
    builderid = http_get(port, "/api/v2/builders/slow")["builders"][0]["builderid"]
    rpc(port, "forceschedulers/force", "force", builderid=builderid)
    pid = int(wait_until(lambda: site["pidfile"].exists() and site["pidfile"].read_text().strip()))
    os.kill(pid, 0)  # the step's process runs
    build = http_get(port, "/api/v2/builds?complete=false")["builds"][0]
    assert rpc(port, f"builds/{build['buildid']}", "stop", reason="enough")["result"] is None
    done = wait_until(lambda: http_get(port, f"/api/v2/builds/{build['buildid']}")["builds"][0]["complete"] and
                      http_get(port, f"/api/v2/builds/{build['buildid']}")["builds"][0])
    assert done["results"] == 6  # cancelled

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_until(gone, timeout=20)
