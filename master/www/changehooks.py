"""Change hooks: GitHub and GitLab pushes and pull/merge requests become changes (mount at ``/change_hook``).

Routes: ``POST /change_hook/github`` and ``POST /change_hook/gitlab``.  Each is configured in
``master.cfg`` as ``change_hooks={"github": {"secret": "..."}, "gitlab": {"secret": "..."}}``.

Security: a hook is only ever accepted with a valid proof of the shared secret: GitHub's
``X-Hub-Signature-256: sha256=<HMAC-SHA256 of the raw body>`` or GitLab's ``X-Gitlab-Token``,
both compared in constant time.  A provider with no secret configured refuses every request
with 403 saying so: there is deliberately no way to accept unsigned pushes, since anyone who
can reach the port could otherwise make the master build what they like.  GitHub's older
SHA-1 ``X-Hub-Signature`` is not accepted.

What becomes a change: one change per commit of a branch or tag push, oldest first, through
``data.updates.add_change`` (so events fire and schedulers see it).  A push listing no commits
(a new branch or a tag at an existing commit) makes one change for the commit the ref points
at.  A tag ``refs/tags/v1`` gives branch ``v1`` with category ``tag`` (``push`` for branches)
and the change property ``event`` = ``tag`` (or ``push``), so schedulers and steps can tell
them apart.  A deleted ref makes no change.  GitHub ``ping`` answers ``{"ok": true}``; other
events are answered 200 with ``{"changeids": [], "ignored": why}`` so the provider does not
flag the hook as failing.

Pull and merge requests: GitHub ``pull_request`` events (actions opened, synchronize, reopened;
others, closed included, are ignored) and GitLab ``Merge Request Hook`` events (open, reopen, and
update when it brings commits) make one change for the request's head commit, category ``pull``,
on branch ``refs/pull/N/head`` (GitHub) or the MR's source branch (GitLab), with the repository
of the head (a fork's, when the request comes from a fork) and the change properties
``pr_number``, ``pr_title``, ``pr_base_branch``, ``pr_url`` and ``event`` (``pull_request`` or
``merge_request``), and from GitHub ``pr_head_branch``.  Select them with ``SingleBranchScheduler(...,
change_filter=ChangeFilter(category="pull"))``.

Answers are JSON: 200 ``{"changeids": [...]}``; errors ``{"error": ...}`` with 400 (bad
payload, named), 403 (signature or token missing or wrong; no secret configured), 404 (no such
provider), 405 (not POST), 413 (body over 10 MiB), 415 (body neither JSON nor, for GitHub, a
form with ``payload``), and 500 only for a fault of ours (logged, no detail).  All changes of a
payload are checked before the first is recorded, so a bad payload records nothing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from master.www.responses import json_body, json_error, json_routing_errors

if TYPE_CHECKING:
    from master.data.connector import DataAPI

log = Logger()

MAX_BODY = 10 * 1024 * 1024
"""The largest hook body accepted, in bytes (GitHub caps its payloads at 25 MB; real pushes are far smaller)."""

PROVIDERS = ("github", "gitlab")
_SETTING_KEYS = ("secret",)
_ZERO_SHA = "0" * 40


class HookError(Exception):
    """A request the hook refuses: the HTTP status and a message for the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_settings(settings: Any) -> dict[str, dict[str, Any]]:
    """Validate ``change_hooks`` from master.cfg; raise ValueError naming the key at fault."""
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"change_hooks: expected a dict like {{'github': {{'secret': ...}}}}, got {settings!r}")
    checked = {}
    for provider, options in settings.items():
        if provider not in PROVIDERS:
            raise ValueError(f"change_hooks: unknown provider {provider!r} (known: {', '.join(PROVIDERS)})")
        if not isinstance(options, Mapping):
            raise ValueError(f"change_hooks[{provider!r}]: expected a dict like {{'secret': ...}}")
        unknown = set(options) - set(_SETTING_KEYS)
        if unknown:
            raise ValueError(f"change_hooks[{provider!r}]: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        secret = options.get("secret")
        if not isinstance(secret, str) or not secret:
            # refused here rather than at the first push: unsigned hooks are never accepted
            raise ValueError(f"change_hooks[{provider!r}]['secret']: a non-empty string is required")
        checked[provider] = dict(options)
    return checked


# -- reading payloads ------------------------------------------------------------------------------


_KIND_NAMES: dict[type, str] = {str: "a string", dict: "an object", list: "a list"}


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str, required: bool = True) -> Any:
    """``obj[key]`` checked to be of *kind*; None when absent (or null) and not *required*."""
    value = obj.get(key)
    if value is None:
        if required:
            raise HookError(400, f"payload: {where}{key} is missing")
        return None
    if not isinstance(value, kind):
        raise HookError(400, f"payload: {where}{key} must be {_KIND_NAMES[kind]}, got {type(value).__name__}")
    return value


def _strings(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    values = _field(obj, key, list, where, required=False) or []
    if not all(isinstance(v, str) for v in values):
        raise HookError(400, f"payload: {where}{key} must be a list of strings")
    return values


def _timestamp(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    """An ISO 8601 time as seconds since the epoch (UTC when no offset is given); None when absent."""
    text = _field(obj, key, str, where, required=False)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise HookError(400, f"payload: {where}{key} is not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _person(obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    """``{"name", "email"}`` as ``Name <email>`` (the form Buildbot and schedulers expect)."""
    person = _field(obj, key, dict, where, required)
    if person is None:
        return None
    name = _field(person, "name", str, f"{where}{key}.", required=False) or ""
    email = _field(person, "email", str, f"{where}{key}.", required=False) or ""
    if name and email:
        return f"{name} <{email}>"
    if name or email:
        return name or email
    if required:
        raise HookError(400, f"payload: {where}{key} has neither a name nor an email")
    return None


def _split_ref(ref: str) -> tuple[str, str] | None:
    """``refs/heads/x`` -> ``("x", "push")``, ``refs/tags/v1`` -> ``("v1", "tag")``, others None."""
    for prefix, kind in (("refs/heads/", "push"), ("refs/tags/", "tag")):
        if ref.startswith(prefix) and len(ref) > len(prefix):
            return ref[len(prefix):], kind
    return None


def _json(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise HookError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(payload, dict):
        raise HookError(400, f"the body must be a JSON object, got {type(payload).__name__}")
    return payload


def _content_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


class HookResult:
    """What a payload asks for: changes to add (keyword arguments of ``add_change``), or why none."""

    def __init__(self, changes: list[dict[str, Any]] | None = None, ignored: str | None = None,
                 ping: bool = False) -> None:
        self.changes = changes or []
        self.ignored = ignored
        self.ping = ping


# -- GitHub ----------------------------------------------------------------------------------------


def github(headers: Mapping[str, str], body: bytes, secret: str | None) -> HookResult:
    """Check and read a GitHub webhook request (*headers* with lower-case names)."""
    if not secret:
        raise HookError(403, "no secret is configured for the github hook: set change_hooks={'github': "
                             "{'secret': ...}} in master.cfg and the same secret on the GitHub webhook")
    signature = headers.get("x-hub-signature-256")
    if not signature:
        raise HookError(403, "missing X-Hub-Signature-256 header: set a secret on the GitHub webhook")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise HookError(403, "bad X-Hub-Signature-256: the webhook's secret does not match the master's")
    event = headers.get("x-github-event")
    if not event:
        raise HookError(400, "missing X-GitHub-Event header")
    if event == "ping":
        return HookResult(ping=True)
    if event == "pull_request":
        return github_pull_request(_github_payload(headers, body))
    if event != "push":
        return HookResult(ignored=f"event {event!r} is not handled (only push, pull_request and ping are)")
    return github_push(_github_payload(headers, body))


def _github_payload(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The JSON payload of a GitHub request, sent as JSON or as the ``payload`` field of a form."""
    content_type = _content_type(headers)
    if content_type == "application/json":
        payload = _json(body)
    elif content_type == "application/x-www-form-urlencoded":
        # GitHub's "form" content type: the JSON is the 'payload' field; the signature covers the form
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise HookError(400, "the form body is not valid UTF-8") from None
        if not form.get("payload"):
            raise HookError(400, "the form body has no 'payload' field")
        payload = _json(form["payload"][0].encode())
    else:
        raise HookError(415, "Content-Type must be application/json or application/x-www-form-urlencoded")
    return payload


def github_push(payload: Mapping[str, Any]) -> HookResult:
    """The changes of a GitHub ``push`` payload: one per commit."""
    ref = _field(payload, "ref", str, "")
    if payload.get("deleted") is True:
        return HookResult(ignored=f"{ref} was deleted")
    split = _split_ref(ref)
    if split is None:
        return HookResult(ignored=f"{ref} is neither a branch nor a tag")
    branch, kind = split
    repo = _field(payload, "repository", dict, "")
    repository = _field(repo, "clone_url", str, "repository.", required=False) or _field(
        repo, "html_url", str, "repository.", required=False)
    if not repository:
        raise HookError(400, "payload: repository.clone_url (or html_url) is missing")
    project = _field(repo, "full_name", str, "repository.", required=False) or ""
    commits = [(f"commits[{index}]", commit)
               for index, commit in enumerate(_field(payload, "commits", list, "", required=False) or [])]
    if not commits and payload.get("head_commit") is not None:
        # a new branch or a tag at an existing commit: the ref's commit is the change
        commits = [("head_commit", payload["head_commit"])]
    changes = []
    for name, commit in commits:
        at = f"{name}."
        if not isinstance(commit, dict):
            raise HookError(400, f"payload: {name} must be an object")
        changes.append({
            "author": _person(commit, "author", at),
            "committer": _person(commit, "committer", at, required=False),
            "comments": _field(commit, "message", str, at, required=False) or "",
            "revision": _field(commit, "id", str, at),
            "revlink": _field(commit, "url", str, at, required=False),
            "when_timestamp": _timestamp(commit, "timestamp", at),
            "files": [*_strings(commit, "added", at), *_strings(commit, "modified", at),
                      *_strings(commit, "removed", at)],
            "branch": branch, "repository": repository, "project": project, "category": kind,
            "properties": {"event": kind},
        })
    if not changes:
        return HookResult(ignored=f"the push to {ref} lists no commit")
    return HookResult(changes)


GITHUB_PR_ACTIONS = ("opened", "synchronize", "reopened")
"""The ``pull_request`` actions that build: the pull request's head is new (others, such as closed, are ignored)."""


def github_pull_request(payload: Mapping[str, Any]) -> HookResult:
    """The change of a GitHub ``pull_request`` payload: its head commit, on branch ``refs/pull/N/head``.

    The repository is the head's (a fork's, for a pull request from a fork), so that the head sha is
    fetched from where it lives; ``project`` is the base repository's full name.
    """
    action = _field(payload, "action", str, "")
    if action not in GITHUB_PR_ACTIONS:
        return HookResult(ignored=f"pull_request action {action!r} is not built (only {', '.join(GITHUB_PR_ACTIONS)})")
    pr = _field(payload, "pull_request", dict, "")
    number = pr.get("number", payload.get("number"))
    if not isinstance(number, int) or isinstance(number, bool):
        raise HookError(400, "payload: pull_request.number must be an integer")
    head = _field(pr, "head", dict, "pull_request.")
    base = _field(pr, "base", dict, "pull_request.")
    head_repo = _field(head, "repo", dict, "pull_request.head.", required=False)
    if head_repo is None:
        return HookResult(ignored=f"the head repository of pull request #{number} no longer exists")
    base_repo = _field(base, "repo", dict, "pull_request.base.")
    repository = _field(head_repo, "clone_url", str, "pull_request.head.repo.")
    title = _field(pr, "title", str, "pull_request.", required=False) or ""
    body = _field(pr, "body", str, "pull_request.", required=False) or ""
    user = _field(pr, "user", dict, "pull_request.", required=False) or {}
    url = _field(pr, "html_url", str, "pull_request.", required=False)
    base_branch = _field(base, "ref", str, "pull_request.base.")
    change = {
        "author": _field(user, "login", str, "pull_request.user.", required=False) or "unknown",
        "committer": None,
        "comments": f"Pull request #{number}: {title}" + (f"\n\n{body}" if body else ""),
        "revision": _field(head, "sha", str, "pull_request.head."),
        "revlink": url,
        "when_timestamp": _timestamp(pr, "updated_at", "pull_request."),
        "files": [],
        "branch": f"refs/pull/{number}/head",
        "repository": repository,
        "project": _field(base_repo, "full_name", str, "pull_request.base.repo.", required=False) or "",
        "category": "pull",
        "properties": {
            "event": "pull_request", "pr_number": number, "pr_title": title, "pr_base_branch": base_branch,
            "pr_url": url, "pr_head_branch": _field(head, "ref", str, "pull_request.head.", required=False),
        },
    }
    return HookResult([change])


# -- GitLab ----------------------------------------------------------------------------------------


def gitlab(headers: Mapping[str, str], body: bytes, secret: str | None) -> HookResult:
    """Check and read a GitLab webhook request (*headers* with lower-case names)."""
    if not secret:
        raise HookError(403, "no secret is configured for the gitlab hook: set change_hooks={'gitlab': "
                             "{'secret': ...}} in master.cfg and the same secret token on the GitLab webhook")
    token = headers.get("x-gitlab-token")
    if not token:
        raise HookError(403, "missing X-Gitlab-Token header: set a secret token on the GitLab webhook")
    if not hmac.compare_digest(secret.encode(), token.encode("utf-8", "replace")):
        raise HookError(403, "bad X-Gitlab-Token: the webhook's secret token does not match the master's")
    event = headers.get("x-gitlab-event")
    if not event:
        raise HookError(400, "missing X-Gitlab-Event header")
    if event not in ("Push Hook", "Tag Push Hook", "Merge Request Hook"):
        return HookResult(ignored=f"event {event!r} is not handled (only Push Hook, Tag Push Hook and "
                                  "Merge Request Hook are)")
    if _content_type(headers) != "application/json":
        raise HookError(415, "Content-Type must be application/json")
    payload = _json(body)
    if event == "Merge Request Hook":
        return gitlab_merge_request(payload)
    return gitlab_push(payload)


def gitlab_push(payload: Mapping[str, Any]) -> HookResult:
    """The changes of a GitLab push or tag push payload: one per commit."""
    ref = _field(payload, "ref", str, "")
    after = _field(payload, "after", str, "", required=False)
    if after == _ZERO_SHA:
        return HookResult(ignored=f"{ref} was deleted")
    split = _split_ref(ref)
    if split is None:
        return HookResult(ignored=f"{ref} is neither a branch nor a tag")
    branch, kind = split
    project_obj = _field(payload, "project", dict, "", required=False) or {}
    repo_obj = _field(payload, "repository", dict, "", required=False) or {}
    # 'project' is the current field; 'repository' is what older GitLab versions send
    repository = _field(project_obj, "git_http_url", str, "project.", required=False) or _field(
        repo_obj, "git_http_url", str, "repository.", required=False)
    if not repository:
        raise HookError(400, "payload: project.git_http_url (or repository.git_http_url) is missing")
    project = _field(project_obj, "path_with_namespace", str, "project.", required=False) or ""
    base = {"branch": branch, "repository": repository, "project": project, "category": kind,
            "properties": {"event": kind}}
    commits = _field(payload, "commits", list, "", required=False) or []
    changes = []
    for index, commit in enumerate(commits):
        at = f"commits[{index}]."
        if not isinstance(commit, dict):
            raise HookError(400, f"payload: commits[{index}] must be an object")
        changes.append({
            "author": _person(commit, "author", at),
            "comments": _field(commit, "message", str, at, required=False) or "",
            "revision": _field(commit, "id", str, at),
            "revlink": _field(commit, "url", str, at, required=False),
            "when_timestamp": _timestamp(commit, "timestamp", at),
            "files": [*_strings(commit, "added", at), *_strings(commit, "modified", at),
                      *_strings(commit, "removed", at)],
            **base,
        })
    if not changes:
        # a tag, or a new branch at an existing commit: the pushed commit, by the pusher
        sha = _field(payload, "checkout_sha", str, "", required=False) or after
        if not sha:
            return HookResult(ignored=f"the push to {ref} names no commit")
        name = _field(payload, "user_name", str, "", required=False) or ""
        email = _field(payload, "user_email", str, "", required=False) or ""
        author = f"{name} <{email}>" if name and email else name or email or "unknown"
        web_url = _field(project_obj, "web_url", str, "project.", required=False)
        changes.append({
            "author": author,
            "comments": _field(payload, "message", str, "", required=False) or f"{kind} {branch}",
            "revision": sha, "revlink": f"{web_url}/-/commit/{sha}" if web_url else None,
            "when_timestamp": None, "files": [], **base,
        })
    return HookResult(changes)


GITLAB_MR_ACTIONS = ("open", "reopen", "update")
"""The ``merge_request`` actions that build (an update only when it brings commits: it has ``oldrev``)."""


def gitlab_merge_request(payload: Mapping[str, Any]) -> HookResult:
    """The change of a GitLab ``merge_request`` payload: its last commit, on the MR's source branch.

    The repository is the source project's (a fork's, for a merge request from a fork).
    """
    attrs = _field(payload, "object_attributes", dict, "")
    where = "object_attributes."
    action = _field(attrs, "action", str, where, required=False)
    if action not in GITLAB_MR_ACTIONS:
        return HookResult(ignored=f"merge_request action {action!r} is not built (only {', '.join(GITLAB_MR_ACTIONS)})")
    iid = attrs.get("iid")
    if not isinstance(iid, int) or isinstance(iid, bool):
        raise HookError(400, "payload: object_attributes.iid must be an integer")
    if action == "update" and not attrs.get("oldrev"):
        return HookResult(ignored=f"merge request !{iid} was updated without new commits")
    source = _field(attrs, "source", dict, where)
    target = _field(attrs, "target", dict, where, required=False) or {}
    commit = _field(attrs, "last_commit", dict, where)
    title = _field(attrs, "title", str, where, required=False) or ""
    user = _field(payload, "user", dict, "", required=False) or {}
    author = _person(commit, "author", f"{where}last_commit.", required=False) or _field(
        user, "name", str, "user.", required=False) or "unknown"
    url = _field(attrs, "url", str, where, required=False)
    base_branch = _field(attrs, "target_branch", str, where)
    change = {
        "author": author,
        "comments": f"Merge request !{iid}: {title}",
        "revision": _field(commit, "id", str, f"{where}last_commit."),
        "revlink": _field(commit, "url", str, f"{where}last_commit.", required=False),
        "when_timestamp": _timestamp(commit, "timestamp", f"{where}last_commit."),
        "files": [],
        "branch": _field(attrs, "source_branch", str, where),
        "repository": _field(source, "git_http_url", str, f"{where}source."),
        "project": _field(target, "path_with_namespace", str, f"{where}target.", required=False) or "",
        "category": "pull",
        "properties": {
            "event": "merge_request", "pr_number": iid, "pr_title": title, "pr_base_branch": base_branch,
            "pr_url": url,
        },
    }
    return HookResult([change])


_PARSERS = {"github": github, "gitlab": gitlab}


# -- the web resource ------------------------------------------------------------------------------


class ChangeHooks:
    """The ``/change_hook/<provider>`` routes over one DataAPI, with the ``change_hooks`` settings."""

    app = json_routing_errors(Klein())

    def __init__(self, data: DataAPI, settings: Mapping[str, Any] | None = None) -> None:
        self.data = data
        self.settings = check_settings(settings)

    def reconfigure(self, settings: Mapping[str, Any] | None) -> None:
        """Use new ``change_hooks`` settings (on reconfig); raise ValueError, keeping the old, if they are bad."""
        self.settings = check_settings(settings)

    def resource(self) -> Any:
        """The twisted.web resource serving these routes; mount it at ``/change_hook``."""
        return self.app.resource()

    @app.route("/", methods=None, strict_slashes=False)
    def index(self, request: IRequest) -> bytes:
        """``/change_hook`` itself: say where the hooks are."""
        return json_error(request, 404, "no provider given: POST to /change_hook/github or /change_hook/gitlab")

    @app.route("/<provider>", methods=None)
    def dispatch(self, request: IRequest, provider: str) -> Any:
        """POST to a known provider; anything else is 404 or 405."""
        if provider not in _PARSERS:
            return json_error(request, 404, f"no change hook {provider!r} (known: {', '.join(PROVIDERS)})")
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return json_error(request, 405, f"method {request.method.decode(errors='replace')} is not allowed; "
                                            "change hooks take POST")
        return defer.ensureDeferred(self._handle(request, provider))

    @app.route("/<path:path>", methods=None)
    def unknown(self, request: IRequest, path: str) -> bytes:
        """Anything deeper under /change_hook."""
        hint = f"; did you mean /change_hook/{path.rstrip('/')}?" if path.rstrip("/") in _PARSERS else ""
        return json_error(request, 404, f"no such change hook path: /change_hook/{path}{hint}")

    async def _handle(self, request: IRequest, provider: str) -> bytes:
        try:
            body = _read_body(request)
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in ((n, vs[0]) for n, vs in request.requestHeaders.getAllRawHeaders())
            }
            secret = self.settings.get(provider, {}).get("secret")
            result = _PARSERS[provider](headers, body, secret)
            if result.ping:
                return json_body(request, {"ok": True})
            if result.ignored is not None:
                return json_body(request, {"changeids": [], "ignored": result.ignored})
            changeids = [await self.data.updates.add_change(**change) for change in result.changes]
        except HookError as e:
            if e.status == 403:
                # worth a line in the log: a misconfigured webhook, or someone probing
                peer = getattr(request.getClientAddress(), "host", "?")
                log.warn("change hook {provider} from {peer} refused: {reason}", provider=provider, peer=peer,
                         reason=e.message)
            return json_error(request, e.status, e.message)
        except defer.CancelledError:
            raise
        except Exception:
            log.failure("change hook {provider} failed", provider=provider)
            return json_error(request, 500, "internal error (logged on the master)")
        first = result.changes[0]
        log.info("change hook {provider}: {n} change(s) on {project} {branch}: {ids}", provider=provider,
                 n=len(changeids), project=first["project"], branch=first["branch"], ids=changeids)
        return json_body(request, {"changeids": changeids})


def _read_body(request: IRequest) -> bytes:
    """The raw body (the signature covers exactly these bytes), refused when over MAX_BODY."""
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HookError(400, "bad Content-Length header") from None
        if declared > MAX_BODY:
            raise HookError(413, f"the body is over {MAX_BODY} bytes")
    request.content.seek(0)
    body: bytes = request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:  # a chunked body has no Content-Length to refuse it by
        raise HookError(413, f"the body is over {MAX_BODY} bytes")
    return body
