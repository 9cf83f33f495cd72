"""Faults with real processes: a worker killed mid-build, and a master killed with SIGKILL mid-build.

In both, the interrupted build ends (retry, or exception after the master's restart), its
request is queued again and runs to completion exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliutil import free_port, http_get, run
from test_end_to_end import rpc
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master and worker processes

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

# the first attempt sleeps (and is interrupted by the fault); the second one passes
FIRST_SLEEPS = (
    "if [ -e {marker} ]; then echo second attempt; "
    "else touch {marker}; echo $$ > {pidfile}; exec sleep 300; fi"
)
config = MasterConfig(
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w1", "s3cret")],
    builders=[BuilderConfig(name="flaky", workernames=["w1"], steps=[ShellCommand(name="work", command=FIRST_SLEEPS)])],
    schedulers=[ForceScheduler(name="force", builderNames=["flaky"])],
)
"""


def worker(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-P", "-m", "worker.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def pid_of(directory: Path) -> int:
    return int((directory / "twistd.pid").read_text())


def kill_if_alive(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict]:
    port = free_port()
    master_dir, worker_dir = tmp_path / "master", tmp_path / "worker"
    pidfile, marker = tmp_path / "sleep.pid", tmp_path / "attempted"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    (master_dir / "master.cfg").write_text(
        textwrap.dedent(CONFIG.format(port=port, pidfile=pidfile, marker=marker))
    )
    assert run("start", str(master_dir), cwd=tmp_path).returncode == 0
    made = worker("create-worker", str(worker_dir), "--master", f"http://127.0.0.1:{port}", "--name", "w1",
                  "--password", "s3cret", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert worker("start", str(worker_dir), cwd=tmp_path).returncode == 0
    state = {"port": port, "master": master_dir, "worker": worker_dir, "pidfile": pidfile, "tmp": tmp_path}
    try:
        yield state
    finally:
        worker("stop", str(worker_dir), cwd=tmp_path)
        run("stop", str(master_dir), cwd=tmp_path)
        if pidfile.exists():
            kill_if_alive(int(pidfile.read_text()))


def force_and_wait_for_the_sleep(site: dict) -> int:
    rpc(site["port"], "forceschedulers/force", "force", builderid=1)
    return int(wait_until(lambda: site["pidfile"].exists() and site["pidfile"].read_text().strip()))


def builds_of_request(port: int, brid: int) -> list[dict]:
    return http_get(port, f"/api/v2/buildrequests/{brid}/builds?order=buildid")["builds"]


def test_a_worker_killed_mid_build_leaves_a_retry_and_the_request_runs_again(site: dict) -> None:
    port = site["port"]
    force_and_wait_for_the_sleep(site)
    os.kill(pid_of(site["worker"]), signal.SIGKILL)
    first = wait_until(lambda: [b for b in builds_of_request(port, 1) if b["complete"]])[0]
    assert first["results"] == 5  # retry
    request = http_get(port, "/api/v2/buildrequests/1")["buildrequests"][0]
    assert request["complete"] is False and request["claimed"] is False  # queued again

    assert worker("start", str(site["worker"]), cwd=site["tmp"]).returncode == 0
    builds = wait_until(lambda: len(builds_of_request(port, 1)) == 2 and builds_of_request(port, 1)[1]["complete"]
                        and builds_of_request(port, 1))
    assert [b["results"] for b in builds] == [5, 0]
    request = http_get(port, "/api/v2/buildrequests/1")["buildrequests"][0]
    assert request["complete"] is True and request["results"] == 0
    assert http_get(port, "/api/v2/builds")["meta"]["total"] == 2


def test_a_master_killed_mid_build_ends_it_as_exception_on_restart_and_runs_the_request_once(site: dict) -> None:
    port = site["port"]
    force_and_wait_for_the_sleep(site)
    os.kill(pid_of(site["master"]), signal.SIGKILL)
    time.sleep(0.5)
    restarted = run("start", str(site["master"]), cwd=site["tmp"])
    assert restarted.returncode == 0, restarted.stderr
    # the worker reconnects by itself; the request runs again and passes
    builds = wait_until(lambda: len(builds_of_request(port, 1)) == 2 and builds_of_request(port, 1)[1]["complete"]
                        and builds_of_request(port, 1), timeout=90)
    assert [b["results"] for b in builds] == [4, 0]  # exception, then success
    request = http_get(port, "/api/v2/buildrequests/1")["buildrequests"][0]
    assert request["complete"] is True and request["results"] == 0
    steps = http_get(port, f"/api/v2/builds/{builds[0]['buildid']}/steps")["steps"]
    assert steps[0]["complete"] is True and steps[0]["results"] == 4
