"""The process groups of the worker's commands: killed when the worker dies, and when a worker starts after one died.

Each command is the leader of a process group of its own (:mod:`worker.spawn`), so a group is
everything a command started.  A worker killed with ``kill -9`` must not leave a step running:
the master gives the build to another worker, and a step run twice at once does its side effects
twice.  Two mechanisms, because neither covers everything alone:

* **The guard** (:mod:`worker.guard`), one small process per worker, told of each group over a
  pipe; the kernel closes the pipe when the worker dies, and the guard kills the groups listed.
  This is what ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` would give, made robust: ``posix_spawn``
  cannot set PDEATHSIG (it is set by the child, between fork and exec), an exec wrapper setting
  it would cost a program start per command (what spawning with ``posix_spawn`` avoids), and
  PDEATHSIG only reaches the command's own process, not its children (``make``'s compilers, a
  shell's pipeline) since it is cleared on fork, and it fires when the *thread* that spawned
  exits.  A subreaper only adopts orphans; it kills nothing when it dies.  The guard kills whole
  groups, on any POSIX system, whatever ends the worker.
* **The record** ``process-groups`` in the worker directory: one line per running group, its
  id and its leader's start time.  A worker that starts kills the groups a previous instance
  left (the guard too may have been killed, e.g. ``kill -9`` of the whole process group, a
  reboot of a container's init), after checking that the id is still that group: a group
  whose leader is alive with another start time is some other program's (pid reuse), and is
  left alone.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from twisted.logger import Logger

log = Logger()

RECORD = "process-groups"
GUARD = Path(__file__).with_name("guard.py")


def start_time(pid: int) -> int | None:
    """The start time of process *pid* in clock ticks since boot (Linux ``/proc``); None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


def kill_left_groups(basedir: Path) -> list[int]:
    """Kill (SIGKILL) the groups recorded in *basedir* by a previous instance that are still ours; return them.

    The record is emptied.  A recorded group is killed when its leader is alive with the start
    time recorded, or when its leader has exited but the group lives on (an id in use as a group
    id is not given to a new process, so the group is still the one recorded).  Without
    ``/proc`` (not Linux) only the second case can be told apart safely.
    """
    path = basedir / RECORD
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    killed = []
    for line in lines:
        try:
            pgid_text, started_text = line.split()
            pgid, started = int(pgid_text), int(started_text)
        except ValueError:
            continue
        if pgid <= 1 or pgid == os.getpgrp() or not _is_ours(pgid, started):
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except OSError as e:
            log.warn("cannot kill process group {pgid} a previous worker left: {e}", pgid=pgid, e=e)
            continue
        killed.append(pgid)
        log.warn("killed process group {pgid}, left running by a previous instance of this worker", pgid=pgid)
    path.unlink(missing_ok=True)
    return killed


def _is_ours(pgid: int, started: int) -> bool:
    """Whether group *pgid* is still the one recorded with its leader's start time *started*."""
    if Path("/proc/self/stat").exists():
        leader_started = start_time(pgid)
        if leader_started is not None and leader_started != started:
            return False  # the id was reused: another program's process leads it
    else:
        try:
            os.kill(pgid, 0)
            return False  # a leader is running, and without /proc it cannot be told from a new one
        except ProcessLookupError:
            pass
        except PermissionError:
            return False
    # the leader is ours or has exited; an id still in use as a group id is not given to a new
    # process, so a group by that id is the one recorded
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessGroups:
    """The running commands' groups of one worker: recorded in its directory and told to its guard."""

    def __init__(self, basedir: Path) -> None:
        self.basedir = basedir
        self.log_file: Path | None = None  # where the guard also says what it killed (the daemon's log)
        self._groups: dict[int, int] = {}  # pgid -> its leader's start time (0 if unknown)
        self._guard_pid: int | None = None
        self._pipe: int | None = None

    def start(self) -> None:
        """Kill what a previous instance left, then start the guard."""
        kill_left_groups(self.basedir)
        self._start_guard()

    def _start_guard(self) -> None:
        read_end, write_end = os.pipe()  # both close-on-exec: commands never hold the write end
        try:
            self._guard_pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", str(GUARD), *([str(self.log_file)] if self.log_file is not None else [])],
                dict(os.environ),
                file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)], setsid=True,
            )
        except OSError as e:
            os.close(write_end)
            log.error("cannot start the worker's guard ({e}): a command outlives a worker killed with -9"
                      " until the worker starts again", e=e)
            return
        finally:
            os.close(read_end)
        self._pipe = write_end
        for pgid in self._groups:
            self._tell(f"+{pgid}")

    def stop(self) -> None:
        """Close the guard's pipe: it kills what is still listed (nothing, once commands have ended) and exits."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._guard_pid is not None:
            pid, self._guard_pid = self._guard_pid, None
            from twisted.internet import reactor

            # reap it when it has exited (within moments: it only reads its pipe to the end)
            reactor.callLater(1.0, _reap, pid, 20)

    def add(self, pgid: int) -> None:
        """A command started as the leader of group *pgid*."""
        self._groups[pgid] = start_time(pgid) or 0
        self._tell(f"+{pgid}")
        self._write()

    def discard(self, pgid: int) -> None:
        """The command leading group *pgid* has ended."""
        if self._groups.pop(pgid, None) is not None:
            self._tell(f"-{pgid}")
            self._write()

    def _tell(self, line: str) -> None:
        if self._pipe is None:
            return
        try:
            os.write(self._pipe, f"{line}\n".encode())
        except OSError as e:  # the guard has gone (killed): start another, which is told every group
            log.warn("the worker's guard has gone ({e}); starting another", e=e)
            os.close(self._pipe)
            self._pipe = None
            self._start_guard()

    def _write(self) -> None:
        path = self.basedir / RECORD
        if not self._groups:
            path.unlink(missing_ok=True)
            return
        temporary = path.with_name(RECORD + ".new")
        temporary.write_text("".join(f"{pgid} {started}\n" for pgid, started in self._groups.items()))
        os.replace(temporary, path)


def _reap(pid: int, tries: int) -> None:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return  # reaped already (Twisted's SIGCHLD handling reaps only its own processes)
    if done == 0 and tries > 0:
        from twisted.internet import reactor

        reactor.callLater(1.0, _reap, pid, tries - 1)
