"""Reporters: a build's start and end told to a forge, a URL or a mailbox (``reporters=[...]`` in master.cfg).

``GitHubStatusPush``, ``GitLabStatusPush``, ``HttpStatusPush`` and ``MailNotifier`` are built on
:class:`master.reporters.base.Reporter`; :class:`master.reporters.service.Reporters` runs them
off the data API's events and keeps their reports in the database until delivered.
"""

from master.reporters.base import Reporter
from master.reporters.forges import GitHubStatusPush, GitLabStatusPush
from master.reporters.httppush import HttpStatusPush
from master.reporters.mail import MailNotifier

__all__ = ["GitHubStatusPush", "GitLabStatusPush", "HttpStatusPush", "MailNotifier", "Reporter"]


def check_reporters(reporters: list) -> None:
    """Validate ``reporters``; raise ValueError naming the reporter at fault and why."""
    names: set[str] = set()
    for index, reporter in enumerate(reporters):
        if not isinstance(reporter, Reporter):
            raise ValueError(f"reporters[{index}]: expected a reporter such as GitHubStatusPush(...), got {reporter!r}")
        where = f"reporters[{index}] ({type(reporter).__name__} {getattr(reporter, 'name', '?')!r})"
        try:
            reporter.check()
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        if reporter.name in names:
            raise ValueError(f"{where}: another reporter has this name: give each one its own name=")
        names.add(reporter.name)
