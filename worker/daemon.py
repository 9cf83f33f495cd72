"""Running a worker as a daemon with twistd, the way the master runs: pidfile and log in its directory.

``ci-worker start DIR`` runs ``twistd`` on ``worker.tac`` inside DIR, which calls
:func:`make_application`; the log goes to ``DIR/twistd.log`` (rotated at 10 MB, ten files kept)
and the pid to ``DIR/twistd.pid``.  The CLI then reads the log until the worker says it has
connected, or that it could not and is retrying (a worker whose master is down still starts).
The pidfile and log helpers are :mod:`ci_common.twistd_process`'s, shared with the master.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ci_common import twistd_process

TAC = Path(__file__).parent / "worker.tac"

# The line the worker writes to its log once its first attempt has connected or failed; the CLI waits for it.
STARTED = "ci-worker started:"


def make_application(basedir: str) -> Any:
    """The twistd application of the worker in *basedir*: it stops the process when the master says to leave."""
    # Twisted is imported here, not above: the CLI uses this module's helpers and should start fast
    from twisted.application import service
    from twisted.internet import reactor
    from twisted.logger import ILogObserver, Logger

    from ci_common.workerconfig import load_config
    from worker.client import Worker

    config = load_config(Path(basedir))
    application = service.Application("ci-worker")
    application.setComponent(ILogObserver, twistd_process.log_observer(basedir))
    worker = Worker(Path(basedir), config, on_leave=reactor.stop)
    worker.groups.log_file = Path(basedir) / twistd_process.LOGFILE
    log = Logger()
    worker.first_outcome.addCallback(
        lambda text: log.info(f"{STARTED} {{text}} (pid {{pid}})", text=text, pid=os.getpid())
    )
    worker.setServiceParent(application)
    return application


def caller_umask() -> int:
    """The umask of this process, for the daemon to keep.

    twistd would set 077; keeping the caller's makes what builds create as readable as when the
    same commands run by hand.
    """
    umask = os.umask(0)
    os.umask(umask)
    return umask
