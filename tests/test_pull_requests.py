"""Pull and merge requests through the change hooks (on a real port, both backends), and ChangeFilter.

The bodies are the documented example payloads kept in ``tests/data/``, signed as the forges sign them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_twisted
import test_changehooks
from apiclient import Api
from test_changehooks import changes, github, gitlab, record_new_changes

from master.engine.schedulers import ChangeFilter, SingleBranchScheduler

DATA = Path(__file__).parent / "data"

api = test_changehooks.api  # the fixture: REST and the change hooks on a real port
logged_failures = test_changehooks.logged_failures  # no request may end in a logged traceback


def payload(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


SYNC = "github_pull_request_synchronize.json"
FORK = "github_pull_request_opened_fork.json"
MR = "gitlab_merge_request_open.json"


@pytest_twisted.ensureDeferred
async def test_github_pull_request_synchronize_makes_a_change_on_the_pull_ref(api: Api) -> None:
    events = record_new_changes(api.data)
    code, body = await github(api, payload(SYNC), event="pull_request")
    assert (code, body) == (200, {"changeids": [1]}) and events == [1]
    (change,) = await changes(api)
    assert change == {**change, "branch": "refs/pull/2/head", "category": "pull",
                      "revision": "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
                      "repository": "https://github.com/Codertocat/Hello-World.git",
                      "project": "Codertocat/Hello-World", "author": "Codertocat",
                      "comments": "Pull request #2: Update the README with new information.\n\n"
                                  "This is a pretty simple change that we need to pull into main.",
                      "revlink": "https://github.com/Codertocat/Hello-World/pull/2",
                      "when_timestamp": 1557933730, "files": []}
    assert change["properties"] == {
        "event": ["pull_request", "Change"], "pr_number": [2, "Change"],
        "pr_title": ["Update the README with new information.", "Change"], "pr_base_branch": ["main", "Change"],
        "pr_url": ["https://github.com/Codertocat/Hello-World/pull/2", "Change"],
        "pr_head_branch": ["changes", "Change"],
    }
    assert change["sourcestamp"]["revision"] == "ec26c3e57ca3a959ca5aad62de7213c562f8c821"


@pytest_twisted.ensureDeferred
async def test_github_pull_request_from_a_fork_builds_the_forks_head(api: Api) -> None:
    form = urlencode({"payload": json.dumps(payload(FORK))}).encode()  # GitHub's form content type, signed
    code, body = await github(api, form, event="pull_request", content_type="application/x-www-form-urlencoded")
    assert (code, body) == (200, {"changeids": [1]})
    (change,) = await changes(api)
    assert change["repository"] == "https://github.com/octocat/Hello-World.git"  # the fork's clone URL
    assert change["revision"] == "6dcb09b5b57875f334f61aebed695e2e4193db5e"
    assert change["project"] == "Codertocat/Hello-World" and change["branch"] == "refs/pull/5/head"
    assert change["comments"] == "Pull request #5: Fix the greeting's typo"  # a null body
    assert change["properties"]["pr_number"] == [5, "Change"]


@pytest_twisted.ensureDeferred
async def test_github_pull_request_actions(api: Api) -> None:
    for action in ("closed", "edited", "labeled", "assigned"):
        code, body = await github(api, {**payload(SYNC), "action": action}, event="pull_request")
        assert code == 200 and body["changeids"] == [], action
        assert f"action {action!r} is not built" in body["ignored"]
    code, body = await github(api, {**payload(SYNC), "action": "reopened"}, event="pull_request")
    assert (code, body) == (200, {"changeids": [1]})
    code, body = await github(api, {**payload(FORK), "action": "opened"}, event="pull_request")
    assert (code, body) == (200, {"changeids": [2]})
    gone = payload(FORK)
    gone["pull_request"]["head"]["repo"] = None  # the fork was deleted
    code, body = await github(api, gone, event="pull_request")
    assert code == 200 and body["ignored"] == "the head repository of pull request #5 no longer exists"
    assert len(await changes(api)) == 2


@pytest_twisted.ensureDeferred
async def test_github_pull_request_bad_payloads_and_signature(api: Api) -> None:
    no_sha = payload(SYNC)
    del no_sha["pull_request"]["head"]["sha"]
    bad_number = payload(SYNC)
    bad_number["pull_request"]["number"] = "2"
    no_base = payload(SYNC)
    no_base["pull_request"]["base"] = []
    cases = {
        "payload: pull_request.head.sha is missing": no_sha,
        "payload: pull_request.number must be an integer": bad_number,
        "payload: pull_request.base must be an object, got list": no_base,
        "payload: pull_request is missing": {"action": "opened", "number": 1},
    }
    for message, body in cases.items():
        code, answer = await github(api, body, event="pull_request")
        assert (code, answer) == (400, {"error": message})
    code, answer = await github(api, payload(SYNC), event="pull_request", signature=None)
    assert code == 403
    assert await changes(api) == []


@pytest_twisted.ensureDeferred
async def test_gitlab_merge_request_events(api: Api) -> None:
    code, body = await gitlab(api, payload(MR), event="Merge Request Hook")
    assert (code, body) == (200, {"changeids": [1]})
    (change,) = await changes(api)
    assert change == {**change, "branch": "ms-viewport", "category": "pull",
                      "revision": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
                      "repository": "http://example.com/awesome_space/awesome_project.git",  # the source project
                      "project": "gitlabhq/gitlab-test", "author": "GitLab dev user <gitlabdev@dv6700.(none)>",
                      "comments": "Merge request !1: MS-Viewport", "when_timestamp": 1325626589}
    assert change["properties"] == {
        "event": ["merge_request", "Change"], "pr_number": [1, "Change"], "pr_title": ["MS-Viewport", "Change"],
        "pr_base_branch": ["master", "Change"], "pr_url": ["http://example.com/diaspora/merge_requests/1", "Change"],
    }
    update = payload(MR)
    update["object_attributes"]["action"] = "update"
    code, body = await gitlab(api, update, event="Merge Request Hook")
    assert code == 200 and body["ignored"] == "merge request !1 was updated without new commits"
    update["object_attributes"]["oldrev"] = "95790bf891e76fee5e1747ab589903a6a1f80f22"
    update["object_attributes"]["last_commit"]["id"] = "a" * 40
    code, body = await gitlab(api, update, event="Merge Request Hook")
    assert (code, body) == (200, {"changeids": [2]})
    assert (await changes(api))[-1]["revision"] == "a" * 40
    for action in ("close", "merge", "approved"):
        closed = payload(MR)
        closed["object_attributes"]["action"] = action
        code, body = await gitlab(api, closed, event="Merge Request Hook")
        assert code == 200 and f"action {action!r} is not built" in body["ignored"]
    broken = copy.deepcopy(payload(MR))
    del broken["object_attributes"]["last_commit"]
    code, body = await gitlab(api, broken, event="Merge Request Hook")
    assert (code, body) == (400, {"error": "payload: object_attributes.last_commit is missing"})
    code, body = await gitlab(api, payload(MR), event="Merge Request Hook", token="wrong")
    assert code == 403
    assert len(await changes(api)) == 2


# -- selecting them ----------------------------------------------------------------------------------


def test_change_filter() -> None:
    pull = {"branch": "refs/pull/2/head", "category": "pull", "project": "o/r", "repository": "u", "codebase": ""}
    push = {**pull, "branch": "main", "category": "push"}
    assert ChangeFilter(category="pull").matches(pull) and not ChangeFilter(category="pull").matches(push)
    assert ChangeFilter(branch=["main", "dev"]).matches(push) and not ChangeFilter(branch="dev").matches(push)
    assert ChangeFilter(branch_re=r"^refs/pull/").matches(pull) and not ChangeFilter(branch_re="^x").matches(pull)
    assert ChangeFilter(category="pull", project="o/r", filter_fn=lambda c: "2" in c["branch"]).matches(pull)
    assert not ChangeFilter(category="pull", filter_fn=lambda c: False).matches(pull)
    assert ChangeFilter(branch=None).matches({**push, "branch": None}) and not ChangeFilter(branch=None).matches(push)
    assert ChangeFilter(category="pull") == ChangeFilter(category="pull") != ChangeFilter(category="push")
    with pytest.raises(ValueError, match="branch_re"):
        ChangeFilter(branch_re="(")


def test_single_branch_scheduler_with_a_change_filter() -> None:
    prs = SingleBranchScheduler("prs", ["b"], change_filter=ChangeFilter(category="pull"))
    main = SingleBranchScheduler("main", ["b"], branch="main")
    pull = {"branch": "refs/pull/2/head", "category": "pull", "project": "o/r", "repository": "u", "codebase": ""}
    push = {**pull, "branch": "main", "category": "push"}
    assert prs.matches(pull) and not prs.matches(push)
    assert main.matches(push) and not main.matches(pull)
    scoped = SingleBranchScheduler("x", ["b"], change_filter=ChangeFilter(category="pull"), project="other")
    assert not scoped.matches(pull)
    with pytest.raises(ValueError, match="either branch or change_filter"):
        SingleBranchScheduler("both", ["b"], branch="main", change_filter=ChangeFilter(category="pull"))
    with pytest.raises(ValueError, match="must be a ChangeFilter"):
        SingleBranchScheduler("bad", ["b"], change_filter={"category": "pull"})


def test_the_samples_commented_git_and_pull_request_examples_load(tmp_path: Path) -> None:
    """Uncommented, master.cfg.sample's Git builder, schedulers and change hook make a valid config."""
    from master.config import load_config

    lines = (Path(__file__).parent.parent / "master" / "master.cfg.sample").read_text().splitlines()
    out, inside = [], False
    for line in lines:
        indent, hashed, content = line.partition("# ")
        example = bool(hashed) and indent.strip() == "" and indent != ""
        if example and content.startswith(("BuilderConfig(", "SingleBranchScheduler(", "change_hooks=")):
            inside = not content.startswith("change_hooks=")
            out.append(indent + content)
        elif example and inside and content[:1] in (" ", ")"):
            out.append(indent + content)
        else:
            inside = False
            out.append(line)
    text = "\n".join(out).replace("config = MasterConfig(", "from master.engine.steps import Git\n"
                                  "from master.engine.schedulers import ChangeFilter, SingleBranchScheduler\n\n"
                                  "config = MasterConfig(", 1)
    assert text.count("SingleBranchScheduler(name=") == 2 and 'Git(repourl="https://github.com' in text
    (tmp_path / "master.cfg").write_text(text)
    config = load_config(tmp_path)
    assert [b.name for b in config.builders] == ["demo", "app"]
    assert [s.name for s in config.schedulers] == ["force", "main", "pull-requests"]
    assert config.schedulers[2].change_filter == ChangeFilter(category="pull")
    assert list(config.change_hooks) == ["github"]
    assert type(config.builders[1].steps[0]).__name__ == "Git" and config.builders[1].steps[0].method == "fresh"
