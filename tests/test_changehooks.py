"""Change sources: GitHub and GitLab hooks, the JSON-RPC ``add`` action, ``sendchange`` (the one on a real port)."""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_twisted
import treq
from apiclient import Api, serve
from tiers import IN_MEMORY, OVER_TCP
from twisted.internet import threads
from twisted.logger import globalLogPublisher

from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.db.interfaces import IStorage
from master.sendchange import SendChangeError, add_arguments, run, sendchange
from master.www.changehooks import MAX_BODY, ChangeHooks, check_settings
from master.www.rest import RestApi
from master.www.site import build_site

GITHUB_SECRET = "It's a Secret to Everybody"
GITLAB_SECRET = "gl-token-5f1d"
SETTINGS = {"github": {"secret": GITHUB_SECRET}, "gitlab": {"secret": GITLAB_SECRET}}

# modelled on GitHub's documented push event payload (trimmed of fields the hook does not read)
GITHUB_PUSH = {
    "ref": "refs/heads/main",
    "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
    "after": "1481a2de7b2a7d02428ad93446ab166be7793fbb",
    "created": False,
    "deleted": False,
    "forced": False,
    "base_ref": None,
    "compare": "https://github.com/octo-org/hello-world/compare/6113728f27ae...1481a2de7b2a",
    "commits": [
        {
            "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
            "distinct": True,
            "message": "Update README.md",
            "timestamp": "2024-05-05T19:40:15-04:00",
            "url": "https://github.com/octo-org/hello-world/commit/0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
            "author": {"name": "Mona Lisa Octocat", "email": "mona@github.com", "username": "octocat"},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
            "added": [],
            "removed": [],
            "modified": ["README.md"],
        },
        {
            "id": "1481a2de7b2a7d02428ad93446ab166be7793fbb",
            "tree_id": "0b5e6b5d2f1f1c5f8b9e9c0a3f0b7e8d1c2a3b4c",
            "distinct": True,
            "message": "Add a greeting\n\nAnd remove the old one.",
            "timestamp": "2024-05-05T19:45:01-04:00",
            "url": "https://github.com/octo-org/hello-world/commit/1481a2de7b2a7d02428ad93446ab166be7793fbb",
            "author": {"name": "Hubot", "email": "hubot@github.com", "username": "hubot"},
            "committer": {"name": "Hubot", "email": "hubot@github.com", "username": "hubot"},
            "added": ["src/hello.c"],
            "removed": ["src/old.c"],
            "modified": ["Makefile"],
        },
    ],
    "head_commit": None,  # filled below: the last commit
    "repository": {
        "id": 186853002,
        "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
        "name": "hello-world",
        "full_name": "octo-org/hello-world",
        "private": False,
        "owner": {"name": "octo-org", "login": "octo-org", "id": 6811672},
        "html_url": "https://github.com/octo-org/hello-world",
        "clone_url": "https://github.com/octo-org/hello-world.git",
        "ssh_url": "git@github.com:octo-org/hello-world.git",
        "default_branch": "main",
        "master_branch": "main",
    },
    "pusher": {"name": "octocat", "email": "mona@github.com"},
    "sender": {"login": "octocat", "id": 583231, "type": "User"},
}
GITHUB_PUSH["head_commit"] = GITHUB_PUSH["commits"][-1]

# modelled on GitLab's documented "Push Hook" payload
GITLAB_PUSH = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "user_email": "john@example.com",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "namespace": "Mike",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
    },
    "repository": {
        "name": "Diaspora",
        "url": "git@example.com:mike/diaspora.git",
        "homepage": "http://example.com/mike/diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "visibility_level": 0,
    },
    "commits": [
        {
            "id": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "message": "Update Catalan translation to e38cb41.\n\nSee https://gitlab.com/gitlab-org/gitlab for more.",
            "title": "Update Catalan translation to e38cb41.",
            "timestamp": "2011-12-12T14:27:31+02:00",
            "url": "http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"},
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": [],
        },
        {
            "id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "message": "fixed readme",
            "title": "fixed readme",
            "timestamp": "2012-01-03T23:36:29+02:00",
            "url": "http://example.com/mike/diaspora/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
            "author": {"name": "GitLab dev user", "email": "gitlabdev@dv6700.(none)"},
            "added": [],
            "modified": ["README.md"],
            "removed": ["old/notes.txt"],
        },
    ],
    "total_commits_count": 2,
}

# GitLab's documented "Tag Push Hook": no commits, the tagged commit is checkout_sha
GITLAB_TAG = {
    **copy.deepcopy(GITLAB_PUSH),
    "object_kind": "tag_push",
    "event_name": "tag_push",
    "before": "0000000000000000000000000000000000000000",
    "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "ref": "refs/tags/v1.0.0",
    "checkout_sha": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
    "message": "Release 1.0.0",
    "commits": [],
    "total_commits_count": 0,
}


@pytest.fixture(autouse=True)
def logged_failures() -> Any:
    """No request may end in a logged traceback: every refusal is an answer, not a fault."""
    failures: list[Any] = []

    def observe(event: dict[str, Any]) -> None:
        if "log_failure" in event:
            failures.append(event["log_failure"])

    globalLogPublisher.addObserver(observe)
    yield failures
    globalLogPublisher.removeObserver(observe)
    assert not failures, [f.getTraceback() for f in failures]


def make_data(storage: IStorage) -> DataAPI:
    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    return data


@pytest_twisted.async_yield_fixture()
async def api(storage: IStorage, transport: str) -> AsyncIterator[Api]:
    """The REST API at /api and the change hooks at /change_hook: in memory, or on a real port (OVER_TCP)."""
    data = make_data(storage)
    site = build_site({"api": RestApi(data).resource(), "change_hook": ChangeHooks(data, SETTINGS).resource()})
    async with serve(data, site, in_memory=transport == IN_MEMORY) as api:
        yield api


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post(api: Api, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any, Any]:
    response = await treq.post(api.url + path, data=body, headers=headers, pool=api.pool)
    raw = await response.content()
    return response.code, json.loads(raw), response


async def github(api: Api, payload: Any, event: str = "push", signature: str | None = "good",
                 content_type: str = "application/json") -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": content_type, "X-GitHub-Event": event,
               "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "User-Agent": "GitHub-Hookshot/044aadd"}
    if signature == "good":
        headers["X-Hub-Signature-256"] = sign(body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    code, answer, _ = await post(api, "/change_hook/github", body, headers)
    return code, answer


async def gitlab(
    api: Api, payload: Any, event: str = "Push Hook", token: str | None = GITLAB_SECRET
) -> tuple[int, Any]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event}
    if token is not None:
        headers["X-Gitlab-Token"] = token
    code, answer, _ = await post(api, "/change_hook/gitlab", body, headers)
    return code, answer


async def changes(api: Api) -> list[dict[str, Any]]:
    code, body, _ = await api.get("/api/v2/changes?order=changeid")
    assert code == 200
    return body["changes"]


def record_new_changes(data: DataAPI) -> list[int]:
    seen: list[int] = []
    data.events.subscribe(("changes", "*", "new"), lambda key, change: seen.append(change["changeid"]))
    return seen


# -- GitHub -----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_github_push_makes_one_change_per_commit(api: Api) -> None:
    events = record_new_changes(api.data)
    code, body = await github(api, GITHUB_PUSH)
    assert (code, body) == (200, {"changeids": [1, 2]})
    assert events == [1, 2]  # through add_change: schedulers see them
    first, second = await changes(api)
    common = {"branch": "main", "repository": "https://github.com/octo-org/hello-world.git",
              "project": "octo-org/hello-world", "codebase": "", "category": "push",
              "properties": {"event": ["push", "Change"]}}
    assert first == {**first, **common, "author": "Mona Lisa Octocat <mona@github.com>",
                     "committer": "GitHub <noreply@github.com>", "comments": "Update README.md",
                     "revision": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
                     "revlink": GITHUB_PUSH["commits"][0]["url"], "when_timestamp": 1714952415,
                     "files": ["README.md"], "parent_changeids": []}
    assert second == {**second, **common, "author": "Hubot <hubot@github.com>",
                      "comments": "Add a greeting\n\nAnd remove the old one.",
                      "revision": "1481a2de7b2a7d02428ad93446ab166be7793fbb", "when_timestamp": 1714952701,
                      "files": ["Makefile", "src/hello.c", "src/old.c"], "parent_changeids": [1]}
    assert second["sourcestamp"]["revision"] == "1481a2de7b2a7d02428ad93446ab166be7793fbb"


@pytest_twisted.ensureDeferred
async def test_github_form_encoded_payload_and_tags(api: Api) -> None:
    # GitHub's "application/x-www-form-urlencoded" content type: the JSON is in 'payload', the form is signed
    form = urlencode({"payload": json.dumps(GITHUB_PUSH)}).encode()
    code, body = await github(api, form, content_type="application/x-www-form-urlencoded")
    assert (code, body) == (200, {"changeids": [1, 2]})
    code, body = await github(api, urlencode({"other": "x"}).encode(),
                              content_type="application/x-www-form-urlencoded")
    assert code == 400 and "payload" in body["error"]

    # a tag pushed at an existing commit lists no commit: the head commit is the change
    tag = {**GITHUB_PUSH, "ref": "refs/tags/v1.0", "created": True, "commits": [], "base_ref": "refs/heads/main"}
    code, body = await github(api, tag)
    assert (code, body) == (200, {"changeids": [3]})
    change = (await changes(api))[-1]
    assert change["branch"] == "v1.0" and change["category"] == "tag"
    assert change["properties"] == {"event": ["tag", "Change"]}
    assert change["revision"] == "1481a2de7b2a7d02428ad93446ab166be7793fbb"


@pytest_twisted.ensureDeferred
async def test_github_signature_is_required(api: Api) -> None:
    body = json.dumps(GITHUB_PUSH).encode()
    for signature in (None, "", sign(body, "wrong secret"), "sha1=" + "0" * 40, sign(body)[:-1], "sha256=é"):
        code, answer = await github(api, body, signature=signature)
        assert code == 403, signature
        assert "X-Hub-Signature-256" in answer["error"]
    # the signature covers the exact bytes: a re-serialised body no longer matches
    code, answer = await github(api, json.dumps(GITHUB_PUSH, indent=1).encode(), signature=sign(body))
    assert code == 403
    # pings are signed too
    assert (await github(api, {"zen": "Keep it logically awesome."}, event="ping", signature=None))[0] == 403
    assert await changes(api) == []


@pytest_twisted.ensureDeferred
async def test_github_ping_other_events_deleted_branches(api: Api) -> None:
    ping = {"zen": "Design for failure.", "hook_id": 42, "hook": {"type": "Repository", "events": ["push"]}}
    assert await github(api, ping, event="ping") == (200, {"ok": True})
    code, body = await github(api, {"action": "opened", "issue": {"number": 1}}, event="issues")
    assert code == 200 and body["changeids"] == [] and "'issues' is not handled" in body["ignored"]
    deleted = {**GITHUB_PUSH, "ref": "refs/heads/topic", "deleted": True, "commits": [], "head_commit": None,
               "after": "0" * 40}
    code, body = await github(api, deleted)
    assert code == 200 and body == {"changeids": [], "ignored": "refs/heads/topic was deleted"}
    code, body = await github(api, {**GITHUB_PUSH, "ref": "refs/notes/commits"})
    assert code == 200 and body["changeids"] == [] and "neither a branch nor a tag" in body["ignored"]
    assert await changes(api) == []


@pytest_twisted.ensureDeferred
async def test_github_bad_payloads(api: Api) -> None:
    bad_commit = copy.deepcopy(GITHUB_PUSH)
    bad_commit["commits"][1]["timestamp"] = "yesterday"
    no_author = copy.deepcopy(GITHUB_PUSH)
    del no_author["commits"][1]["author"]
    cases = [
        (b'{"ref": "refs/heads/main", ', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff\xfe", "not valid JSON"),
        ({**GITHUB_PUSH, "commits": "many"}, "commits must be a list"),
        ({**GITHUB_PUSH, "commits": [42]}, "commits[0] must be an object"),
        ({k: v for k, v in GITHUB_PUSH.items() if k != "ref"}, "ref is missing"),
        ({**GITHUB_PUSH, "repository": {"full_name": "a/b"}}, "repository.clone_url"),
        (bad_commit, "commits[1].timestamp is not an ISO 8601 time"),
        (no_author, "commits[1].author is missing"),
    ]
    for payload, message in cases:
        code, body = await github(api, payload)
        assert code == 400 and message in body["error"], (payload, body)
    # one bad commit records nothing, not the good commits before it
    assert await changes(api) == []
    code, body = await github(api, b"{}", content_type="text/plain")
    assert code == 415 and "Content-Type" in body["error"]
    code, body = await github(api, {"x": 1}, event="")
    assert code == 400 and "X-GitHub-Event" in body["error"]


@pytest_twisted.ensureDeferred
async def test_routing_methods_and_sizes(api: Api) -> None:
    code, body, _ = await post(api, "/change_hook/bitbucket", b"{}", {"Content-Type": "application/json"})
    assert code == 404 and "bitbucket" in body["error"]
    code, body, _ = await post(api, "/change_hook/github/extra", b"{}", {})
    assert code == 404
    code, body, response = await api.get("/change_hook/github")
    assert code == 405 and response.headers.getRawHeaders("Allow") == ["POST"] and "POST" in body["error"]
    for path in ("/change_hook", "/change_hook/"):  # JSON, not Klein's HTML redirect
        code, body, _ = await api.get(path)
        assert code == 404 and "/change_hook/github" in body["error"]
    code, body, _ = await post(api, "/change_hook/github/", b"{}", {})
    assert code == 404 and "did you mean /change_hook/github?" in body["error"]
    huge = b" " * (MAX_BODY + 1)
    code, body = await github(api, huge)
    assert code == 413 and "bytes" in body["error"]
    code, body = await gitlab(api, huge)
    assert code == 413


@pytest_twisted.ensureDeferred
async def test_unconfigured_provider_refuses_everything(storage: IStorage) -> None:
    data = make_data(storage)
    hooks = ChangeHooks(data, {"gitlab": {"secret": GITLAB_SECRET}})
    site = build_site({"api": RestApi(data).resource(), "change_hook": hooks.resource()})
    async with serve(data, site, in_memory=True) as api:
        for signature in ("good", None):
            code, body = await github(api, GITHUB_PUSH, signature=signature)
            assert code == 403 and "no secret is configured for the github hook" in body["error"]
        assert await changes(api) == []
        # reconfig: bad settings are refused and the old ones kept; good ones apply at once
        with pytest.raises(ValueError, match="non-empty string"):
            hooks.reconfigure({"github": {"secret": None}})
        assert (await github(api, GITHUB_PUSH))[0] == 403
        hooks.reconfigure(SETTINGS)
        assert await github(api, GITHUB_PUSH) == (200, {"changeids": [1, 2]})


@pytest_twisted.ensureDeferred
async def test_a_fault_of_ours_is_a_logged_500_without_detail(api: Api, logged_failures: list[Any]) -> None:
    async def broken(**change: Any) -> int:
        raise RuntimeError("the database caught fire")

    api.data.updates.add_change = broken
    code, body = await gitlab(api, GITLAB_PUSH)
    assert (code, body) == (500, {"error": "internal error (logged on the master)"})
    assert len(logged_failures) == 1 and logged_failures[0].check(RuntimeError)
    logged_failures.clear()


def test_settings_are_checked() -> None:
    assert check_settings(None) == {}
    assert check_settings(SETTINGS) == SETTINGS
    for bad, message in [
        ({"github": {}}, "non-empty string is required"),
        ({"github": {"secret": None}}, "non-empty string is required"),
        ({"github": {"secret": ""}}, "non-empty string is required"),
        ({"gitlab": {"secret": "s", "token": "t"}}, "unknown key(s) token"),
        ({"bitbucket": {"secret": "s"}}, "unknown provider 'bitbucket'"),
        (["github"], "expected a dict"),
        ({"github": "s"}, "expected a dict"),
    ]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_settings(bad)


# -- GitLab -----------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_gitlab_push_and_tag_push(api: Api) -> None:
    events = record_new_changes(api.data)
    code, body = await gitlab(api, GITLAB_PUSH)
    assert (code, body) == (200, {"changeids": [1, 2]})
    first, second = await changes(api)
    common = {"branch": "master", "repository": "http://example.com/mike/diaspora.git",
              "project": "mike/diaspora", "category": "push", "committer": None,
              "properties": {"event": ["push", "Change"]}}
    assert first == {**first, **common, "author": "Jordi Mallach <jordi@softcatala.org>",
                     "comments": GITLAB_PUSH["commits"][0]["message"],
                     "revision": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", "when_timestamp": 1323692851,
                     "revlink": GITLAB_PUSH["commits"][0]["url"],
                     "files": ["CHANGELOG", "app/controller/application.rb"]}
    assert second == {**second, **common, "author": "GitLab dev user <gitlabdev@dv6700.(none)>",
                      "comments": "fixed readme", "when_timestamp": 1325626589,
                      "files": ["README.md", "old/notes.txt"], "parent_changeids": [1]}

    code, body = await gitlab(api, GITLAB_TAG, event="Tag Push Hook")
    assert (code, body) == (200, {"changeids": [3]})
    tag = (await changes(api))[-1]
    assert tag == {**tag, "branch": "v1.0.0", "category": "tag", "author": "John Smith <john@example.com>",
                   "comments": "Release 1.0.0", "revision": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
                   "revlink": "http://example.com/mike/diaspora/-/commit/82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
                   "files": [], "properties": {"event": ["tag", "Change"]}}
    assert events == [1, 2, 3]

    # older GitLab versions: the URL only in 'repository'
    old = {**copy.deepcopy(GITLAB_PUSH), "project": None}
    old["repository"]["git_http_url"] = "http://example.com/old/repo.git"
    code, body = await gitlab(api, old)
    assert code == 200 and body == {"changeids": [4, 5]}
    assert (await changes(api))[-1]["repository"] == "http://example.com/old/repo.git"


@pytest_twisted.ensureDeferred
async def test_gitlab_token_deleted_branch_and_errors(api: Api) -> None:
    for token in (None, "", "gl-token-5f1e", GITLAB_SECRET + "x", GITLAB_SECRET[:-1], "é"):
        code, body = await gitlab(api, GITLAB_PUSH, token=token)
        assert code == 403 and "X-Gitlab-Token" in body["error"], token
    deleted = {**GITLAB_PUSH, "after": "0" * 40, "checkout_sha": None, "commits": [], "total_commits_count": 0}
    assert await gitlab(api, deleted) == (200, {"changeids": [], "ignored": "refs/heads/master was deleted"})
    code, body = await gitlab(api, {"object_kind": "issue"}, event="Issue Hook")
    assert code == 200 and body["changeids"] == [] and "'Issue Hook' is not handled" in body["ignored"]
    code, body = await gitlab(api, b"not json")
    assert code == 400 and "not valid JSON" in body["error"]
    code, body = await gitlab(api, {**GITLAB_PUSH, "project": {}, "repository": {}})
    assert code == 400 and "git_http_url" in body["error"]
    code, body = await gitlab(api, {**GITLAB_PUSH, "commits": [{"id": 7, "author": {"name": "x"}}]})
    assert code == 400 and body["error"] == "payload: commits[0].id must be a string, got int"
    code, body = await gitlab(api, GITLAB_PUSH, event="")
    assert code == 400 and "X-Gitlab-Event" in body["error"]
    assert await changes(api) == []


# -- the JSON-RPC action and sendchange -------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_add_action(api: Api) -> None:
    events = record_new_changes(api.data)
    result = await api.call("/api/v2/changes", "add", author="Jane <jane@example.org>", comments="fix it",
                            files=["a.c", "b.c"], branch="main", revision="abc123", repository="https://r",
                            project="p", codebase="cb", category="script", revlink="https://r/abc123",
                            when_timestamp=1700000000, properties={"ticket": 42})
    assert result == {"changeid": 1} and events == [1]
    change = (await changes(api))[0]
    assert change == {**change, "author": "Jane <jane@example.org>", "comments": "fix it", "files": ["a.c", "b.c"],
                      "branch": "main", "revision": "abc123", "repository": "https://r", "project": "p",
                      "codebase": "cb", "category": "script", "revlink": "https://r/abc123",
                      "when_timestamp": 1700000000, "properties": {"ticket": [42, "Change"]}}
    # only the author is required
    assert await api.call("/api/v2/changes", "add", author="bob") == {"changeid": 2}
    minimal = (await changes(api))[1]
    assert minimal["files"] == [] and minimal["comments"] == "" and minimal["branch"] is None

    async def refused(**params: Any) -> dict[str, str]:
        code, body = await api.rpc("/api/v2/changes", {"jsonrpc": "2.0", "id": 7, "method": "add", "params": params})
        assert code == 400 and body["error"]["code"] == -32602 and body["id"] == 7
        return body["error"]["data"]

    assert await refused(comments="no author") == {"author": "required"}
    assert await refused(author="   ") == {"author": "must not be empty"}
    assert await refused(author="a", files="a.c", when_timestamp="soon", properties=[1], branch=3, colour="red") == {
        "files": "expected a list, got str", "when_timestamp": "expected an integer, got 'soon'",
        "properties": "expected an object, got list", "branch": "expected a string, got int",
        "colour": "unknown parameter",
    }
    assert len(await changes(api)) == 2
    code, body, _ = await api.get("/api/v2")
    assert {"path": "/changes", "kind": "collection", "type": "changes", "actions": ["add"]} in body["endpoints"]


@OVER_TCP  # sendchange speaks urllib, in a thread
@pytest_twisted.ensureDeferred
async def test_sendchange_against_the_master(api: Api) -> None:
    changeid = await threads.deferToThread(
        sendchange, api.url, None, author="ci <ci@example.org>", comments="from a hook", files=["x"],
        branch="main", revision="deadbeef", repository="https://r", project="p", codebase=None,
        when_timestamp=1700000001, properties={"source": "post-receive"},
    )
    assert changeid == 1
    change = (await changes(api))[0]
    assert change["revision"] == "deadbeef" and change["codebase"] == "" and change["when_timestamp"] == 1700000001

    with pytest.raises(SendChangeError, match=r"refused the change \(HTTP 400\): invalid params: author: required"):
        await threads.deferToThread(sendchange, api.url, "some-token", comments="x")
    with pytest.raises(SendChangeError, match="must be http:// or https://"):
        sendchange("file:///etc/passwd", author="a")
    with pytest.raises(SendChangeError, match="without a change id|other than JSON|refused"):
        await threads.deferToThread(sendchange, api.url + "/change_hook/github/x", author="a")
    with pytest.raises(SendChangeError, match="cannot reach the master at http://127.0.0.1:1/"):
        await threads.deferToThread(sendchange, "http://127.0.0.1:1", author="a", timeout=5)

    # the command line: the arguments the lead wires into 'ci-master sendchange'
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--master", api.url, "-W", "Jane <j@example.org>", "-b", "dev", "-r", "cafe",
                              "-c", "msg", "-p", "ticket=7", "--when", "2024-05-06T08:00:00Z", "a.c", "b.c"])
    assert await threads.deferToThread(run, args) == 0
    change = (await changes(api))[-1]
    assert change == {**change, "author": "Jane <j@example.org>", "branch": "dev", "revision": "cafe",
                      "comments": "msg", "files": ["a.c", "b.c"], "when_timestamp": 1714982400,
                      "properties": {"ticket": ["7", "Change"]}}
    args = parser.parse_args(["--master", "http://127.0.0.1:1", "-W", "x"])
    assert await threads.deferToThread(run, args) == 1
