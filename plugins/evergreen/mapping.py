"""The one mapping from ci-master's values to Evergreen's: ids, statuses, times and durations.

Everything here is a pure function of entities read through the data API, so the web
layer and the resource types agree on every name (see the package docstring for the whole
mapping).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Mapping
from typing import Any

from master.sdk import CANCELLED, SKIPPED, SUCCESS, WARNINGS

ZERO_TIME = "0001-01-01T00:00:00Z"
"""How Evergreen writes a time not reached yet (Go's zero time.Time)."""

NANOSECONDS = 1_000_000_000

# task statuses, as Evergreen names them
UNDISPATCHED, DISPATCHED, STARTED, TASK_SUCCESS, TASK_FAILED = (
    "undispatched", "dispatched", "started", "success", "failed",
)
# build and version statuses
CREATED, GROUP_STARTED, GROUP_SUCCESS, GROUP_FAILED = "created", "started", "success", "failed"

_PASSING = {SUCCESS, WARNINGS, SKIPPED}
_GITHUB = re.compile(r"^(?:https?://|git@|ssh://git@)github\.com[/:]([^/]+)/([^/]+?)(?:\.git)?/?$")
_EMAIL = re.compile(r"^\s*(.*?)\s*<([^<>]*)>\s*$")


# -- times and durations -----------------------------------------------------------------------


def rfc3339(epoch: int | None) -> str:
    """An epoch time as RFC 3339 in UTC (``...Z``); None (not reached) is Go's zero time."""
    if epoch is None:
        return ZERO_TIME
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nanoseconds(start: int | None, end: int | None) -> int:
    """The duration from *start* to *end* (epoch seconds) in integer nanoseconds; 0 unless both are known."""
    if start is None or end is None or end < start:
        return 0
    return (end - start) * NANOSECONDS


# -- ids ---------------------------------------------------------------------------------------


def revision_part(revision: str | None) -> str:
    """The revision as it appears in ids: the revision, or ``latest`` for a source stamp without one."""
    return revision or "latest"


def version_id(project: str, revision: str | None, bsid: int) -> str:
    """``<project>_<revision>_<buildset id>``: one project's part of one buildset."""
    return f"{project}_{revision_part(revision)}_{bsid}"


def build_id(project: str, variant: str, revision: str | None, bsid: int) -> str:
    """``<project>_<variant>_<revision>_<buildset id>``: the tasks of one variant in one version."""
    return f"{project}_{variant}_{revision_part(revision)}_{bsid}"


def task_id(build: str, task_name: str, buildrequestid: int) -> str:
    """``<build id>_<task name>_<build request id>``: one build request."""
    return f"{build}_{task_name}_{buildrequestid}"


def trailing_number(identifier: str) -> int | None:
    """The number after the last ``_`` of an id (the buildset or build request id), or None."""
    _, sep, tail = identifier.rpartition("_")
    if not sep or not tail.isdigit() or len(tail) > 18:
        return None
    return int(tail)


# -- statuses ----------------------------------------------------------------------------------


def task_status(task: Mapping[str, Any]) -> str:
    """Evergreen's status of a task (an ``evergreen_tasks`` entity).

    A complete request is ``success`` when its result passes (success, warnings, skipped),
    ``undispatched`` when it was cancelled before any build ran, else ``failed``.  A pending
    one is ``undispatched`` until a master claims it for a build (a deactivated task is held,
    so stays undispatched), ``dispatched`` until its build's first step starts, then ``started``.
    """
    if task["complete"]:
        if task["results"] in _PASSING:
            return TASK_SUCCESS
        if task["results"] == CANCELLED and task["buildid"] is None:
            return UNDISPATCHED
        return TASK_FAILED
    if task["held"] or not task["claimed"]:
        return UNDISPATCHED
    if task["build_complete_at"] is not None or task["started_at"] is None:
        # no build yet, or the last one ended (a retry is being set up): not running a step
        return DISPATCHED
    return STARTED


def task_finished(task: Mapping[str, Any]) -> bool:
    """Whether a task will not change any more."""
    return bool(task["complete"])


def task_start(task: Mapping[str, Any]) -> int | None:
    """When the task's work started: its build's first step, else the build itself (if it ran)."""
    if task["buildid"] is None:
        return None
    return task["started_at"] if task["started_at"] is not None else task["build_started_at"]


def task_finish(task: Mapping[str, Any]) -> int | None:
    """When the task finished: its build's end, else (cancelled before a build) the request's."""
    if not task["complete"]:
        return None
    return task["build_complete_at"] if task["build_complete_at"] is not None else task["complete_at"]


def task_time_taken(task: Mapping[str, Any]) -> int:
    """Nanoseconds from start to finish of a finished task; 0 while it runs or if it never ran."""
    return nanoseconds(task_start(task), task_finish(task))


def task_activated(task: Mapping[str, Any]) -> bool:
    """False while the task is held by a deactivation, or once it was cancelled without running."""
    if task["held"]:
        return False
    return not (task["complete"] and task["results"] == CANCELLED and task["buildid"] is None)


def group_status(tasks: Iterable[Mapping[str, Any]]) -> str:
    """The status of a build or version from its tasks: created, started, success or failed."""
    statuses = [task_status(task) for task in tasks]
    finished = [task_finished(task) for task in tasks]
    if statuses and all(finished):
        return GROUP_FAILED if TASK_FAILED in statuses else GROUP_SUCCESS
    if any(status != UNDISPATCHED for status in statuses):
        return GROUP_STARTED
    return CREATED


def group_start(tasks: Iterable[Mapping[str, Any]]) -> int | None:
    """The earliest start of the tasks, or None."""
    return min((t for t in (task_start(task) for task in tasks) if t is not None), default=None)


def group_finish(tasks: list[Mapping[str, Any]]) -> int | None:
    """The latest finish once every task finished, else None."""
    if not tasks or not all(task_finished(task) for task in tasks):
        return None
    return max((t for t in (task_finish(task) for task in tasks) if t is not None), default=None)


# -- versions ----------------------------------------------------------------------------------


def split_author(author: str | None) -> tuple[str, str]:
    """``("Name", "email")`` from a change author such as ``Name <email>``."""
    if not author:
        return "", ""
    found = _EMAIL.match(author)
    if found:
        return found.group(1), found.group(2)
    return author.strip(), ""


def repository_parts(repository: str | None) -> tuple[str, str, str]:
    """``(owner, repo, kind)`` of a repository URL: GitHub URLs give their owner and name."""
    found = _GITHUB.match(repository or "")
    if found:
        return found.group(1), found.group(2), "github"
    name = (repository or "").rstrip("/").rsplit("/", 1)[-1]
    return "", name.removesuffix(".git"), "git"


def requester(version: Mapping[str, Any]) -> str:
    """Why the version exists, in Evergreen's words.

    A buildset triggered by another build is a ``trigger_request``; one of a source stamp
    some change describes (a commit a change source reported) is a ``gitter_request``, as
    Evergreen calls commits its repotracker found; anything else (forced, periodic) is ``ad_hoc``.
    """
    if version["triggered"]:
        return "trigger_request"
    if version["changeid"] is not None:
        return "gitter_request"
    return "ad_hoc"
