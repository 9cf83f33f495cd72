"""The commit status reporters: GitHubStatusPush and GitLabStatusPush.

Both report on the build's ``got_revision`` (set by a source step), else its source stamp's
revision, in the repository named by the source stamp's URL: ``https://host/owner/repo(.git)``,
``ssh://git@host/owner/repo.git``, ``git@host:owner/repo.git`` and ``git://host/owner/repo.git``
are understood (GitLab's paths may hold subgroups).  A build without a revision or with a
repository URL of another form is not reported (said once in the log).  The status's
``target_url`` is the build's page in the web UI (``www.base_url`` should be the address users
reach it by).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.logger import Logger

from master.engine.properties import Interpolate, Renderable
from master.reporters.base import START, BuildInfo, Reporter, check_http_url
from master.reporters.http import request_json
from master.results import CANCELLED, EXCEPTION, FAILURE, RETRY, SKIPPED, SUCCESS, WARNINGS

log = Logger()

_SCP_LIKE = re.compile(r"^(?:[\w.+-]+@)?(?P<host>[\w.-]+):(?!//)(?P<path>[^\s]+)$")
_GITHUB_TOKEN = re.compile(r"^(gh[pousr]_[A-Za-z0-9]{20,255}|github_pat_[A-Za-z0-9_]{20,255}|[0-9a-f]{40})$")
_GITLAB_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,255}$")


def repository_path(url: str | None) -> str | None:
    """``owner/repo`` (or ``group/sub/project``) of a repository URL, without ``.git``; None if not one."""
    if not url:
        return None
    match = _SCP_LIKE.match(url)
    if match is not None and "://" not in url:
        path = match.group("path")
    else:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        if parts.scheme not in ("http", "https", "ssh", "git", "git+ssh") or not parts.hostname:
            return None
        path = parts.path
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    segments = [s for s in path.split("/") if s]
    if len(segments) < 2 or any(s in (".", "..") for s in segments):
        return None
    return "/".join(segments)


class _StatusPush(Reporter):
    """What the two forges' reporters share: token, context, base URL and the revision and repository."""

    forge = ""
    token_pattern = _GITHUB_TOKEN
    default_base_url = ""
    STATES: dict[int, str] = {}
    """The forge's state for each result of a finished build."""

    def __init__(self, token: str, context: Any = None, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.token = token
        self.context = context if context is not None else Interpolate("ci-master/%(prop:buildername)s")
        self.base_url = base_url if base_url is not None else self.default_base_url
        self._said: set[str] = set()

    def _state_of(self, results: int | None, otherwise: str) -> str:
        """The forge's state for a build's *results*; *otherwise* for results it has no name for."""
        return self.STATES.get(results, otherwise) if results is not None else otherwise

    def check(self) -> None:
        """The token has the forge's format, the base URL is an http(s) URL, the context a string or renderable."""
        super().check()
        if not isinstance(self.token, str) or not self.token_pattern.match(self.token):
            raise ValueError(f"token: not a {self.forge} access token (expected {self.token_hint})")
        check_http_url("base_url", self.base_url)
        if not isinstance(self.context, str | Renderable):
            raise ValueError(f"context: expected a string or Interpolate(...), got {self.context!r}")

    token_hint = ""

    def _once(self, what: str) -> None:
        if what not in self._said:
            self._said.add(what)
            log.warn("reporter {name}: {what}", name=self.name, what=what)

    def target(self, info: BuildInfo) -> tuple[str, str] | None:
        """(repository path, sha) the status goes to, or None when the build has none."""
        sha = info.revision
        path = repository_path(info.repository)
        if sha is None or path is None:
            self._once(f"builds of {info.builder.get('name')!r} are not reported: "
                       f"no revision or no repository URL of a known form ({info.repository!r})")
            return None
        return path, sha

    def description(self, info: BuildInfo, state: str) -> str:
        """The status's words."""
        if state == START:
            return f"Build #{info.build['number']} started."
        return f"Build #{info.build['number']} done: {info.result_name}."

    def context_for(self, info: BuildInfo) -> str:
        """The status's context (GitHub) or name (GitLab), rendered against the build's properties."""
        return str(info.props.render(self.context))


class GitHubStatusPush(_StatusPush):
    """A GitHub commit status per build: ``pending`` at its start, ``success``/``failure``/``error`` at its end."""

    forge = "GitHub"
    default_base_url = "https://api.github.com"
    token_hint = "ghp_..., github_pat_..., or 40 hex digits"
    STATES = {SUCCESS: "success", WARNINGS: "success", SKIPPED: "success", FAILURE: "failure",
              EXCEPTION: "error", RETRY: "error", CANCELLED: "error"}

    async def make_report(self, info: BuildInfo, state: str) -> dict[str, Any] | None:
        """``{"url": .../statuses/SHA, "body": {state, target_url, description, context}}``."""
        target = self.target(info)
        if target is None:
            return None
        path, sha = target
        forge_state = "pending" if state == START else self._state_of(info.results, "error")
        return {
            "url": f"{self.base_url.rstrip('/')}/repos/{path}/statuses/{sha}",
            "body": {"state": forge_state, "target_url": info.url, "description": self.description(info, state),
                     "context": self.context_for(info)},
        }

    async def deliver(self, report: dict[str, Any]) -> None:
        """POST the status with the token."""
        headers = {"Authorization": f"token {self.token}", "Accept": "application/vnd.github+json"}
        await request_json("POST", report["url"], headers, report["body"],
                           what=f"GitHub status {report['body']['state']} on {report['url'].rsplit('/repos/', 1)[-1]}")


class GitLabStatusPush(_StatusPush):
    """A GitLab commit status per build: ``running`` at its start, ``success``/``failed``/``canceled`` at its end.

    The project is looked up by its path (``GET /api/v4/projects/group%2Fproject``) once.
    """

    forge = "GitLab"
    default_base_url = "https://gitlab.com"
    token_pattern = _GITLAB_TOKEN
    token_hint = "glpat-... or another personal, project or group access token"
    STATES = {SUCCESS: "success", WARNINGS: "success", SKIPPED: "success", FAILURE: "failed",
              EXCEPTION: "failed", RETRY: "canceled", CANCELLED: "canceled"}

    def __init__(self, token: str, context: Any = None, base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(token, context, base_url, **kwargs)
        self._project_ids: dict[str, int] = {}

    async def make_report(self, info: BuildInfo, state: str) -> dict[str, Any] | None:
        """``{"project": path, "sha": sha, "body": {state, name, target_url, description[, ref]}}``."""
        target = self.target(info)
        if target is None:
            return None
        path, sha = target
        body = {"state": "running" if state == START else self._state_of(info.results, "failed"),
                "name": self.context_for(info), "target_url": info.url,
                "description": self.description(info, state)}
        branch = info.sourcestamps[0].get("branch") if info.sourcestamps else None
        if branch:
            body["ref"] = branch
        return {"project": path, "sha": sha, "body": body}

    async def deliver(self, report: dict[str, Any]) -> None:
        """Find the project's id (once), then POST the status with the token."""
        api = f"{self.base_url.rstrip('/')}/api/v4"
        headers = {"PRIVATE-TOKEN": self.token}
        path = report["project"]
        project_id = self._project_ids.get(path)
        if project_id is None:
            project = await request_json("GET", f"{api}/projects/{quote(path, safe='')}", headers,
                                         what=f"GitLab project {path}")
            project_id = self._project_ids[path] = int(project["id"])
        await request_json("POST", f"{api}/projects/{project_id}/statuses/{report['sha']}", headers, report["body"],
                           what=f"GitLab status {report['body']['state']} on {path}@{report['sha'][:12]}")
