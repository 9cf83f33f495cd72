"""Live updates from a real master and worker: forced builds seen on /ws, a log's lines as the worker
prints them, and a client that drops mid-build and resumes with ``since``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cliutil import free_port, http_get, run
from liveclient import LiveClient
from test_end_to_end import rpc
from twisted.internet import threads

pytestmark = pytest.mark.slow  # a real master process

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker("local")],
    builders=[BuilderConfig(name="talk", workernames=["local"], steps=[
        ShellCommand(name="count", command=["sh", "-c", "for i in 1 2 3 4 5 6; do echo line $i; sleep 0.4; done"]),
    ])],
    schedulers=[ForceScheduler(name="force", builderNames=["talk"])],
)
"""


@pytest.fixture
def master(tmp_path: Path) -> Iterator[dict[str, Any]]:
    port = free_port()
    master_dir = tmp_path / "m"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(port=port)))
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        yield {"port": port, "ws": f"ws://127.0.0.1:{port}/ws"}
    finally:
        run("stop", str(master_dir), cwd=tmp_path)


def lines_of(events: list[dict[str, Any]]) -> list[str]:
    return [line for e in events for line in e["m"]["appended"]["content"].splitlines()]


@pytest_twisted.ensureDeferred
async def test_forced_build_and_its_log_live_then_resumed(master: dict[str, Any]) -> None:
    builds = await LiveClient(master["ws"]).connect()
    assert (await builds.command("startConsuming", path="builds/*/*"))["code"] == 200
    watcher = await LiveClient(master["ws"]).connect()
    assert (await watcher.command("startConsuming", path="logs/*/new"))["code"] == 200

    await threads.deferToThread(rpc, master["port"], "forceschedulers/force", "force", builderid=1)
    new = await builds.next_event()
    assert new["k"].startswith("builds/") and new["k"].endswith("/new")
    buildid = new["m"]["buildid"]
    assert new["m"]["complete"] is False and new["m"]["builderid"] == 1

    # the stdio log of the step: subscribe to it by id, from the event that made it
    made = await watcher.events_until(lambda m: m["m"]["name"] == "stdio")
    log_event = made[-1]
    logid = log_event["m"]["logid"]
    follower = await LiveClient(master["ws"]).connect()
    reply = await follower.command("startConsuming", path=f"logs/{logid}/append", since=log_event["id"])
    assert reply["code"] == 200
    appends = await follower.events_until(lambda m: "line 2" in m["m"]["appended"]["content"], timeout=30)
    assert all(m["k"] == f"logs/{logid}/append" for m in appends)
    assert [line for line in lines_of(appends) if "line" in line][-2:] == ["oline 1", "oline 2"]
    # the lines come while the build runs, not at its end
    build = await threads.deferToThread(http_get, master["port"], f"/api/v2/builds/{buildid}")
    assert build["builds"][0]["complete"] is False

    # drop mid-build; resume with the last id seen: the rest of the lines, none twice
    last = appends[-1]["id"]
    follower.drop()
    again = await LiveClient(master["ws"]).connect()
    assert (await again.command("startConsuming", path=f"logs/{logid}/append", since=last))["code"] == 200
    rest = await again.events_until(lambda m: "line 6" in m["m"]["appended"]["content"], timeout=30)
    assert [line for line in lines_of(rest) if line.startswith("oline")] == [f"oline {n}" for n in range(3, 7)]
    assert [m["id"] for m in rest] == sorted({m["id"] for m in rest}) and rest[0]["id"] > last

    # the build's own events: new, updates, finished, in id order, each the whole build
    seen = [new] + await builds.events_until(lambda m: m["k"] == f"builds/{buildid}/finished", timeout=30)
    kinds = [m["k"].rsplit("/", 1)[1] for m in seen if m["m"]["buildid"] == buildid]
    assert kinds[0] == "new" and kinds[-1] == "finished" and set(kinds[1:-1]) == {"update"}
    assert [m["id"] for m in seen] == sorted(m["id"] for m in seen)
    assert seen[-1]["m"]["results"] == 0 and seen[-1]["m"]["complete"] is True
    assert seen[-1]["m"]["state_string"] and "complete_at" in seen[-1]["m"]
    for client in (builds, watcher, again):
        client.close()
