"""Starting a command as the leader of a new session, in its working directory, with no helper process.

Twisted's ``spawnProcess`` can neither put the child in a session of its own nor start it in
another directory without falling back to ``fork``.  :class:`SessionProcess` keeps all of
Twisted's machinery for the pipes (readers and writers with flow control) and for the exit (the
SIGCHLD-driven reap, ``processEnded`` once every pipe is closed) and replaces only the start:
glibc's ``posix_spawn`` with ``setsid``, which

* makes the child a session (hence process group) leader before it runs anything, so a
  ``killpg`` on its pid reaches everything it will start, with no window where it is not;
* reports a failed ``exec`` to the caller as an ``OSError`` with the exact errno (ENOENT,
  EACCES, ENOEXEC...), since the parent waits for the child to exec or fail;
* never retries a file that is not an executable with ``/bin/sh`` (``posix_spawnp`` may).

The program is looked up on the command's own ``PATH`` as ``execvp`` does (a name with a slash
is used as it is; otherwise each directory in turn, the first error other than "not found"
winning).  The child starts in the working directory because the worker changes to it for the
duration of the (synchronous) ``posix_spawn`` call on the reactor thread and changes back at
once; nothing in the worker uses relative paths from another thread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import process
from twisted.internet.protocol import ProcessProtocol

_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)


def _ignored_signals() -> list[int]:
    """Signals this process ignores (Python ignores SIGPIPE and SIGXFSZ): ignored signals survive exec."""
    return [signum for signum in range(1, signal.NSIG) if signal.getsignal(signum) == signal.SIG_IGN]


def _file_actions(fdmap: Mapping[int, int]) -> list[tuple[int, ...]]:
    """The dup2s giving the child its pipes, and closes of every other inheritable descriptor."""
    states: list[tuple[int, bool]] = []
    for fd in process._listOpenFDs():
        try:
            states.append((fd, bool(fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC) & fcntl.FD_CLOEXEC)))
        except OSError:
            pass  # the descriptor of the directory listing itself, closed by now
    return process._getFileActions(states, dict(fdmap), doClose=os.POSIX_SPAWN_CLOSE, doDup2=os.POSIX_SPAWN_DUP2)


def spawn_in_session(
    argv: Sequence[str], env: Mapping[str, str], workdir: str, fdmap: Mapping[int, int]
) -> int:
    """Start *argv* in *workdir* as a new session's leader, its descriptors as *fdmap* says; return its pid.

    Raises ``OSError`` (with the errno of the failed ``exec`` or ``chdir``) when it cannot start.
    """
    name = argv[0]
    file_actions = _file_actions(fdmap)
    reset = _ignored_signals()
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(workdir)
        candidates = [name] if "/" in name else [os.path.join(d, name) for d in os.get_exec_path(dict(env))]
        first_error: OSError | None = None
        last_error: OSError | None = None
        for candidate in candidates:
            try:
                return os.posix_spawn(
                    candidate, list(argv), env, file_actions=file_actions, setsid=True, setsigdef=reset
                )
            except OSError as e:
                if e.errno in _NOT_FOUND:
                    last_error = e
                elif first_error is None:
                    first_error = e
        raise first_error or last_error or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)
    finally:
        os.fchdir(here)
        os.close(here)


class SessionProcess(process.Process):
    """A ``twisted.internet.process.Process`` started by :func:`spawn_in_session`.

    Pipes, flow control, signals and the exit are Twisted's; ``OSError`` from the constructor
    means the command did not start (its pipes are closed again).
    """

    def __init__(
        self, reactor: Any, proto: ProcessProtocol, argv: Sequence[str], env: Mapping[str, str], workdir: str,
        child_fds: Mapping[int, Any],
    ) -> None:
        self._workdir = workdir
        super().__init__(reactor, argv[0], list(argv), dict(env), None, proto, childFDs=dict(child_fds))

    def _fork(self, path: Any, uid: Any, gid: Any, executable: str, args: list[str], environment: dict[str, str],
              **kwargs: Any) -> None:
        """Start the child (Twisted's name: there is no fork here)."""
        self.pid = spawn_in_session(args, environment, self._workdir, kwargs["fdmap"])
        self.status = -1
