"""Two real master processes on one real PostgreSQL, a worker on each: shared work, shared events,
a master killed mid-build, PostgreSQL restarted; and SQLite refusing a second master."""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cliutil import free_port, http_get, run
from liveclient import LiveClient
from pgserver import PostgresServer
from test_end_to_end import rpc
from waiting import wait_until

pytestmark = pytest.mark.slow  # real masters and a PostgreSQL server

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker({mine!r}, max_builds=4), WorkerConfig({theirs!r}, "unused-here")],
    builders=[
        BuilderConfig(name="quick", workernames=["wa", "wb"], steps=[ShellCommand(name="true", command=["true"])]),
        BuilderConfig(name="slow", workernames=["wa", "wb"],
                      steps=[ShellCommand(name="sleep", command=["sleep", "4"])]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["quick", "slow"])],
    heartbeat_seconds=0.5,
    master_expiry_seconds=3,
)
"""


def make_master(root: Path, name: str, db_url: str, mine: str, theirs: str) -> dict[str, Any]:
    port = free_port()
    master_dir = root / name
    assert run("create-master", str(master_dir), cwd=root).returncode == 0
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(
        db_url=db_url, port=port, mine=mine, theirs=theirs)))
    upgraded = run("upgrade-master", str(master_dir), cwd=root)
    assert upgraded.returncode == 0, upgraded.stderr
    return {"dir": master_dir, "port": port}


def start(master: dict[str, Any], root: Path) -> None:
    started = run("start", str(master["dir"]), cwd=root)
    assert started.returncode == 0, started.stderr
    master["pid"] = int((master["dir"] / "twistd.pid").read_text())
    master["id"] = next(m["masterid"] for m in http_get(master["port"], "/api/v2/masters")["masters"]
                        if m["name"].endswith(str(master["dir"])))


def force(master: dict[str, Any], builderid: int) -> int:
    result = rpc(master["port"], "forceschedulers/force", "force", builderid=builderid)["result"]
    return next(iter(result[1].values()))


def when_available(call: Any, timeout: float = 60.0) -> Any:
    """Call *call* again while the master answers 503 (its database is away), as a client should:
    after the Retry-After it names, for at most *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except urllib.error.HTTPError as error:
            if error.code != 503 or time.monotonic() > deadline:
                raise
            assert error.headers.get("Retry-After"), "a 503 names when to retry"
            time.sleep(min(float(error.headers["Retry-After"]), 1.0))


def builds_of(port: int, **query: str) -> list[dict[str, Any]]:
    q = "&".join(f"{k}={v}" for k, v in {"limit": "1000", **query}.items())
    return http_get(port, f"/api/v2/builds?{q}")["builds"]


@pytest.fixture
def two_masters(pg_server: PostgresServer, tmp_path: Path) -> Iterator[tuple[dict, dict]]:
    db_url = pg_server.create_database(f"multi_{os.getpid()}_{time.monotonic_ns()}")
    a = make_master(tmp_path, "a", db_url, "wa", "wb")
    b = make_master(tmp_path, "b", db_url, "wb", "wa")
    try:
        start(a, tmp_path)
        start(b, tmp_path)
        yield a, b
    finally:
        for master in (a, b):
            run("stop", str(master["dir"]), cwd=tmp_path)
        # a master killed with -9 leaves its local worker behind (it keeps trying to reconnect)
        kill_processes_under(tmp_path)


def kill_processes_under(folder: Path) -> None:
    """SIGKILL every process whose command line names a path under *folder*."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(folder) in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_two_masters_share_work_events_and_survive_a_crash_and_a_database_restart(
    two_masters: tuple[dict, dict], pg_server: PostgresServer, tmp_path: Path
) -> None:
    from twisted.internet import threads

    a, b = two_masters
    watcher = await LiveClient(f"ws://127.0.0.1:{a['port']}/ws").connect()
    assert (await watcher.command("startConsuming", path="builds/*/finished"))["code"] == 200

    # 200 forced builds, half asked of each master: each request runs exactly once, on either
    brids = await threads.deferToThread(lambda: [force(a if n % 2 else b, 1) for n in range(200)])
    assert len(set(brids)) == 200

    def all_done() -> bool:
        return len(builds_of(a["port"], builderid="1", complete="true")) >= 200

    await threads.deferToThread(wait_until, all_done, timeout=120)
    builds = builds_of(a["port"], builderid="1")
    assert sorted(b_["buildrequestid"] for b_ in builds) == sorted(brids)  # one build per request
    assert all(b_["results"] == 0 for b_ in builds)
    by_master = {m: sum(1 for b_ in builds if b_["masterid"] == m) for m in (a["id"], b["id"])}
    assert by_master[a["id"]] > 0 and by_master[b["id"]] > 0, by_master

    # the websocket client on A saw the builds B ran finish
    finished = {}
    while len(finished) < 200:
        message = await watcher.next_event(timeout=30)
        finished[message["m"]["buildid"]] = message["m"]["masterid"]
    assert sum(1 for m in finished.values() if m == b["id"]) == by_master[b["id"]]

    # kill -9 master B while it runs a slow build: A takes the request over and finishes it
    slow = []
    for _ in range(6):
        slow.append(await threads.deferToThread(force, a, 2))

    def b_is_building() -> list[dict[str, Any]]:
        return builds_of(a["port"], builderid="2", masterid=str(b["id"]), complete="false")

    running = await threads.deferToThread(wait_until, b_is_building, timeout=60)
    os.kill(b["pid"], signal.SIGKILL)

    def slow_done() -> bool:
        requests = http_get(a["port"], "/api/v2/buildrequests?builderid=2&limit=100")["buildrequests"]
        return len(requests) == 6 and all(r["complete"] for r in requests)

    await threads.deferToThread(wait_until, slow_done, timeout=90)
    lost = http_get(a["port"], f"/api/v2/builds/{running[0]['buildid']}")["builds"][0]
    assert lost["results"] == 4 and lost["complete"]  # exception: its master died
    requests = http_get(a["port"], "/api/v2/buildrequests?builderid=2&limit=100")["buildrequests"]
    assert all(r["results"] == 0 for r in requests)  # every request ran again to success, on A
    masters = {m["masterid"]: m for m in http_get(a["port"], "/api/v2/masters")["masters"]}
    assert masters[b["id"]]["active"] is False and masters[a["id"]]["active"] is True

    # restart B, then PostgreSQL itself: both masters carry on
    start(b, tmp_path)
    await threads.deferToThread(pg_server.restart)
    # until each master has its connections back, it answers 503 with a Retry-After
    more = await threads.deferToThread(
        lambda: [when_available(lambda m=m: force(m, 1)) for m in (a, b) for _ in range(5)])

    def more_done() -> bool:
        done = {x["buildrequestid"] for x in when_available(
            lambda: builds_of(a["port"], builderid="1", complete="true"))}
        return set(more) <= done

    await threads.deferToThread(wait_until, more_done, timeout=90)
    for master in (a, b):
        masters = await threads.deferToThread(when_available, lambda m=master: http_get(m["port"], "/api/v2/masters"))
        assert masters["meta"]["total"] == 2
    watcher.close()


def test_sqlite_refuses_a_second_master(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    for master_dir in (first, second):
        assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
        cfg = master_dir / "master.cfg"
        cfg.write_text(cfg.read_text().replace('"port": 8010', f'"port": {free_port()}')
                       .replace('"sqlite:///state.sqlite"', json.dumps(f"sqlite:///{first}/state.sqlite")))
    assert run("start", str(first), cwd=tmp_path).returncode == 0
    try:
        refused = run("start", str(second), cwd=tmp_path)
        assert refused.returncode == 1
        assert "SQLite serves one master only" in refused.stderr and str(first) in refused.stderr
    finally:
        assert run("stop", str(first), cwd=tmp_path).returncode == 0
