"""A program run under twistd, as the master and the worker are: its pidfile, its log, starting and stopping it.

Standard library only, so that ``ci-worker`` (which uses it too) starts fast.  The program
writes marker lines to its log; the CLI reads the log from where it was to learn how a start
or a reconfig went.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PIDFILE = "twistd.pid"
LOGFILE = "twistd.log"


class CommandError(Exception):
    """A failure to report to the user in one line, exiting non-zero."""


def package_version() -> str:
    """The installed ci-master distribution's version (``ci-master --version``, ``ci-worker --version``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ci-master")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def program_dir(path: str, marker: str, kind: str, create_command: str) -> Path:
    """*path* resolved, checked to be a directory holding *marker* (``master.cfg``, ``worker.cfg``)."""
    basedir = Path(path).resolve()
    if not basedir.is_dir():
        raise CommandError(f"{basedir}: no such directory")
    if not (basedir / marker).is_file():
        raise CommandError(f"{basedir} is not a {kind} directory (no {marker}; see '{create_command}')")
    return basedir


def log_observer(basedir: str | Path) -> object:
    """A log observer writing text lines to ``basedir/twistd.log``, rotated at 10 MB with ten files kept."""
    # imported here: the CLIs use this module without loading Twisted
    from twisted.logger import textFileLogObserver
    from twisted.python.logfile import LogFile

    # 0600: the log may quote secrets; twistd opens it before it sets the daemon's umask
    log_file = LogFile(LOGFILE, str(basedir), rotateLength=10_000_000, maxRotatedFiles=10, defaultMode=0o600)
    return textFileLogObserver(log_file)  # type: ignore[arg-type]  # a LogFile is a text file, not typed as IO


def read_pid(basedir: Path) -> int | None:
    """The pid in the pidfile, or None when there is none."""
    try:
        return int((basedir / PIDFILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_running(pid: int) -> bool:
    """Whether a process with this pid exists and has not died (a zombie waiting to be reaped has)."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    try:
        # a daemon killed with SIGKILL stays a zombie until its parent, often init, reaps it
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): kill(0) is all we can know
    return stat.rpartition(")")[2].split()[0] != "Z"


def clear_stale_pidfile(basedir: Path) -> int | None:
    """Remove a pidfile whose process is gone and return its pid; None when there is none or it runs."""
    pid = read_pid(basedir)
    if pid is None or is_running(pid):
        return None
    (basedir / PIDFILE).unlink(missing_ok=True)
    return pid


def running_pid(basedir: Path) -> int | None:
    """The pid of the program running in *basedir*; a stale pidfile is removed and None returned."""
    clear_stale_pidfile(basedir)
    return read_pid(basedir)


def log_size(basedir: Path) -> int:
    """The current length of the log, to read what comes after it."""
    try:
        return (basedir / LOGFILE).stat().st_size
    except FileNotFoundError:
        return 0


def wait_for_log(
    basedir: Path, offset: int, markers: tuple[str, ...], timeout: float, alive: Callable[[], bool] | None = None
) -> str | None:
    """Read the log from *offset* until a line containing one of *markers*; return that line.

    Returns None on timeout, or as soon as *alive* says the process is gone.
    """
    deadline = time.monotonic() + timeout
    path = basedir / LOGFILE
    buffer = ""
    while time.monotonic() < deadline:
        try:
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            buffer += chunk.decode(errors="replace")
            lines = buffer.split("\n")
            buffer = lines.pop()
            for line in lines:
                if any(marker in line for marker in markers):
                    return line
        if alive is not None and not alive():
            return None
        time.sleep(0.1)
    return None


def spawn_twistd(basedir: Path, tac: Path, umask: int | None = None) -> subprocess.CompletedProcess:
    """Run twistd on *tac* in *basedir*; it returns once the daemon has forked.

    With *umask*, the daemon uses it instead of twistd's 077.
    """
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
               "--pidfile", PIDFILE, "--logfile", LOGFILE, "--python", str(tac)]
    if umask is not None:
        command[-2:-2] = ["--umask", f"{umask:04o}"]
    return subprocess.run(command, cwd=basedir, capture_output=True, text=True, timeout=120)


def start_daemon(
    basedir: Path, tac: Path, markers: tuple[str, ...], timeout: float, umask: int | None = None
) -> tuple[int | None, str | None]:
    """Run twistd on *tac* in *basedir*, then read its log until a line with one of *markers*.

    Returns ``(pid, line)``; *line* is None when no marker came within *timeout* or the process
    died first.  Raises CommandError when twistd itself could not start the daemon.
    """
    offset = log_size(basedir)
    spawned = spawn_twistd(basedir, tac, umask)
    if spawned.returncode != 0:
        detail = (spawned.stderr or spawned.stdout).strip().splitlines()
        raise CommandError(f"twistd failed to start: {detail[-1] if detail else 'no output'}")
    pid = read_pid(basedir)
    line = wait_for_log(basedir, offset, markers, timeout, alive=lambda: pid is None or is_running(pid))
    return pid, line


def stop_process(pid: int, timeout: float) -> bool:
    """SIGTERM *pid* and wait for it to exit; return whether it did in time."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.1)
    return False
