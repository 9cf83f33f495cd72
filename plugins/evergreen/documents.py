"""The JSON documents of Evergreen's REST v1, made from entities read through the data API.

A :class:`VersionView` is one project's part of one buildset with its tasks; every
document (version, build, task, their statuses, the versions list and task history) is a
function of views, test results and a few URLs, with keys in the order Evergreen writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from master.sdk import CANCELLED
from plugins.evergreen import mapping as m

Entity = Mapping[str, Any]


@dataclass
class VersionView:
    """One Evergreen version: *project*'s name, the ``evergreen_versions`` entity, and its tasks.

    *tasks* are the ``evergreen_tasks`` entities of the buildset whose builder belongs to the
    project, ordered by variant, then task name, then id.
    """

    project: str
    version: Entity
    tasks: list[Entity]

    @property
    def bsid(self) -> int:
        """The buildset's id, Evergreen's ``order``."""
        return self.version["bsid"]

    @property
    def id(self) -> str:
        """The version id."""
        return m.version_id(self.project, self.version["revision"], self.bsid)

    def variants(self) -> dict[str, list[Entity]]:
        """The tasks grouped by build variant, in variant order."""
        grouped: dict[str, list[Entity]] = {}
        for task in self.tasks:
            grouped.setdefault(task["variant"], []).append(task)
        return grouped

    def build_id(self, variant: str) -> str:
        """The id of the Evergreen build of *variant* in this version."""
        return m.build_id(self.project, variant, self.version["revision"], self.bsid)

    def task_id(self, task: Entity) -> str:
        """The id of *task*."""
        return m.task_id(self.build_id(task["variant"]), task["task_name"], task["taskid"])


def task_summary(view: VersionView, task: Entity) -> dict[str, Any]:
    """``{task_id, status, time_taken}``, as status maps and version lists show a task."""
    return {"task_id": view.task_id(task), "status": m.task_status(task), "time_taken": m.task_time_taken(task)}


def status_details(task: Entity) -> dict[str, Any]:
    """``{timed_out, timeout_stage}``: whether (and in which step) the task's command timed out."""
    stage = task["timeout_stage"]
    return {"timed_out": stage is not None, "timeout_stage": stage if isinstance(stage, str) else ""}


def _tasks_by_name(view: VersionView, tasks: Iterable[Entity]) -> dict[str, Any]:
    return {task["task_name"]: task_summary(view, task) for task in tasks}


def version_document(view: VersionView) -> dict[str, Any]:
    """``GET /versions/{id}`` (and ``/projects/{p}/revisions/{r}``, and the PATCH reply)."""
    version, tasks = view.version, view.tasks
    author, email = m.split_author(version["author"])
    owner, repo, kind = m.repository_parts(version["repository"])
    variants = view.variants()
    return {
        "id": view.id,
        "create_time": m.rfc3339(version["submitted_at"]),
        "start_time": m.rfc3339(m.group_start(tasks)),
        "finish_time": m.rfc3339(m.group_finish(tasks)),
        "project": view.project,
        "revision": version["revision"] or "",
        "author": author,
        "author_email": email,
        "message": version["comments"] or "",
        "status": m.group_status(tasks),
        "activated": not any(task["held"] for task in tasks),
        "builds": [view.build_id(variant) for variant in variants],
        "build_variants": [group[0]["variant_name"] for group in variants.values()],
        "order": view.bsid,
        "owner_name": owner,
        "repo_name": repo,
        "branch_name": version["branch"] or "",
        "repo_kind": kind,
        "batch_time": 0,
        "identifier": view.project,
        "remote": False,
        "remote_path": "",
        "requester": m.requester(version),
    }


def versions_list_item(view: VersionView) -> dict[str, Any]:
    """One entry of ``GET /projects/{id}/versions``."""
    author, _ = m.split_author(view.version["author"])
    return {
        "version_id": view.id,
        "author": author,
        "revision": view.version["revision"] or "",
        "message": view.version["comments"] or "",
        "builds": {
            variant: {"build_id": view.build_id(variant), "name": tasks[0]["variant_name"],
                      "tasks": _tasks_by_name(view, tasks)}
            for variant, tasks in view.variants().items()
        },
    }


def version_status(view: VersionView, group_by: str) -> dict[str, Any]:
    """``GET /versions/{id}/status``: by task name then variant (``tasks``), or the reverse (``builds``)."""
    grouped: dict[str, dict[str, Any]] = {}
    for task in view.tasks:
        outer, inner = (task["task_name"], task["variant"]) if group_by == "tasks" else (task["variant"],
                                                                                         task["task_name"])
        grouped.setdefault(outer, {})[inner] = task_summary(view, task)
    return {"version_id": view.id, group_by: grouped}


def build_document(view: VersionView, variant: str) -> dict[str, Any]:
    """``GET /builds/{id}``: the tasks of one variant of a version."""
    tasks = view.variants()[variant]
    version = view.version
    start, finish = m.group_start(tasks), m.group_finish(tasks)
    activated = not any(task["held"] for task in tasks)
    requested = m.requester(version)
    return {
        "id": view.build_id(variant),
        "create_time": m.rfc3339(version["submitted_at"]),
        "start_time": m.rfc3339(start),
        "finish_time": m.rfc3339(finish),
        "push_time": m.rfc3339(version["submitted_at"]),
        "version": view.id,
        "project": view.project,
        "revision": version["revision"] or "",
        "variant": variant,
        "number": str(view.bsid),
        "status": m.group_status(tasks),
        "activated": activated,
        "activated_time": m.rfc3339(version["submitted_at"] if activated else None),
        "order": view.bsid,
        "tasks": _tasks_by_name(view, tasks),
        "time_taken": m.nanoseconds(start, finish),
        "name": tasks[0]["variant_name"],
        # the seed's documentation says "requested", Evergreen's code writes "requester": both are given
        "requested": requested,
        "requester": requested,
    }


def build_status(view: VersionView, variant: str) -> dict[str, Any]:
    """``GET /builds/{id}/status``."""
    return {
        "build_id": view.build_id(variant),
        "build_variant": variant,
        "tasks": _tasks_by_name(view, view.variants()[variant]),
    }


def test_results_map(tests: Iterable[Entity], log_url: Callable[[int | None], str]) -> dict[str, Any]:
    """``{test name: {status, time_taken, logs: {url}}}`` of a task's test results."""
    return {
        test["name"]: {
            "status": test["status"], "time_taken": test["duration_ns"], "logs": {"url": log_url(test["logid"])},
        }
        for test in tests
    }


def _dispatch_time(task: Entity) -> int | None:
    if task["build_started_at"] is not None:
        return task["build_started_at"]
    if task["claimed"] and not task["held"]:
        return task["claimed_at"]
    return None


def task_document(view: VersionView, task: Entity, tests: dict[str, Any]) -> dict[str, Any]:
    """``GET /tasks/{id}``; *tests* is its :func:`test_results_map`."""
    version = view.version
    activated = m.task_activated(task)
    restarts = max(task["executions"] - 1, 0)
    return {
        "id": view.task_id(task),
        "create_time": m.rfc3339(task["submitted_at"]),
        "scheduled_time": m.rfc3339(task["submitted_at"] if activated else None),
        "dispatch_time": m.rfc3339(_dispatch_time(task)),
        "start_time": m.rfc3339(m.task_start(task)),
        "finish_time": m.rfc3339(m.task_finish(task)),
        "push_time": m.rfc3339(version["submitted_at"]),
        "version": view.id,
        "project": view.project,
        "revision": version["revision"] or "",
        "priority": task["priority"],
        "last_heartbeat": m.rfc3339(task["last_heartbeat"]),
        "activated": activated,
        "build_id": view.build_id(task["variant"]),
        "distro": task["workername"] or "",
        "build_variant": task["variant"],
        "depends_on": [],
        "display_name": task["task_name"],
        "host_id": task["workername"] or "",
        "restarts": restarts,
        "execution": restarts,
        "archived": False,
        "order": view.bsid,
        "requester": m.requester(version),
        "status": m.task_status(task),
        "status_details": status_details(task),
        "aborted": task["results"] == CANCELLED,
        "time_taken": m.task_time_taken(task),
        "expected_duration": task["expected_duration"],
        "test_results": tests,
        "min_queue_pos": 0,
        "files": [],
    }


def task_status_document(view: VersionView, task: Entity, tests: dict[str, Any]) -> dict[str, Any]:
    """``GET /tasks/{id}/status``."""
    return {
        "task_id": view.task_id(task),
        "task_name": task["task_name"],
        "status": m.task_status(task),
        "status_details": status_details(task),
        "tests": tests,
    }


def history_document(
    views: list[VersionView], task_name: str, failed_tests: Mapping[int, list[str]], exhausted_before: bool
) -> dict[str, Any]:
    """``GET /tasks/{name}/history``: the task *task_name* in each of *views* (newest first).

    Field names are Evergreen's Go field names (it wrote them without JSON tags).
    *failed_tests* maps task (build request) ids to the names of their failed tests.
    """
    revisions, versions, failed = [], [], {}
    for view in views:
        tasks = [task for task in view.tasks if task["task_name"] == task_name]
        entries = []
        for task in tasks:
            finished = m.task_finished(task)
            entries.append({
                "_id": view.task_id(task),
                "activated": m.task_activated(task),
                "build_variant": task["variant"],
                "status": m.task_status(task),
                # Evergreen leaves the details of a task that has not run empty
                "status_details": status_details(task) if finished else {},
                "time_taken": m.task_time_taken(task),
            })
            if failed_tests.get(task["taskid"]):
                failed[view.task_id(task)] = failed_tests[task["taskid"]]
        revisions.append({"_id": view.version["revision"] or "", "order": view.bsid, "tasks": entries})
        versions.append({
            "id": view.id,
            "create_time": m.rfc3339(view.version["submitted_at"]),
            "start_time": m.rfc3339(m.group_start(view.tasks)),
            "finish_time": m.rfc3339(m.group_finish(view.tasks)),
            "revision": view.version["revision"] or "",
            "message": view.version["comments"] or "",
            "order": view.bsid,
        })
    return {
        "Tasks": revisions,
        "Versions": versions,
        "FailedTests": failed,
        "Exhausted": {"Before": exhausted_before, "After": True},
    }
