"""The ci-master command as a user runs it: real subprocesses, a real port, a real client."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from cliutil import CLI, free_port, http_get, run, use_port
from waiting import wait_until

pytestmark = pytest.mark.slow  # real ci-master processes


@pytest.fixture
def master_dir(tmp_path: Path) -> Path:
    done = run("create-master", "m", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "created master" in done.stdout
    return tmp_path / "m"


def start(master_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "start", "--nodaemon", str(master_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for_line(process: subprocess.Popen, words: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if words in line:
            return line
    process.kill()
    raise AssertionError(f"no {words!r} in output:\n{''.join(seen)}")


def test_create_master_writes_config_and_database(master_dir: Path) -> None:
    assert (master_dir / "master.cfg").is_file()
    assert (master_dir / "state.sqlite").is_file()
    again = run("create-master", "m", cwd=master_dir.parent)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_start_serves_the_api_and_stops_on_sigterm(master_dir: Path) -> None:
    port = free_port()
    use_port(master_dir, port)
    process = start(master_dir)
    try:
        line = wait_for_line(process, "is running at")
        assert f"127.0.0.1:{port}" in line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/builders", timeout=10) as response:
            body = json.load(response)
        assert [b["name"] for b in body["builders"]] == ["demo"] and body["meta"]["total"] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/masters", timeout=10) as response:
            masters = json.load(response)["masters"]
        assert len(masters) == 1 and masters[0]["active"] is True
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_start_refuses_a_missing_directory(tmp_path: Path) -> None:
    done = run("start", "--nodaemon", str(tmp_path / "nope"), cwd=tmp_path)
    assert done.returncode == 1 and "no such directory" in done.stderr


def test_start_reports_a_port_in_use(master_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        use_port(master_dir, busy.getsockname()[1])
        done = subprocess.run(
            [*CLI, "start", "--nodaemon", str(master_dir)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1" in done.stderr


def test_start_refuses_an_old_schema(master_dir: Path) -> None:
    from master.db import migrate

    url = f"sqlite:///{master_dir / 'old.sqlite'}"
    migrate.upgrade(url, progress=lambda message: None, target="0001")
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text().replace('"sqlite:///state.sqlite"', '"sqlite:///old.sqlite"'))
    done = run("start", "--nodaemon", str(master_dir), cwd=master_dir)
    assert done.returncode == 1 and "upgrade-master" in done.stderr


def test_broken_config_names_file_and_line(master_dir: Path) -> None:
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text() + "\nconfig.www = {'port': 'eighty'}\nundefined_name\n")
    done = run("start", "--nodaemon", str(master_dir), cwd=master_dir)
    assert done.returncode == 1
    assert f"{cfg}:" in done.stderr and "NameError" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1  # one line, no traceback


# -- the daemon ---------------------------------------------------------------------------------


def wait_until_connected(port: int, name: str = "local", timeout: float = 30) -> None:
    def connected() -> bool:
        workers = http_get(port, f"/api/v2/workers?name={name}")["workers"]
        return bool(workers and workers[0]["connected_to"])

    wait_until(connected, f"worker {name} to connect", timeout=timeout)


def test_daemon_lifecycle_with_reconfig(master_dir: Path) -> None:
    import http.client

    port = free_port()
    use_port(master_dir, port)
    started = run("start", str(master_dir), cwd=master_dir)
    assert started.returncode == 0, started.stderr
    assert f"serving http://127.0.0.1:{port}/" in started.stdout
    pid = int((master_dir / "twistd.pid").read_text())
    try:
        again = run("start", str(master_dir), cwd=master_dir)
        assert again.returncode == 1 and f"already running (pid {pid})" in again.stderr

        # the local worker's WebSocket and a keep-alive HTTP connection opened before the reconfig survive it
        wait_until_connected(port)
        keepalive = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        keepalive.request("GET", "/api/v2/builders")
        assert [b["name"] for b in json.loads(keepalive.getresponse().read())["builders"]] == ["demo"]
        local_port = keepalive.sock.getsockname()[1]

        cfg = master_dir / "master.cfg"
        good = cfg.read_text()
        extra = 'builders=[\n        BuilderConfig(name="extra", tags=["new"], workernames=["local", "second"]),'
        second = 'workers=[WorkerConfig("second", "pw"), '
        with_second = good.replace("builders=[", extra).replace("workers=[", second)
        cfg.write_text("from master.config import WorkerConfig\n" + with_second)
        checked = run("checkconfig", str(master_dir), cwd=master_dir)
        assert checked.returncode == 0 and "2 builder(s)" in checked.stdout
        done = run("reconfig", str(master_dir), cwd=master_dir)
        assert done.returncode == 0, done.stderr
        assert "builders 1 -> 2, workers 1 -> 2" in done.stdout

        keepalive.request("GET", "/api/v2/builders?order=name")
        builders = json.loads(keepalive.getresponse().read())["builders"]
        assert [b["name"] for b in builders] == ["demo", "extra"]
        keepalive.request("GET", "/api/v2/workers?order=name")
        workers = json.loads(keepalive.getresponse().read())["workers"]
        assert [w["name"] for w in workers] == ["local", "second"]
        extra_id = builders[1]["builderid"]
        assert {"masterid": 1, "builderid": extra_id} in workers[0]["configured_on"]
        assert workers[1]["configured_on"] == [{"masterid": 1, "builderid": extra_id}]
        assert workers[0]["connected_to"] == [{"masterid": 1}]
        log_text = (master_dir / "twistd.log").read_text()
        assert log_text.count("worker local connected") == 1 and "worker local disconnected" not in log_text
        assert keepalive.sock.getsockname()[1] == local_port  # the same connection
        keepalive.close()

        # a broken config is refused and the running one kept
        cfg.write_text(good + "\nconfig.www = {'port': 'eighty'}\n")
        broken = run("checkconfig", str(master_dir), cwd=master_dir)
        assert broken.returncode == 1 and "www.port" in broken.stderr
        refused = run("reconfig", str(master_dir), cwd=master_dir)
        assert refused.returncode == 1 and "www.port" in refused.stderr
        assert http_get(port, "/api/v2/builders?name=extra")["meta"]["total"] == 1

        # a valid config the running master cannot apply is refused by the master itself
        cfg.write_text(good + f"\nconfig.db_url = 'sqlite:///{master_dir}/other.sqlite'\n")
        assert run("checkconfig", str(master_dir), cwd=master_dir).returncode == 0
        refused = run("reconfig", str(master_dir), cwd=master_dir)
        assert refused.returncode == 1 and "db_url cannot change" in refused.stderr
        assert http_get(port, "/api/v2/builders?name=extra")["meta"]["total"] == 1
    finally:
        stopped = run("stop", str(master_dir), cwd=master_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert not (master_dir / "twistd.pid").exists()
    assert "not running" in run("stop", str(master_dir), cwd=master_dir).stderr
    log = (master_dir / "twistd.log").read_text()
    assert "ci-master started: serving" in log and "ci-master reconfig failed" in log


def test_stale_pidfile_is_cleared(master_dir: Path) -> None:
    (master_dir / "twistd.pid").write_text("999999")
    done = run("stop", str(master_dir), cwd=master_dir)
    assert done.returncode == 1 and "not running" in done.stderr
    assert not (master_dir / "twistd.pid").exists()


def test_daemon_reports_a_port_in_use(master_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        use_port(master_dir, busy.getsockname()[1])
        done = run("start", str(master_dir), cwd=master_dir)
    assert done.returncode == 1 and "cannot listen on 127.0.0.1" in done.stderr
    assert not (master_dir / "twistd.pid").exists() or run("stop", str(master_dir), cwd=master_dir).returncode == 1


def test_upgrade_master_migrates_an_old_database(master_dir: Path) -> None:
    from master.db import migrate

    (master_dir / "state.sqlite").unlink()
    url = f"sqlite:///{master_dir / 'state.sqlite'}"
    migrate.upgrade(url, progress=lambda message: None, target="0001")
    refused = run("start", str(master_dir), cwd=master_dir)
    assert refused.returncode == 1 and "upgrade-master" in refused.stderr
    done = run("upgrade-master", str(master_dir), cwd=master_dir)
    assert done.returncode == 0, done.stderr
    # every migration after 0001 is applied in order, however many later branches add
    assert "[1/" in done.stdout and "] 0002" in done.stdout and "[2/" in done.stdout and "] 0003" in done.stdout
    assert "backed up" in done.stdout
    assert f"] {migrate.head_revision()}:" in done.stdout
    assert "] 0005" in done.stdout and "indexing builds (0 rows)" in done.stdout  # a long step says how far
    assert migrate.current_revision(url) == migrate.head_revision()
    assert list(master_dir.glob("state.sqlite.*.bak"))


@pytest.mark.parametrize("command", ["start", "stop", "reconfig", "checkconfig", "upgrade-master"])
def test_commands_refuse_a_directory_that_is_not_a_master(tmp_path: Path, command: str) -> None:
    done = run(command, str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and "not a master directory" in done.stderr


def test_every_command_has_help(tmp_path: Path) -> None:
    for command in ["create-master", "start", "stop", "restart", "reconfig", "checkconfig", "upgrade-master"]:
        done = run(command, "--help", cwd=tmp_path)
        assert done.returncode == 0 and "DIR" in done.stdout


def test_start_names_an_unreachable_database_without_its_password(master_dir: Path) -> None:
    cfg = master_dir / "master.cfg"
    url = f"postgresql://ci:hunter2@127.0.0.1:{free_port()}/ci"
    cfg.write_text(cfg.read_text().replace('"sqlite:///state.sqlite"', repr(url)))
    done = run("start", str(master_dir), cwd=master_dir)
    assert done.returncode == 1
    assert "database unreachable at postgresql://ci:***@127.0.0.1:" in done.stderr
    assert "hunter2" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_clean_stop_waits_for_the_running_build(master_dir: Path) -> None:
    port = free_port()
    use_port(master_dir, port)
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text().replace('command="uname -a && python3 --version"', 'command="sleep 3; echo slept"'))
    assert run("start", str(master_dir), cwd=master_dir).returncode == 0
    try:
        wait_until_connected(port)
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "force", "params": {"builderid": 1}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/forceschedulers/force", body,
                                         {"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
        wait_until(lambda: http_get(port, "/api/v2/builds?complete=false")["builds"], "the build to start",
                   interval=0.1)
        stopped = run("stop", "--clean", str(master_dir), cwd=master_dir)
    finally:
        run("stop", str(master_dir), cwd=master_dir)
    assert stopped.returncode == 0, stopped.stderr
    assert "waiting for 1 running build(s)" in stopped.stdout and "ci-master stopped" in stopped.stdout
    assert not (master_dir / "twistd.pid").exists()
    # the build ran to its end before the master stopped
    import sqlite3

    with sqlite3.connect(master_dir / "state.sqlite") as db:
        assert db.execute("SELECT results, complete_at IS NOT NULL FROM builds").fetchall() == [(0, 1)]


# -- what --help costs ----------------------------------------------------------------------------

HEAVY = ("alembic", "sqlalchemy", "twisted.internet.reactor", "autobahn", "klein", "master.config", "master.db")


@pytest.mark.parametrize("module", ["master.cli", "worker.cli"])
def test_help_imports_neither_the_database_layer_nor_the_reactor(module: str) -> None:
    # What ``--help`` loads, not how long it takes (timing is noisy): each command imports what it uses.
    child = (
        "import contextlib, io, sys\n"
        f"import {module} as cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    cli.main(['--help'])\n"
        "assert 'usage:' in out.getvalue(), out.getvalue()\n"
        f"heavy = {HEAVY!r}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy))))\n"
    )
    done = subprocess.run([sys.executable, "-P", "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"{module} --help imported: {done.stdout.strip()}"
