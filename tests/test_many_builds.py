"""200 forced builds over 10 builders and 2 real workers: all complete, each request ran exactly once."""

from __future__ import annotations

import json
import textwrap
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from cliutil import free_port, http_get, run
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master and worker processes

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

names = [f"b{{n}}" for n in range(10)]
config = MasterConfig(
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker("w1", max_builds=4), LocalWorker("w2", max_builds=4)],
    builders=[
        BuilderConfig(name=name, workernames=["w1", "w2"], steps=[ShellCommand(name="true", command=["true"])])
        for name in names
    ],
    schedulers=[ForceScheduler(name="force", builderNames=names)],
)
"""


def test_two_hundred_builds_each_run_exactly_once(tmp_path: Path) -> None:
    port = free_port()
    master_dir = tmp_path / "master"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(port=port)))
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        wait_until(lambda: len(http_get(port, "/api/v2/workers?field=connected_to")["workers"]) == 2 and all(
            w["connected_to"] for w in http_get(port, "/api/v2/workers?field=connected_to")["workers"]))
        for n in range(200):
            body = json.dumps({"jsonrpc": "2.0", "id": n, "method": "force",
                               "params": {"builderid": n % 10 + 1}}).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/forceschedulers/force", body,
                                             {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                assert "result" in json.load(response)
        done = "/api/v2/buildrequests?complete=true&field=buildrequestid&limit=1"
        wait_until(lambda: http_get(port, done)["meta"]["total"] == 200, timeout=120)
        builds = http_get(port, "/api/v2/builds?field=buildrequestid&field=results&field=workerid&limit=1000")
        assert builds["meta"]["total"] == 200
        ran = Counter(b["buildrequestid"] for b in builds["builds"])
        assert set(ran) == set(range(1, 201)) and set(ran.values()) == {1}
        assert {b["results"] for b in builds["builds"]} == {0}
        assert len({b["workerid"] for b in builds["builds"]}) == 2  # both workers took some
        requests = http_get(port, "/api/v2/buildrequests?field=results&limit=1000")["buildrequests"]
        assert {r["results"] for r in requests} == {0}
    finally:
        run("stop", str(master_dir), cwd=tmp_path)
