"""What ``data.updates`` offers: the update methods of the core resource types, as one typed interface.

``DataAPI.updates`` is a namespace filled at run time with the ``@update_method``s of the
registered resource types, the core's and the plugins'.  :class:`CoreUpdates` declares the
core's, with their signatures, so that mypy checks every call the engine, the web layer and
the reporters make through ``data.updates``.  ``tests/test_updates_protocol.py`` keeps it in
step with the resource types: the same names and the same parameters (names, kinds, defaults
and annotations), or the test fails.

A plugin's update methods are on the namespace too but not in this interface: a plugin calls
them on its own resource type, typed, through ``data.resource_type(TheClass)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from master.data.resources.locks import LockRequest


class CoreUpdates(Protocol):
    """The update methods of the core resource types (``data.updates.<name>``), grouped by type."""

    # -- Masters (master.data.resources.masters)
    async def master_active(self, name: str) -> int:
        """Record that master *name* runs now; return its id ('started' is published when it was not active)."""

    async def master_heartbeat(self, masterid: int) -> None:
        """Record that master *masterid* is still running (no event: it would be noise)."""

    async def master_stopped(self, masterid: int) -> bool:
        """Record that master *masterid* has stopped; True if this call stopped it (it was active)."""

    # -- Projects (master.data.resources.projects)
    async def find_project_id(self, name: str) -> int:
        """The id of project *name*, created (with a slug made from the name) if it does not exist."""

    async def update_project_info(
        self,
        projectid: int,
        slug: str,
        description: str | None = None,
        description_format: str | None = None,
        description_html: str | None = None,
    ) -> None:
        """Set the slug and description of a project."""

    # -- Builders (master.data.resources.builders)
    async def update_builder(
        self,
        name: str,
        description: str | None = None,
        tags: Sequence[str] = (),
        projectid: int | None = None,
        description_format: str | None = None,
        description_html: str | None = None,
    ) -> int:
        """Create the builder *name* or update its description, project and tags; return its id."""

    async def set_master_builders(self, masterid: int, builderids: list[int]) -> None:
        """Record that master *masterid* now serves exactly *builderids* (other masters untouched)."""

    # -- Builds (master.data.resources.builds)
    async def add_build(
        self, builderid: int, buildrequestid: int, workerid: int | None, masterid: int | None,
        state_string: str = "created",
        properties: Callable[[int, int], dict[str, tuple[Any, str]]] | None = None,
        then_state: str | None = None,
    ) -> tuple[int, int]:
        """Start a build of *builderid* for *buildrequestid*; return ``(buildid, number)``."""

    async def set_build_state_string(self, buildid: int, state_string: str) -> None:
        """Say in words what the build is doing."""

    async def set_build_properties(self, buildid: int, properties: dict[str, tuple[Any, str]]) -> None:
        """Set properties ``{name: (value, source)}`` of a build, replacing those of the same names."""

    async def finish_build(self, buildid: int, results: int, state_string: str | None = None) -> None:
        """Mark a build complete with *results*; with *state_string*, say that first."""

    async def delete_builds_completed_before(self, when: int, batch: int = 200) -> int:
        """Delete builds that completed before *when* (epoch seconds), with their steps, logs and properties."""

    # -- Workers (master.data.resources.workers)
    async def find_worker_id(self, name: str) -> int:
        """The id of worker *name*, created (unpaused, with empty info) if it does not exist."""

    async def worker_configured(self, workerid: int, masterid: int, builderids: list[int]) -> None:
        """Record that on master *masterid* the worker serves exactly *builderids* (other masters untouched)."""

    async def worker_connected(self, workerid: int, masterid: int, workerinfo: dict[str, Any]) -> None:
        """Record that the worker connected to master *masterid*, saying *workerinfo* of itself."""

    async def worker_disconnected(self, workerid: int, masterid: int) -> None:
        """Record that the worker is no longer connected to master *masterid*."""

    async def set_worker_state(
        self, workerid: int, paused: bool, graceful: bool, pause_reason: str | None = None
    ) -> None:
        """Set whether the worker is paused (and why) and whether it shuts down gracefully."""

    # -- Schedulers (master.data.resources.schedulers)
    async def find_scheduler_id(self, name: str) -> int:
        """The id of scheduler *name*, created (enabled, on no master) if it does not exist."""

    async def set_scheduler_master(self, schedulerid: int, masterid: int | None) -> None:
        """Claim the scheduler for master *masterid*, or release it with None."""

    async def set_scheduler_enabled(self, schedulerid: int, enabled: bool) -> None:
        """Enable or disable the scheduler (Buildbot publishes ``updated`` for this)."""

    # -- ForceSchedulers (master.data.resources.forceschedulers)
    async def update_forcescheduler(
        self,
        name: str,
        label: str,
        button_name: str,
        builder_names: list[str],
        all_fields: list[dict[str, Any]],
    ) -> None:
        """Create force scheduler *name* or replace its form; *name* must be an identifier (it is a path segment)."""

    async def remove_forcescheduler(self, name: str) -> None:
        """Forget force scheduler *name* (no longer configured); ``removed`` carries its last state."""

    # -- SourceStamps (master.data.resources.sourcestamps)
    async def find_sourcestamp_id(
        self,
        branch: str | None = None,
        revision: str | None = None,
        repository: str = "",
        codebase: str = "",
        project: str = "",
    ) -> int:
        """The id of the source stamp with these fields, created if it does not exist."""

    # -- Changes (master.data.resources.changes)
    async def add_change(
        self,
        author: str,
        files: list[str],
        comments: str,
        revision: str | None = None,
        when_timestamp: int | None = None,
        branch: str | None = None,
        category: str | None = None,
        revlink: str | None = None,
        properties: dict[str, Any] | None = None,
        repository: str = "",
        codebase: str = "",
        project: str = "",
        committer: str | None = None,
    ) -> int:
        """Record a change and its source stamp; return its id."""

    # -- Buildsets (master.data.resources.buildsets)
    async def add_buildset(
        self,
        scheduler: str | None,
        sourcestamps: Sequence[int | Mapping[str, Any]],
        reason: str | None,
        properties: Mapping[str, tuple[Any, str]],
        builderids: Sequence[int],
        external_idstring: str | None = None,
        parent_buildid: int | None = None,
        parent_relationship: str | None = None,
        rebuilt_buildid: int | None = None,
        priority: int = 0,
        waited_for: bool = False,
    ) -> tuple[int, dict[int, int]]:
        """Submit a buildset with one build request per builder; return ``(bsid, {builderid: buildrequestid})``."""

    async def maybe_complete_buildset(self, bsid: int) -> bool:
        """Complete buildset *bsid* if all its requests are complete; return whether this call did."""

    # -- BuildRequests (master.data.resources.buildrequests)
    async def claim_buildrequests(
        self, brids: Iterable[int], masterid: int, pending: Mapping[int, Mapping[str, Any]] | None = None
    ) -> list[int]:
        """Claim for *masterid* those of *brids* that nobody has claimed and are not complete; return them."""

    async def unclaim_buildrequests(self, brids: Iterable[int], masterid: int) -> list[int]:
        """Give back those of *brids* that *masterid* claimed and are not complete; return them."""

    async def complete_buildrequests(self, brids: Iterable[int], results: int) -> list[int]:
        """Complete those of *brids* not yet complete with *results*; return them."""

    async def cancel_buildrequest(self, buildrequestid: int) -> bool:
        """Cancel a request nobody has claimed: complete it as cancelled; return False if it was not pending."""

    async def set_buildrequest_priority(self, buildrequestid: int, priority: int) -> bool:
        """Set the priority of a pending request; return False if it was claimed or complete."""

    # -- Steps (master.data.resources.steps)
    async def add_step(self, buildid: int, name: str) -> tuple[int, int, str]:
        """Add a pending step to build *buildid*; return ``(stepid, number, name)``."""

    async def start_step(self, stepid: int, locks_acquired: bool = False) -> None:
        """Mark a step started now (and holding its locks, if *locks_acquired*)."""

    async def set_step_locks_acquired(self, stepid: int) -> None:
        """Record that a started step got its locks now."""

    async def set_step_state_string(self, stepid: int, state_string: str) -> None:
        """Say in words what the step is doing."""

    async def add_step_url(self, stepid: int, name: str, url: str) -> None:
        """Add a link ``{name, url}`` to a step (a link it has already is not added twice)."""

    async def finish_step(
        self, stepid: int, results: int, hidden: bool = False, state_string: str | None = None
    ) -> None:
        """Mark a step complete with *results* (a step finished already is left as it is)."""

    # -- Logs (master.data.resources.logs)
    async def add_log(self, stepid: int, name: str, type: str) -> int:
        """Add an empty log *name* of *type* ('s', 't' or 'h') to a step; return its id."""

    async def append_log(self, logid: int, content: str) -> tuple[int, int]:
        """Append whole lines (each ending in a newline) to an unfinished log; return their line range."""

    async def finish_log(self, logid: int) -> None:
        """Mark a log finished: it gets no more lines (finishing it again does nothing)."""

    async def compress_log(self, logid: int) -> int:
        """Merge a log's plain chunks into chunks as big as allowed, zlib-compressed; return how many rows it saved."""

    async def delete_log_contents_before(self, when: int, batch: int = 200) -> int:
        """Remove the content of logs of builds that completed before *when*; return how many logs."""

    # -- Artifacts (master.data.resources.artifacts)
    async def add_artifact(
        self, buildid: int, stepid: int | None, name: str, size: int, sha256: str, content_type: str | None = None,
        masterid: int | None = None,
    ) -> int:
        """Record that build *buildid* has file *name* on the disk of *masterid*; return the artifact's id."""

    async def delete_artifacts_before(self, when: int, batch: int = 200) -> int:
        """Delete the artifacts (rows, and files on this master's disk) of builds that completed before *when*."""

    # -- LockClaims (master.data.resources.locks)
    async def claim_locks(
        self, owner: str, masterid: int, buildid: int | None, wanted: Sequence[LockRequest]
    ) -> str | None:
        """Take every lock of *wanted* for *owner*, or none of them; return None, or the key of a busy lock."""

    async def release_locks(self, owner: str) -> int:
        """Let go of every slot *owner* holds; return how many."""

    async def release_master_locks(self, masterid: int) -> int:
        """Let go of every slot the builds of master *masterid* hold (it stopped, or starts afresh)."""

    async def release_build_locks(self, buildid: int) -> int:
        """Let go of every slot build *buildid* and its steps hold (the build was lost)."""

    # -- TestResultSets (master.data.resources.testresults)
    async def add_test_result_set(
        self, builderid: int, buildid: int, stepid: int, description: str | None, category: str, value_unit: str
    ) -> int:
        """Create an (incomplete) test result set of step *stepid*; return its id (Buildbot's addTestResultSet)."""

    async def complete_test_result_set(
        self, test_result_setid: int, tests_passed: int | None = None, tests_failed: int | None = None
    ) -> None:
        """Mark a set complete, with its counts (Buildbot's completeTestResultSet)."""

    # -- TestResults (master.data.resources.testresults)
    async def add_test_results(self, builderid: int, test_result_setid: int, result_values: Sequence[Mapping[str, Any]]
                               ) -> int:
        """Record results (``test_name``, ``test_code_path``, ``line``, ``duration_ns``, ``value``) in a set."""
