"""Running a master as a daemon with twistd: the application, its log, start/stop/reconfig helpers.

``ci-master start DIR`` runs ``twistd`` on ``master.tac`` inside DIR, which calls
:func:`make_application`; the log goes to ``DIR/twistd.log`` (rotated at 10 MB, ten files
kept) and the pid to ``DIR/twistd.pid``.  The CLI then reads the log until the master says
it is serving, or why it could not start.
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

from twisted.application import service
from twisted.logger import ILogObserver, textFileLogObserver
from twisted.python.logfile import LogFile

from master.config import load_config

TAC = Path(__file__).parent / "master.tac"
PIDFILE = "twistd.pid"
LOGFILE = "twistd.log"

# Lines the master writes to its log that the CLI waits for.
STARTED = "ci-master started: serving"
FAILED = "ci-master failed to start:"
RECONFIGURED = "ci-master reconfig done:"
RECONFIG_FAILED = "ci-master reconfig failed:"
CLEAN_STOP = "ci-master clean stop:"


def make_application(basedir: str) -> service.Application:
    """The twistd application of the master in *basedir*."""
    from master.service import MasterService

    config = load_config(basedir)
    application = service.Application("ci-master")
    logfile = LogFile(LOGFILE, basedir, rotateLength=10_000_000, maxRotatedFiles=10)
    application.setComponent(ILogObserver, textFileLogObserver(logfile))
    MasterService(basedir, config, daemon=True).setServiceParent(application)
    return application


def read_pid(basedir: Path) -> int | None:
    """The pid in the pidfile, or None when there is none."""
    try:
        return int((basedir / PIDFILE).read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        return None


def is_running(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def running_pid(basedir: Path) -> int | None:
    """The pid of the master running in *basedir*; a stale pidfile is removed and None returned."""
    pid = read_pid(basedir)
    if pid is None:
        return None
    if is_running(pid):
        return pid
    (basedir / PIDFILE).unlink(missing_ok=True)
    return None


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


def spawn_twistd(basedir: Path) -> subprocess.CompletedProcess:
    """Run twistd on master.tac in *basedir*; it returns once the daemon has forked."""
    command = [
        sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
        "--pidfile", PIDFILE, "--logfile", LOGFILE, "--python", str(TAC),
    ]
    return subprocess.run(command, cwd=basedir, capture_output=True, text=True, timeout=120)


def stop_process(pid: int, timeout: float) -> bool:
    """SIGTERM *pid* and wait for it to exit; return whether it did in time."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.1)
    return False
