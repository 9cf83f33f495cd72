"""Source steps: check out the code a build is for on the worker (``Git``).

The step runs ``git`` on the worker as ordinary commands (the same protocol as ``ShellCommand``),
all in one ``stdio`` log: each command is announced by a header line, followed by its output (git's
errors included) and how it ended.  It checks out the revision of the build's source stamp (the
change's, or the one a force gave), else the head of the branch, and sets the ``got_revision``
property to the full sha it checked out (for a named codebase, ``got_revision`` is a dict
``{codebase: sha}``, as in Buildbot).

Modes and methods, as Buildbot users know them:

* ``mode="incremental"``: keep the working tree, fetch, check out (untracked and ignored files stay).
* ``mode="full", method="fresh"`` (the default method): also ``git clean -ffdx`` (a pristine tree,
  objects kept); ``method="clean"``: ``git clean -ffd`` (ignored files, such as build output, stay);
  ``method="clobber"``: delete the directory and fetch anew; ``method="copy"``: keep an incremental
  repository in ``source/`` beside the work directory and copy it to a new work directory each build.

The fetch asks for the revision itself when it is a full sha (so that a fork's pull request head is
fetched from the fork, which has no ``refs/pull/N/head``), else, or if the remote refuses, the branch.
A fetch that fails is retried as ``retry=(delay_seconds, count)`` says; after the last attempt the
step fails, git's error being in its log.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from master.engine.interfaces import Command, WorkerLost
from master.engine.properties import Renderable
from master.engine.steps import RunsCommands, StepLog
from master.results import CANCELLED, EXCEPTION, FAILURE, SUCCESS

MODES = ("incremental", "full")
METHODS = ("clobber", "fresh", "clean", "copy")
COPY_SOURCE_DIR = "source"
"""Where ``method="copy"`` keeps its repository, beside the work directory in the builder's directory."""

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# never wait for a password on a worker: a private repository without credentials fails at once
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0"}


class _Stop(Exception):
    """A command of the step was interrupted: the step ends CANCELLED."""


def check_options(mode: Any, method: Any, shallow: Any, retry: Any, workdir: Any) -> str | None:
    """Validate the Git step's options; return the method to use.  Renderables pass unchecked.

    Raises ValueError naming the option at fault.
    """
    if isinstance(mode, Renderable) or isinstance(method, Renderable):
        return method
    if mode not in MODES:
        raise ValueError(f"Git: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "incremental":
        if method is not None:
            raise ValueError(f"Git: method={method!r} applies only to mode='full'")
    else:
        method = method or "fresh"
        if method not in METHODS:
            raise ValueError(f"Git: method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(shallow, Renderable) and (
        isinstance(shallow, float) or not isinstance(shallow, bool | int) or (
            not isinstance(shallow, bool) and shallow < 1)
    ):
        raise ValueError(f"Git: shallow must be False, True or a depth of at least 1, got {shallow!r}")
    if retry is not None and not isinstance(retry, Renderable):
        if (not isinstance(retry, Sequence) or isinstance(retry, str) or len(retry) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 for x in retry)
                or int(retry[1]) != retry[1]):
            raise ValueError(f"Git: retry must be (delay_seconds, count) with non-negative numbers, got {retry!r}")
    if not isinstance(workdir, Renderable):
        check_workdir(workdir)
    return method


def check_workdir(workdir: Any) -> str:
    """*workdir* if it is a plain relative directory inside the builder's directory; else ValueError.

    The clobber and copy methods delete it, so ``..``, an absolute path or the builder's directory
    itself are refused.
    """
    if not isinstance(workdir, str) or not workdir:
        raise ValueError(f"Git: workdir must be a non-empty relative path, got {workdir!r}")
    normal = posixpath.normpath(workdir)
    if workdir.startswith("/") or normal in (".", "..") or normal.startswith("../"):
        raise ValueError(f"Git: workdir {workdir!r} must stay inside the builder's directory")
    return normal


class Git(RunsCommands):
    """Check out the build's revision of a Git repository on the worker (see the module's documentation).

    *repourl* and *branch* default to the source stamp's repository and branch (the source stamp's
    branch wins over *branch*, which is for builds without one); *alwaysUseLatest* ignores the
    source stamp's revision and builds the branch head.  *shallow* is True (depth 1) or a depth;
    *submodules* updates submodules recursively; *env* adds variables to git's environment;
    *codebase* picks the source stamp of that codebase.  Every argument may be a renderable.
    """

    default_name = "git"

    def __init__(
        self,
        repourl: str | Any = None,
        branch: str | Any = None,
        mode: str | Any = "incremental",
        method: str | Any = None,
        shallow: bool | int | Any = False,
        submodules: bool | Any = False,
        retry: tuple[float, int] | Any = None,
        alwaysUseLatest: bool | Any = False,  # noqa: N803 (Buildbot's name)
        workdir: str | Any = "build",
        codebase: str | Any = "",
        env: Mapping[str, Any] | None = None,
        timeout: float | Any = 1200.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("description", "updating")
        kwargs.setdefault("descriptionDone", "update")
        super().__init__(**kwargs)
        self.method = check_options(mode, method, shallow, retry, workdir)
        self.repourl = repourl
        self.branch = branch
        self.mode = mode
        self.shallow = shallow
        self.submodules = submodules
        self.retry = retry
        self.alwaysUseLatest = alwaysUseLatest
        self.workdir = workdir
        self.codebase = codebase
        self.env = dict(env or {})
        self.timeout = timeout
        self._stdio: StepLog | None = None  # opened by run()
        self._env: dict[str, str | None] = {}
        self._codebase = ""
        self._timeout: float | None = None
        self._sleeping: defer.Deferred | None = None

    def interrupt(self, reason: str) -> None:
        """Interrupt the running git command, or the pause between two fetch attempts."""
        super().interrupt(reason)
        if self._sleeping is not None:
            self._sleeping.cancel()

    # -- running commands -------------------------------------------------------------------

    async def _run(self, argv: list[str], workdir: str, collect: bool = False) -> tuple[int, str]:
        """Run *argv* in *workdir* (relative to the builder's directory); return (rc, stdout if *collect*).

        A command killed by a signal or timeout counts as rc -1; an interrupt raises _Stop.
        """
        stdio = self._log
        stdio.add_header(f"{shlex.join(argv)}\n in dir {workdir} (timeout {self._timeout} secs)")
        out: list[str] = []
        command = Command(argv=argv, env=self._env, builder=self.build.builder.name, workdir=workdir,
                          timeout=self._timeout)
        result = await self.run_command(command, stdio, (lambda s, t: out.append(t) if s == "o" else None)
                                        if collect else None)
        if result is None or (result.interrupted and not result.timed_out) or self.interrupted is not None:
            stdio.add_header(f"not run: {self.interrupted}" if result is None else "interrupted")
            raise _Stop()
        if result.rc is None:
            stdio.add_header(f"program killed by {result.signal}" + (" (timed out)" if result.timed_out else ""))
            return -1, "".join(out)
        stdio.add_header(f"program finished with exit code {result.rc}")
        return result.rc, "".join(out)

    async def _git(self, *args: str, workdir: str, collect: bool = False) -> tuple[int, str]:
        return await self._run(["git", *args], workdir, collect)

    # -- the step ---------------------------------------------------------------------------

    def _sourcestamp(self) -> Mapping[str, Any]:
        stamps = self.build.sourcestamps
        for stamp in stamps:
            if (stamp.get("codebase") or "") == self._codebase:
                return stamp
        return {}

    @property
    def _log(self) -> StepLog:
        """The stdio log, which run() opens before any command."""
        if self._stdio is None:
            raise RuntimeError("the step's log is not open: run() opens it")
        return self._stdio

    async def run(self) -> int:
        """Fetch and check out; set ``got_revision``."""
        await self.set_state(self.describe(False))
        self._stdio = stdio = await self.add_log("stdio")
        try:
            options = self._options()
        except ValueError as e:
            stdio.add_header(f"bad configuration: {e}")
            await stdio.finish()
            return EXCEPTION
        try:
            results = await self._update(**options)
        except _Stop:
            results = CANCELLED
        except WorkerLost:
            stdio.add_header("worker lost while the command ran")
            await stdio.finish()
            raise
        await stdio.finish()
        return results

    def _options(self) -> dict[str, Any]:
        """Every argument rendered and checked, the source stamp's values applied."""
        mode, method = self.render(self.mode), self.render(self.method)
        shallow, retry, workdir = self.render(self.shallow), self.render(self.retry), self.render(self.workdir)
        method = check_options(mode, method, shallow, retry, workdir)
        self._codebase = str(self.render(self.codebase) or "")
        timeout = self.render(self.timeout)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise ValueError(f"Git: timeout must be a positive number of seconds or None, got {timeout!r}")
        self._timeout = timeout
        stamp = self._sourcestamp()
        repourl = self.render(self.repourl) or stamp.get("repository")
        if not repourl:
            raise ValueError("Git: no repourl given and the build's source stamp names no repository")
        branch = stamp.get("branch") or self.render(self.branch) or "HEAD"
        revision = None if self.render(self.alwaysUseLatest) else stamp.get("revision")
        self._env = {**_GIT_ENV, **{str(k): (None if v is None else str(v)) for k, v in self.render(self.env).items()}}
        depth = 0 if not shallow else (1 if shallow is True else int(shallow))
        return {
            "repourl": str(repourl), "branch": str(branch), "revision": revision and str(revision),
            "mode": mode, "method": method, "depth": depth, "retry": retry,
            "submodules": bool(self.render(self.submodules)), "workdir": check_workdir(workdir),
        }

    async def _update(self, repourl: str, branch: str, revision: str | None, mode: str, method: str | None,
                      depth: int, retry: tuple[float, int] | None, submodules: bool, workdir: str) -> int:
        stdio = self._log
        stdio.add_header(f"repository {repourl}, branch {branch}, revision {revision or '(branch head)'}; "
                         f"mode {mode}" + (f", method {method}" if method else ""))
        if method == "clobber":
            await self._run(["rm", "-rf", workdir], ".")
        repo = COPY_SOURCE_DIR if method == "copy" else workdir
        exists = method != "clobber" and (
            await self._git("rev-parse", "--resolve-git-dir", ".git", workdir=repo))[0] == 0
        if not exists:
            if (await self._git("-c", "init.defaultBranch=ci", "init", "--quiet", workdir=repo))[0] != 0:
                return FAILURE
        if (await self._git("config", "remote.origin.url", repourl, workdir=repo))[0] != 0:
            return FAILURE
        if exists and method in ("fresh", "clean"):
            clean = ["clean", "-f", "-f", "-d", *(["-x"] if method == "fresh" else [])]
            if (await self._git(*clean, workdir=repo))[0] != 0:
                return FAILURE
            if submodules and (await self._git("submodule", "foreach", "--recursive", "git " + " ".join(clean),
                                               workdir=repo))[0] != 0:
                return FAILURE
        if not await self._fetch_with_retries(repourl, branch, revision, depth, retry, repo):
            return FAILURE
        target = revision or "FETCH_HEAD"
        if (await self._git("-c", "advice.detachedHead=false", "checkout", "-f", target, workdir=repo))[0] != 0:
            stdio.add_header(f"could not check out {target}")
            return FAILURE
        if submodules:
            if (await self._git("submodule", "sync", "--recursive", workdir=repo))[0] != 0:
                return FAILURE
            if (await self._git("submodule", "update", "--init", "--recursive", "--force", workdir=repo))[0] != 0:
                return FAILURE
        if method == "copy":
            await self._run(["rm", "-rf", workdir], ".")
            if (await self._run(["cp", "-a", COPY_SOURCE_DIR, workdir], "."))[0] != 0:
                return FAILURE
        rc, out = await self._git("rev-parse", "HEAD", workdir=workdir, collect=True)
        sha = out.strip()
        if rc != 0 or not _FULL_SHA.match(sha):
            stdio.add_header("could not read the revision checked out")
            return FAILURE
        await self._set_got_revision(sha)
        stdio.add_header(f"got_revision: {sha}")
        return SUCCESS

    async def _set_got_revision(self, sha: str) -> None:
        if not self._codebase:
            await self.build.set_property("got_revision", sha, "Git")
            return
        known = self.build.props.get("got_revision")
        value = dict(known) if isinstance(known, dict) else {}
        value[self._codebase] = sha
        await self.build.set_property("got_revision", value, "Git")

    async def _fetch_with_retries(self, repourl: str, branch: str, revision: str | None, depth: int,
                                  retry: tuple[float, int] | None, repo: str) -> bool:
        delay, count = retry if retry else (0, 0)
        attempts = 1 + int(count)
        for attempt in range(1, attempts + 1):
            if await self._fetch(repourl, branch, revision, depth, repo):
                return True
            if attempt < attempts:
                self._log.add_header(f"fetch failed (attempt {attempt} of {attempts}); retrying in {delay} s")
                self._sleeping = deferLater(reactor, float(delay), lambda: None)
                try:
                    await self._sleeping
                except defer.CancelledError:
                    pass
                finally:
                    self._sleeping = None
                if self.interrupted is not None:
                    self._log.add_header(f"not retried: {self.interrupted}")
                    raise _Stop()
        self._log.add_header(f"fetch of {repourl} failed after {attempts} attempt(s)")
        return False

    async def _fetch(self, repourl: str, branch: str, revision: str | None, depth: int, repo: str) -> bool:
        """One fetch attempt: the revision itself when it is a full sha, else (or on refusal) the branch."""
        options = ["--depth", str(depth)] if depth else ["--tags"]
        if revision and _FULL_SHA.match(revision):
            if (await self._git("fetch", "-f", *options, repourl, revision, workdir=repo))[0] == 0:
                return True
        return (await self._git("fetch", "-f", *options, repourl, branch, workdir=repo))[0] == 0
