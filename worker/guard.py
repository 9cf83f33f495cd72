"""The worker's guard: kills the process groups of the worker's commands when the worker dies, however it dies.

Run by :class:`worker.groups.ProcessGroups` as ``python -I guard.py`` (standard library only, no
import of the worker's packages), in a session of its own (a Ctrl-C or a ``kill`` of the
worker's process group does not reach it), with the read end of a pipe as its standard input.
The worker holds the only write end and writes ``+PGID`` when a command starts and ``-PGID``
when it ends.  When the worker exits, for whatever reason (``kill -9`` and the OOM killer
included), the kernel closes that write end: the guard reads end-of-file, sends SIGKILL to every
group still listed, and exits.  A clean stop of the worker interrupts its commands first, so
the list is empty by then.  What it kills it says on its standard error and, when given a file
(the daemon's ``twistd.log``), appended to that file.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def say(text: str, log_file: str | None) -> None:
    """One line on standard error and, if there is one, at the end of *log_file*."""
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} [ci-worker guard] {text}\n"
    sys.stderr.write(line)
    if log_file is not None:
        try:
            with open(log_file, "a") as f:  # opened now: the log may have been rotated since the start
                f.write(line)
        except OSError:
            pass


def main() -> int:
    """Read the worker's ``+PGID``/``-PGID`` lines until end-of-file; then kill what is listed."""
    log_file = sys.argv[1] if len(sys.argv) > 1 else None
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the end of the pipe ends the guard
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        line = line.strip()
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line.startswith(b"+"):
            groups.add(pgid)
        elif line.startswith(b"-"):
            groups.discard(pgid)
    for pgid in sorted(groups):
        if pgid <= 1:
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        except OSError as e:
            say(f"cannot kill process group {pgid}: {e}", log_file)
            continue
        say(f"the worker has gone; killed the process group {pgid} of its command", log_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
