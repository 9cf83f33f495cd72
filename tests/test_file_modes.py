"""The master directory keeps its secrets to its owner: 0700, files 0600, and checkconfig says when not.

Run with the usual umask 022, as a user's shell would, so that only the master's own care
makes the files private.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cliutil import free_port, run, use_port

pytestmark = pytest.mark.slow  # real ci-master processes

PRIVATE = ("master.cfg", "state.sqlite")


def mode(path: Path) -> int:
    """The permission bits of *path*."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def shell_umask() -> Iterator[None]:
    """The CLI's processes start with umask 022 (they inherit it)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_create_master_and_the_daemon_keep_files_private(tmp_path: Path, shell_umask: None) -> None:
    done = run("create-master", "m", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    master_dir = tmp_path / "m"
    assert mode(master_dir) == 0o700
    for name in PRIVATE:
        assert mode(master_dir / name) == 0o600, name
    checked = run("checkconfig", str(master_dir), cwd=tmp_path)
    assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr

    # the daemon: its log, and the database's WAL files it makes while it runs
    use_port(master_dir, free_port())
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    try:
        made = [master_dir / name for name in ("twistd.log", "state.sqlite-wal", "state.sqlite-shm")]
        for path in made:
            assert path.exists() and mode(path) == 0o600, (path, oct(mode(path)) if path.exists() else None)
        checked = run("checkconfig", str(master_dir), cwd=tmp_path)
        assert checked.returncode == 0 and "warning" not in checked.stderr, checked.stderr
    finally:
        stopped = run("stop", str(master_dir), cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr


def test_checkconfig_warns_about_files_others_may_read(tmp_path: Path, shell_umask: None) -> None:
    assert run("create-master", "m", cwd=tmp_path).returncode == 0
    master_dir = tmp_path / "m"
    os.chmod(master_dir, 0o755)
    os.chmod(master_dir / "master.cfg", 0o644)
    os.chmod(master_dir / "state.sqlite", 0o640)
    (master_dir / "twistd.log").write_text("")
    os.chmod(master_dir / "twistd.log", 0o604)
    checked = run("checkconfig", str(master_dir), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr  # a warning, not an error: the config is valid
    warnings = [line for line in checked.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 4, checked.stderr
    assert f"warning: {master_dir} is readable by others (mode 0755); make it 0700: chmod 700 {master_dir}" \
        in warnings
    for name, was in (("master.cfg", "0644"), ("state.sqlite", "0640"), ("twistd.log", "0604")):
        assert f"warning: {master_dir / name} is readable by others (mode {was}); make it 0600" in checked.stderr
    # fixed as told: quiet again
    for line in warnings:
        os.chmod(line.rsplit(" ", 1)[1], int(line.rsplit("chmod ", 1)[1].split()[0], 8))
    checked = run("checkconfig", str(master_dir), cwd=tmp_path)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
