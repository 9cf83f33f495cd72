"""Running a master as a daemon with twistd: the lines its log says how it went by.

``ci-master start DIR`` runs ``twistd`` on ``master.tac`` inside DIR, which calls
:func:`master.application.make_application`; the log goes to ``DIR/twistd.log`` (rotated at 10 MB, ten files
kept) and the pid to ``DIR/twistd.pid``.  The CLI then reads the log until the master says
it is serving, or why it could not start.
"""

from __future__ import annotations

from pathlib import Path

TAC = Path(__file__).parent / "master.tac"

# Lines the master writes to its log that the CLI waits for.
STARTED = "ci-master started: serving"
FAILED = "ci-master failed to start:"
RECONFIGURED = "ci-master reconfig done:"
RECONFIG_FAILED = "ci-master reconfig failed:"
CLEAN_STOP = "ci-master clean stop:"
