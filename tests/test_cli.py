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

CLI = [sys.executable, "-m", "master.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def master_dir(tmp_path: Path) -> Path:
    done = run("create-master", "m", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "created master" in done.stdout
    return tmp_path / "m"


def use_port(master_dir: Path, port: int) -> None:
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text().replace('"port": 8010', f'"port": {port}'))


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
