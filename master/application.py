"""The twistd application of a master: what ``master.tac`` builds in the master directory.

Kept apart from :mod:`master.daemon` (the log lines and the ``.tac`` path the CLI needs) so
that the CLI does not load the service tree, and the service, which writes those lines,
does not import what imports it.
"""

from __future__ import annotations

import os

from twisted.application import service
from twisted.logger import ILogObserver
from twisted.python.components import Componentized

from ci_common import twistd_process
from master.config import load_config
from master.service import MasterService


def make_application(basedir: str) -> Componentized:
    """The twistd application of the master in *basedir*."""
    os.umask(0o077)  # twistd sets it too, but only once it has forked: files made before are private as well
    config = load_config(basedir)
    application = service.Application("ci-master")
    application.setComponent(ILogObserver, twistd_process.log_observer(basedir))
    MasterService(basedir, config, daemon=True).setServiceParent(application)
    return application
