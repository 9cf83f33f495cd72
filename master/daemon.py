"""Running a master as a daemon with twistd: its application and the lines its log says how it went by.

``ci-master start DIR`` runs ``twistd`` on ``master.tac`` inside DIR, which calls
:func:`make_application`; the log goes to ``DIR/twistd.log`` (rotated at 10 MB, ten files
kept) and the pid to ``DIR/twistd.pid``.  The CLI then reads the log until the master says
it is serving, or why it could not start.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.application import service
from twisted.logger import ILogObserver

from master import twistd_process
from master.config import load_config

TAC = Path(__file__).parent / "master.tac"

# Lines the master writes to its log that the CLI waits for.
STARTED = "ci-master started: serving"
FAILED = "ci-master failed to start:"
RECONFIGURED = "ci-master reconfig done:"
RECONFIG_FAILED = "ci-master reconfig failed:"
CLEAN_STOP = "ci-master clean stop:"


def make_application(basedir: str) -> service.Application:
    """The twistd application of the master in *basedir*."""
    from master.service import MasterService

    os.umask(0o077)  # twistd sets it too, but only once it has forked: files made before are private as well
    config = load_config(basedir)
    application = service.Application("ci-master")
    application.setComponent(ILogObserver, twistd_process.log_observer(basedir))
    MasterService(basedir, config, daemon=True).setServiceParent(application)
    return application

