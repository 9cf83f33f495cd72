"""Retention: removing old log contents and old builds, by ``ci-master cleanup`` and daily by the master."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.application import internet
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

if TYPE_CHECKING:
    from master.data.connector import DataAPI

log = Logger()

DAY = 86400.0
INTERVAL = DAY


async def clean_up(
    data: DataAPI, log_days: float | None, build_days: float | None, progress: Callable[[str], None] = print,
    artifact_days: float | None = None,
) -> tuple[int, int]:
    """Empty old logs, delete old builds and old artifacts (by the days given: *log_days*, *build_days*...).

    Any may be None to keep those forever.  Artifacts (rows and files) of builds about to be
    deleted go too, so that no file outlives its build.  Returns ``(logs emptied, builds deleted)``.
    """
    emptied = deleted = 0
    now = time.time()
    kept = [days for days in (artifact_days, build_days) if days is not None]
    if kept:
        days = min(kept)
        progress(f"deleting the artifacts of builds that completed more than {days:g} day(s) ago")
        removed = await data.updates.delete_artifacts_before(int(now - days * DAY))
        progress(f"  {removed} artifact(s) deleted")
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
    """Runs :func:`clean_up` when the master starts and then once a day, while a retention is set.

    The day is counted on *clock* (the global reactor by default); what is old is wall-clock time.
    """

    def __init__(self, data: DataAPI, config: Any, clock: IReactorTime | None = None) -> None:
        super().__init__(INTERVAL, self._run)
        self.clock = clock  # TimerService's: None is the global reactor
        self.data = data
        self.config = config

    def _run(self) -> defer.Deferred | None:
        config = self.config
        artifact_days = getattr(config, "artifact_retention_days", None)
        if config.log_retention_days is None and config.build_retention_days is None and artifact_days is None:
            return None
        d = defer.ensureDeferred(clean_up(
            self.data, config.log_retention_days, config.build_retention_days,
            progress=lambda line: log.info("retention: {line}", line=line.strip()), artifact_days=artifact_days,
        ))
        d.addErrback(lambda failure: log.failure("retention clean-up failed", failure))
        return d
