"""A worker killed with ``kill -9`` leaves no step running (issue 16, item 11): real ci-worker daemons.

The worker's guard kills the step's process group when the worker dies; a worker that starts
kills the groups a previous instance recorded (when the guard died too).  Every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from test_worker import PASSWORD, cli, fake, gone  # noqa: F401 (the fixture)
from twisted.internet import threads
from waiting import wait_for, wait_until
from wsmaster import FakeMaster

from worker.groups import RECORD, kill_left_groups, start_time

pytestmark = pytest.mark.slow  # real worker processes and their commands

STEP = "sleep 300 & echo $!; echo $$; wait"  # a shell and a child of it: the step's whole group


def _children(pid: int) -> list[tuple[int, str]]:
    """The processes whose parent is *pid*, with their command lines."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append((int(entry.name), cmdline))
    return found


async def _started_worker(fake: FakeMaster, tmp_path: Path) -> tuple[Path, int]:  # noqa: F811
    created = cli("create-worker", "w", "--master", fake.url, "--name", "w1", "--password", PASSWORD, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    started = await threads.deferToThread(cli, "start", "w", cwd=tmp_path)
    assert started.returncode == 0 and "connected" in started.stdout, started.stderr
    return tmp_path / "w", int((tmp_path / "w" / "twistd.pid").read_text())


async def _running_step(fake: FakeMaster, basedir: Path) -> tuple[int, int]:  # noqa: F811
    """Run STEP on the worker that connects next; return (the shell's pid, its child's)."""
    link = await fake.next_link(timeout=20)
    record = link.run(shell=STEP)
    assert await wait_for(lambda: record.text("o").count("\n") == 2, timeout=10), record.output
    child, shell = (int(line) for line in record.text("o").split())
    assert not gone(shell) and not gone(child)
    assert await wait_for(lambda: (basedir / RECORD).exists(), timeout=5)
    assert (basedir / RECORD).read_text() == f"{shell} {start_time(shell)}\n"
    return shell, child


def _kill(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest_twisted.ensureDeferred
async def test_a_step_dies_with_its_worker_killed_with_sigkill(fake: FakeMaster, tmp_path: Path) -> None:  # noqa: F811
    basedir, worker_pid = await _started_worker(fake, tmp_path)
    shell = child = None
    try:
        shell, child = await _running_step(fake, basedir)
        os.kill(worker_pid, signal.SIGKILL)
        # the worker's guard saw its pipe close and killed the step's group: the shell and its child
        assert await wait_for(lambda: gone(shell) and gone(child), timeout=10)
        assert "killed the process group" in (basedir / "twistd.log").read_text()
    finally:
        _kill(worker_pid, *(p for p in (shell, child) if p is not None))


@pytest_twisted.ensureDeferred
async def test_a_restarted_worker_kills_the_groups_a_dead_one_recorded(fake: FakeMaster, tmp_path: Path) -> None:  # noqa: F811
    basedir, worker_pid = await _started_worker(fake, tmp_path)
    shell = child = None
    guards: list[int] = []
    try:
        shell, child = await _running_step(fake, basedir)
        guards = [pid for pid, cmdline in _children(worker_pid) if "guard.py" in cmdline]
        assert len(guards) == 1
        # the worker and its guard die at once (the guard first): nothing kills the step then...
        _kill(guards[0], worker_pid)
        assert await wait_for(lambda: gone(worker_pid) and gone(guards[0]), timeout=5)
        assert not gone(shell) and not gone(child)
        # ...until the worker starts again: it finds the group in its record and kills it
        (basedir / "twistd.pid").unlink(missing_ok=True)
        started = await threads.deferToThread(cli, "start", "w", cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        assert await wait_for(lambda: gone(shell) and gone(child), timeout=10)
        assert f"killed process group {shell}, left running by a previous instance" in (
            basedir / "twistd.log").read_text()
        assert not (basedir / RECORD).exists()
        stopped = await threads.deferToThread(cli, "stop", "w", cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
    finally:
        if (basedir / "twistd.pid").exists():
            _kill(int((basedir / "twistd.pid").read_text()))
        _kill(worker_pid, *guards, *(p for p in (shell, child) if p is not None))


def test_a_recorded_id_now_used_by_another_program_is_left_alone(tmp_path: Path) -> None:
    ours = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
    other = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        assert wait_until(lambda: start_time(ours.pid) is not None and start_time(other.pid) is not None)
        # 'other' stands for a new process given the id of a group recorded long ago: its start time differs
        (tmp_path / RECORD).write_text(f"{ours.pid} {start_time(ours.pid)}\n{other.pid} {start_time(other.pid) - 1}\n"
                                       "garbage line\n1 0\n")
        assert kill_left_groups(tmp_path) == [ours.pid]
        assert ours.wait(10) == -signal.SIGKILL
        assert other.poll() is None
        assert not (tmp_path / RECORD).exists()
        assert kill_left_groups(tmp_path) == []  # nothing recorded: nothing to do
    finally:
        for process in (ours, other):
            process.kill()
            process.wait(10)

