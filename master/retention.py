"""Retention: removing old log contents and old builds, by ``ci-master cleanup`` and daily by the master."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.application import internet
from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

DAY = 86400.0
INTERVAL = DAY


async def clean_up(
    data: Any, log_days: float | None, build_days: float | None, progress: Callable[[str], None] = print
) -> tuple[int, int]:
    """Empty logs of builds older than *log_days* and delete builds older than *build_days*.

    Either may be None to keep those forever.  Returns ``(logs emptied, builds deleted)``.
    """
    emptied = deleted = 0
    now = time.time()
    if log_days is not None:
        progress(f"emptying the logs of builds that completed more than {log_days:g} day(s) ago")
        emptied = await data.updates.delete_log_contents_before(int(now - log_days * DAY))
        progress(f"  {emptied} log(s) emptied")
    if build_days is not None:
        progress(f"deleting builds that completed more than {build_days:g} day(s) ago")
        deleted = await data.updates.delete_builds_completed_before(int(now - build_days * DAY))
        progress(f"  {deleted} build(s) deleted")
    return emptied, deleted


class RetentionService(internet.TimerService):
    """Runs :func:`clean_up` when the master starts and then once a day, while a retention is set."""

    def __init__(self, data: Any, config: Any) -> None:
        super().__init__(INTERVAL, self._run)
        self.data = data
        self.config = config

    def _run(self) -> defer.Deferred | None:
        if self.config.log_retention_days is None and self.config.build_retention_days is None:
            return None
        d = defer.ensureDeferred(clean_up(
            self.data, self.config.log_retention_days, self.config.build_retention_days,
            progress=lambda line: log.info("retention: {line}", line=line.strip()),
        ))
        d.addErrback(lambda failure: log.failure("retention clean-up failed", failure))
        return d
