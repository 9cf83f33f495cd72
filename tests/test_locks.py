"""Locks end to end: real ci-master processes and their ci-worker processes, on SQLite and PostgreSQL.

Twenty builds of four builders sharing ``MasterLock("deploy")`` (three through the builder, one
through a step) never overlap; a waiting build names the lock in its state string; a counting
lock of ``maxCount=2`` lets exactly two in, a ``WorkerLock`` the count of its worker.  Two masters
on one PostgreSQL share the lock, and a master killed while holding it lets it go once it is
declared dead.  Overlap is read back from the builds: each locked step prints the time it
started and ended (nanoseconds) in its log, and the steps' own times are checked too.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cliutil import http_get
from localsite import database_url, finished_builds, force, start_master
from test_metrics import masters  # noqa: F401 (the fixture: masters stopped at the end)
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master processes

STAMPED = "echo start $(date +%s.%N); sleep {sleep}; echo end $(date +%s.%N)"

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.localworkers import LocalWorker
from master.engine.locks import MasterLock, WorkerLock
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

deploy = MasterLock("deploy")
pair = MasterLock("pair", maxCount=2)
cpu = WorkerLock("cpu", maxCount=1, maxCountForWorker={{{mine!r}: 3}})
STAMPED = {stamped!r}

def locked(name, locks=(), step_locks=None, sleep="0.15", workernames=({mine!r}, {theirs!r})):
    return BuilderConfig(name=name, workernames=list(workernames), locks=list(locks), steps=[
        ShellCommand(name="stamped", command=STAMPED.format(sleep=sleep), locks=step_locks),
    ])

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker({mine!r}, max_builds=12), WorkerConfig({theirs!r}, "unused-here")],
    builders=[
        locked("d1", [deploy.access("exclusive")]),
        locked("d2", [deploy.access("exclusive")]),
        locked("d3", [deploy.access("exclusive")]),
        locked("d4", step_locks=[deploy.access("exclusive")]),
        locked("pair", [pair.access("counting")], sleep="0.6"),
        locked("cpu", step_locks=[cpu.access("counting")], sleep="0.6"),
        # on master a's worker, then on master b's
        locked("hold", [deploy.access("exclusive")], sleep="60", workernames=["wa"]),
        locked("later", [deploy.access("exclusive")], workernames=["wb"]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["d1", "d2", "d3", "d4", "pair", "cpu", "hold", "later"])],
    heartbeat_seconds=0.5,
    master_expiry_seconds=3,
)
"""


def make_master(root: Path, name: str, db_url: str, mine: str = "wa", theirs: str = "wb") -> dict[str, Any]:
    return start_master(root, name, CONFIG, worker=mine, db_url=db_url, mine=mine, theirs=theirs, stamped=STAMPED)


def intervals(port: int, builds: list[dict[str, Any]]) -> list[tuple[float, float, dict[str, Any]]]:
    """(start, end, step) of each build's stamped step, read from its log and its step."""
    found = []
    for build in builds:
        assert build["results"] == 0, build
        step = http_get(port, f"/api/v2/builds/{build['buildid']}/steps/stamped")["steps"][0]
        url = f"http://127.0.0.1:{port}/api/v2/steps/{step['stepid']}/logs/stdio/raw"
        with urllib.request.urlopen(url, timeout=10) as response:
            lines = response.read().decode().splitlines()
        stamps = {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith(("start ", "end "))}
        found.append((stamps["start"], stamps["end"], step))
    return sorted(found, key=lambda interval: interval[0])


def most_at_once(found: list[tuple[float, float, Any]]) -> int:
    events = sorted([(start, 1) for start, _, _ in found] + [(end, -1) for _, end, _ in found])
    most = running = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def assert_never_overlap(found: list[tuple[float, float, dict[str, Any]]]) -> None:
    for (_, end, step), (start, _, nxt) in zip(found, found[1:], strict=False):
        assert end <= start, f"steps {step['stepid']} and {nxt['stepid']} overlap"
        # the steps' own times (whole seconds) agree: one ended no later than the next got its locks
        assert step["complete_at"] <= nxt["locks_acquired_at"]


def test_master_lock_serializes_builds_and_counting_locks_let_in_their_count(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, masters: list[dict[str, Any]]  # noqa: F811 (the fixture)
) -> None:
    master = make_master(tmp_path, "m", database_url(backend, request, "locks"))
    masters.append(master)
    port = master["port"]
    counted = [force(port, "pair") for _ in range(4)] + [force(port, "cpu") for _ in range(5)]
    brids = [force(port, f"d{1 + n % 4}") for n in range(20)]

    def waiting_seen() -> bool:
        builds = http_get(port, "/api/v2/builds?complete=false&limit=100")["builds"]
        return any(b["state_string"] == "waiting for lock 'deploy'" for b in builds)

    assert wait_until(waiting_seen, timeout=30)
    found = intervals(port, finished_builds(port, brids))
    assert len(found) == 20
    assert_never_overlap(found)
    builds = finished_builds(port, counted)
    assert most_at_once(intervals(port, builds[:4])) == 2  # maxCount=2
    assert most_at_once(intervals(port, builds[4:])) == 3  # maxCountForWorker of this worker
    # every claim is let go once the builds end
    assert not http_get(port, "/api/v2/builds?complete=false")["builds"]


@pytest.mark.postgresql
def test_two_masters_share_a_master_lock_and_a_dead_master_lets_it_go(
    pg_server: Any, tmp_path: Path, masters: list[dict[str, Any]]  # noqa: F811 (the fixture)
) -> None:
    db_url = pg_server.create_database(f"locks2_{os.getpid()}_{time.monotonic_ns()}")
    a = make_master(tmp_path, "a", db_url, "wa", "wb")
    masters.append(a)
    b = make_master(tmp_path, "b", db_url, "wb", "wa")
    masters.append(b)
    brids = [force((a if n % 2 else b)["port"], f"d{1 + n % 4}") for n in range(20)]
    builds = finished_builds(a["port"], brids)
    assert {build["masterid"] for build in builds} == {
        m["masterid"] for m in http_get(a["port"], "/api/v2/masters")["masters"]}  # both masters built
    assert_never_overlap(intervals(a["port"], builds))

    # a holds the lock in a long build, then dies: b's build waits, then runs once a is declared dead
    hold = force(a["port"], "hold")
    wait_until(lambda: any(x["state_string"] == "building" for x in
                           http_get(a["port"], f"/api/v2/buildrequests/{hold}/builds")["builds"]))
    waiting = force(b["port"], "later")
    wait_until(lambda: any(x["state_string"] == "waiting for lock 'deploy'" for x in
                           http_get(b["port"], f"/api/v2/buildrequests/{waiting}/builds")["builds"]))
    os.kill(a["pid"], signal.SIGKILL)
    masters.remove(a)
    assert finished_builds(b["port"], [waiting], timeout=60)[0]["results"] == 0
