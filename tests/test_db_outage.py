"""A PostgreSQL outage longer than the retry window (issue 16, item 4): a real master, a real worker,
a real PostgreSQL server stopped mid-build and started again.

While the database is away REST and JSON-RPC answer 503 with a JSON message; the running build
is stopped and ends ``retry``; once the database is back the master reconciles by itself (no
restart) and the request runs again, to success.  Every wait is bounded.
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cliutil import free_port, http_get, run
from pgserver import PostgresServer
from test_multimaster import kill_processes_under
from waiting import wait_until

pytestmark = pytest.mark.slow  # a real master and a PostgreSQL server

RETRY_WINDOW = 3  # db_retry_seconds: short, so that the outage below outlasts it quickly

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker("local")],
    builders=[BuilderConfig(name="slow", workernames=["local"], steps=[
        # long the first time (the outage stops it), quick when the request runs again
        ShellCommand(name="once", command="test -e {marker} && exit 0; touch {marker}; exec sleep 300"),
    ])],
    schedulers=[ForceScheduler(name="force", builderNames=["slow"])],
    heartbeat_seconds=0.5,
    master_expiry_seconds=3,
    db_retry_seconds={window},
)
"""


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test alone: stopping it disturbs no other test."""
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def request(port: int, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], Any]:
    """GET (or POST *body* as JSON) *path*; the status, headers and JSON body, whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


@pytest.mark.postgresql
def test_an_outage_longer_than_the_retry_window_ends_the_build_retry_and_runs_it_again(
    own_server: PostgresServer, tmp_path: Path
) -> None:
    db_url = own_server.create_database("outage")
    port = free_port()
    master_dir = tmp_path / "master"
    marker = tmp_path / "ran-once"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(
        db_url=db_url, port=port, marker=str(marker), window=RETRY_WINDOW)))
    assert run("upgrade-master", str(master_dir), cwd=tmp_path).returncode == 0
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    pid = int((master_dir / "twistd.pid").read_text())
    log = master_dir / "twistd.log"
    try:
        wait_until(lambda: http_get(port, "/api/v2/workers?name=local")["workers"][0]["connected_to"], timeout=30)
        status, _, forced = request(port, "/api/v2/forceschedulers/force",
                                    {"jsonrpc": "2.0", "id": 1, "method": "force", "params": {"builderid": 1}})
        assert status == 200, forced
        brid = int(next(iter(forced["result"][1].values())))
        wait_until(lambda: marker.exists(), timeout=30)  # the first build runs its long command
        first = http_get(port, f"/api/v2/buildrequests/{brid}/builds")["builds"]
        assert len(first) == 1 and first[0]["complete"] is False

        own_server.halt()
        try:
            # REST and JSON-RPC say the database is away, in JSON, rather than wait and fail with a 500
            got = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(request(port, "/api/v2/builders")),
                             timeout=30)
            _, headers, body = got
            assert "database is unavailable" in body["error"] and headers.get("Retry-After") == "5"
            status, headers, body = request(port, "/api/v2/forceschedulers/force", {
                "jsonrpc": "2.0", "id": 7, "method": "force", "params": {"builderid": 1}})
            assert status == 503 and body["error"]["code"] == -32004 and body["id"] == 7
            assert "database is unavailable" in body["error"]["message"]
            # the outage outlasts the retry window: the master stops the build (its command is interrupted)
            wait_until(lambda: "stopping 1 build(s); they end retry" in log.read_text(), timeout=60)
        finally:
            own_server.resume()

        def retried_to_success() -> list[dict[str, Any]] | None:
            status, _, body = request(port, f"/api/v2/buildrequests/{brid}")
            if status != 200 or not body["buildrequests"][0]["complete"]:
                return None
            return http_get(port, f"/api/v2/buildrequests/{brid}/builds?order=buildid")["builds"]

        builds = wait_until(retried_to_success, timeout=60)
        assert [(b["results"], b["complete"]) for b in builds] == [(5, True), (0, True)]  # retry, then success
        assert "database was unavailable" in builds[0]["state_string"]
        assert http_get(port, f"/api/v2/buildrequests/{brid}")["buildrequests"][0]["results"] == 0
        assert request(port, "/api/v2/builders")[0] == 200
        assert int((master_dir / "twistd.pid").read_text()) == pid  # the same master: no restart needed
    finally:
        run("stop", str(master_dir), cwd=tmp_path)
        kill_processes_under(tmp_path)
