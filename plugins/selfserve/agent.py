"""The self-serve agent: a service of each master that does the queued job requests.

BuildAPI queued job requests on a message broker for an agent that changed Buildbot's
database; here the queue is the plugin's job table and the agent changes nothing itself:
each job calls the core's actions (build ``stop``, build request ``cancel`` and
``set_priority``) or update methods (``add_buildset``, as the core's own rebuild does),
so a rebuild is a build request like any other, built by a real worker.

The agent wakes on every new job (its event), and polls too, for jobs queued on other
masters sharing the database.  A job is claimed by a conditional UPDATE before it runs, so
of several masters exactly one runs it; a claim older than *claim_timeout* seconds (its
master died) is taken over.  Jobs run one at a time, oldest first.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from master.sdk import DataAPI, DataError, StorageError, now
from plugins.selfserve import queries
from plugins.selfserve.resources import SelfServeJobs

log = Logger()

SOURCE = "SelfServe"
"""The source recorded with the properties self-serve sets."""


class JobFailed(Exception):
    """A job cannot be done; the message goes to its ``complete_data`` as an error."""


class SelfServeAgent(service.Service):
    """Runs queued self-serve jobs on this master (see the module's documentation)."""

    name = "selfserve-agent"

    def __init__(self, data: DataAPI, poll_interval: float = 5.0, claim_timeout: float = 600.0) -> None:
        self.data = data
        self.poll_interval = poll_interval
        self.claim_timeout = claim_timeout
        self.agent_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._poller: task.LoopingCall | None = None
        self._subscription: Any = None
        self._draining: defer.Deferred | None = None
        self._again = False
        self.actions: dict[str, Callable[[dict[str, Any], str], Awaitable[tuple[str, dict[str, Any]]]]] = {
            "reprioritize": self._reprioritize,
            "cancel_request": self._cancel_request,
            "cancel_build": self._cancel_build,
            "rebuild_build": self._rebuild_build,
            "rebuild_request": self._rebuild_request,
            "cancel_revision": self._cancel_revision,
            "new_build_at_revision": lambda what, who: self._new_build_at_revision(what, who, "build"),
            "new_pgobuild_at_revision": lambda what, who: self._new_build_at_revision(what, who, "pgo"),
            "new_nightly_at_revision": lambda what, who: self._new_build_at_revision(what, who, "nightly"),
            "new_build_for_builder": self._new_build_for_builder,
        }

    # -- life cycle -------------------------------------------------------------------------------

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Listen for new jobs and poll for others."""
        super().startService()
        self._subscription = self.data.events.subscribe(("selfservejobs", "*", "new"), lambda key, entity: self.kick())
        self._poller = task.LoopingCall(self.kick)
        self._poller.start(self.poll_interval, now=True)

    def stopService(self) -> defer.Deferred:  # noqa: N802
        """Stop taking jobs; wait for the one running."""
        super().stopService()
        if self._poller is not None and self._poller.running:
            self._poller.stop()
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None
        running, self._again = self._draining, False
        if running is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()

        def wake(result: object) -> object:
            waiter.callback(None)
            return result

        running.addBoth(wake)
        return waiter

    @property
    def accepting(self) -> bool:
        """Whether jobs queued now will be run (the agent is started)."""
        return bool(self.running)

    def kick(self) -> None:
        """Look for jobs now (or right after the current look)."""
        if not self.running:
            return
        if self._draining is not None:
            self._again = True
            return
        self._draining = defer.ensureDeferred(self._drain())
        self._draining.addErrback(lambda failure: log.failure("the self-serve agent failed", failure))
        self._draining.addBoth(self._drained)

    def _drained(self, _: Any) -> None:
        self._draining = None
        if self._again and self.running:
            self._again = False
            self.kick()

    async def _drain(self) -> None:
        while self.running:
            self._again = False
            query = {"complete": ["false"], "order": ["jobid"], "limit": ["50"]}
            try:
                pending = (await self.data.get("selfservejobs", query=query)).items
            except StorageError as e:
                log.warn("self-serve agent: cannot read the job queue: {e}", e=e)
                return
            ran = False
            for job in pending:
                if not self.running:
                    return
                stale = now() - int(self.claim_timeout)
                if await self.data.resource_type(SelfServeJobs).claim_selfserve_job(job["jobid"], self.agent_id, stale):
                    await self.run_job(job)
                    ran = True
            if not ran and not self._again:
                return

    # -- running one job --------------------------------------------------------------------------

    async def run_job(self, job: dict[str, Any]) -> None:
        """Do *job* and record the outcome; nothing it raises escapes."""
        handler = self.actions.get(job["action"])
        try:
            if handler is None:
                raise JobFailed(f"unknown action {job['action']!r}")
            msg, details = await handler(job["what"], job["who"])
            errors = False
        except (JobFailed, DataError) as e:
            msg, details, errors = str(e), {}, True
        except Exception as e:  # a fault of ours: the job says so, the log has the traceback
            log.failure("self-serve job {jobid} failed", jobid=job["jobid"])
            msg, details, errors = f"internal error: {type(e).__name__}", {}, True
        await self.data.resource_type(SelfServeJobs).complete_selfserve_job(job["jobid"], errors, msg, **details)

    async def _reprioritize(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        brid, priority = what["brid"], what["priority"]
        await self.data.control(("buildrequests", str(brid)), "set_priority", {"priority": priority})
        return f"Request {brid} now has priority {priority}", {}

    async def _cancel_request(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        brid = what["brid"]
        await self.data.control(("buildrequests", str(brid)), "cancel", {"reason": f"cancelled by {who} (self-serve)"})
        return f"Cancelled request {brid}", {}

    async def _cancel_build(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        bid = what["bid"]
        await self.data.control(("builds", str(bid)), "stop", {"reason": f"cancelled by {who} (self-serve)"})
        return f"Cancelled build {bid}", {}

    async def _resubmit(self, request: dict[str, Any], who: str, priority: int, count: int, reason: str,
                        rebuilt_buildid: int | None = None) -> list[int]:
        """Submit the buildset of *request* again for its builder, *count* times; return the new requests."""
        buildset = await self.data.get(("buildsets", str(request["buildsetid"])), query={"property": ["*"]})
        properties = {name: (value, source) for name, (value, source) in (buildset["properties"] or {}).items()}
        properties["owner"] = (who, SOURCE)
        new: list[int] = []
        for _ in range(count):
            _bsid, brids = await self.data.updates.add_buildset(
                "selfserve", [ss["ssid"] for ss in buildset["sourcestamps"]], reason, properties,
                [request["builderid"]], rebuilt_buildid=rebuilt_buildid, priority=priority,
            )
            new.extend(brids.values())
        return new

    async def _rebuild_build(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        bid = what["bid"]
        build = await self.data.get(("builds", str(bid)))
        if build is None:
            raise JobFailed(f"Build {bid} not found")
        request = await self.data.get(("buildrequests", str(build["buildrequestid"])))
        reason = f"Self-serve: rebuild of build {bid} requested by {who}"
        new = await self._resubmit(request, who, what["priority"], what["count"], reason, rebuilt_buildid=bid)
        return f"Rebuilt build {bid} as request(s) {', '.join(map(str, new))}", {"request_ids": new}

    async def _rebuild_request(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        brid = what["brid"]
        request = await self.data.get(("buildrequests", str(brid)))
        if request is None:
            raise JobFailed(f"Request {brid} not found")
        reason = f"Self-serve: rebuild of request {brid} requested by {who}"
        new = await self._resubmit(request, who, what["priority"], what["count"], reason)
        return f"Rebuilt request {brid} as request(s) {', '.join(map(str, new))}", {"request_ids": new}

    async def _cancel_revision(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        branch, revision = what["branch"], what["revision"]
        reason = f"revision {revision} cancelled by {who} (self-serve)"
        cancelled, stopped = [], []
        for request in await queries.requests_at_revision(self.data, branch, revision, complete="false",
                                                          claimed="false"):
            try:
                await self.data.control(("buildrequests", str(request["request_id"])), "cancel", {"reason": reason})
                cancelled.append(request["request_id"])
            except DataError:
                pass  # taken by a master meanwhile: its build is stopped below
        for build in await queries.builds_at_revision(self.data, branch, revision, complete="false"):
            await self.data.control(("builds", str(build["build_id"])), "stop", {"reason": reason})
            stopped.append(build["build_id"])
        msg = f"Cancelled {len(cancelled)} pending request(s) and {len(stopped)} running build(s) at {revision}"
        return msg, {"request_ids": cancelled, "build_ids": stopped}

    async def _submit_new(self, branch_name: str, revision: str, who: str, builders: list[dict[str, Any]],
                          priority: int, kind: str, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        branch = await queries.find_branch(self.data, branch_name)
        if branch is None:
            raise JobFailed(f"Branch {branch_name} not found")
        if not builders:
            raise JobFailed(f"Branch {branch_name} has no builders")
        stamp = await queries.sourcestamp_for(self.data, branch, revision)
        properties = {name: (value, SOURCE) for name, value in extra.items()}
        properties["owner"] = (who, SOURCE)
        properties["selfserve_kind"] = (kind, SOURCE)
        reason = f"Self-serve: {kind} build at {revision} requested by {who}"
        _bsid, brids = await self.data.updates.add_buildset(
            "selfserve", [stamp], reason, properties, [b["builderid"] for b in builders], priority=priority,
        )
        new = sorted(brids.values())
        return f"Requested {kind} build(s) at {revision}: request(s) {', '.join(map(str, new))}", {"request_ids": new}

    async def _new_build_at_revision(self, what: dict[str, Any], who: str, kind: str) -> tuple[str, dict[str, Any]]:
        branch = await queries.find_branch(self.data, what["branch"])
        builders = await queries.branch_builders(self.data, branch) if branch is not None else []
        return await self._submit_new(what["branch"], what["revision"], who, builders, what.get("priority", 0),
                                      kind, {})

    async def _new_build_for_builder(self, what: dict[str, Any], who: str) -> tuple[str, dict[str, Any]]:
        builder = await queries.first(self.data, "builders", name=what["builder_name"])
        if builder is None:
            raise JobFailed(f"Builder {what['builder_name']} not found")
        extra = {**what["properties"], "files": what["files"]}
        return await self._submit_new(what["branch"], what["revision"], who, [builder], what["priority"],
                                      "build", extra)
