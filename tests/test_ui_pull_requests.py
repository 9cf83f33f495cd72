"""Buildbot's web UI (headless chromium) shows what the Git step and a pull request give a build.

A real master and ``ci-worker`` (the helpers of ``test_ui_browser.py``); a pull request's signed
``pull_request`` webhook builds its head from a bare ``file://`` repository; the build's page lists
``got_revision`` and the pull request's properties on its Build Properties tab.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_ui_browser
from gitrepo import Repo
from playwright.sync_api import expect
from test_ui_browser import Master, Ui, master_with_worker
from waiting import wait_until

pytestmark = pytest.mark.slow  # a real master and Chromium

DATA = Path(__file__).parent / "data"
SECRET = "ui webhook secret"

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ChangeFilter, SingleBranchScheduler
from master.engine.steps import Git, ShellCommand

config = MasterConfig(
    title="ci-master pull requests",
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    change_hooks={{"github": {{"secret": "ui webhook secret"}}}},
    workers=[WorkerConfig("w1", "s3cret")],
    builders=[BuilderConfig(name="pr-builder", workernames=["w1"], steps=[
        Git(), ShellCommand(name="show", command=["cat", "VERSION"])])],
    schedulers=[SingleBranchScheduler(name="prs", builderNames=["pr-builder"],
                                      change_filter=ChangeFilter(category="pull"))],
)
"""

playwright = test_ui_browser.playwright  # module fixtures: one browser for the module
browser = test_ui_browser.browser
ui = test_ui_browser.ui


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """A master with worker w1 connected (the fixture ``ui`` opens pages on it)."""
    with master_with_worker(tmp_path_factory.mktemp("ui-pr-master"), CONFIG) as master:
        yield master


def pull_request_build(master: Master, repo: Repo, number: int, head: str) -> dict[str, Any]:
    payload = json.loads((DATA / "github_pull_request_synchronize.json").read_text())
    pr = payload["pull_request"]
    payload.update(number=number, after=head)
    pr.update(number=number, html_url=f"https://github.com/Codertocat/Hello-World/pull/{number}")
    pr["head"]["sha"] = head
    pr["head"]["repo"]["clone_url"] = repo.url
    body = json.dumps(payload).encode()
    request = urllib.request.Request(f"{master.url}change_hook/github", body, {
        "Content-Type": "application/json", "X-GitHub-Event": "pull_request",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()})
    with urllib.request.urlopen(request, timeout=10) as response:
        (changeid,) = json.load(response)["changeids"]
    return wait_until(lambda: (master.get(f"changes/{changeid}/builds?complete=true")["builds"] or [None])[0],
                      "the pull request's build", timeout=60)


def test_the_build_page_shows_got_revision_and_the_pull_request(ui: Ui, master: Master, tmp_path: Path) -> None:
    repo = Repo(tmp_path / "remotes")
    repo.commit({"VERSION": "base\n"})
    repo.push()
    head = repo.commit({"VERSION": "pull request 12\n"}, "the change under review")
    repo.push("refs/pull/12/head")
    build = pull_request_build(master, repo, 12, head)
    assert build["results"] == 0
    page = ui.page
    ui.open(f"/builders/{build['builderid']}/builds/{build['number']}")
    expect(page.locator(".bb-build-summary").first).to_contain_text("SUCCESS")
    page.get_by_text("Build Properties", exact=True).click()
    rows = page.locator("table tbody tr")
    expect(rows.filter(has_text="got_revision")).to_contain_text(head)
    expect(rows.filter(has_text="got_revision")).to_contain_text("Git")
    expect(rows.filter(has_text="pr_number")).to_contain_text("12")
    expect(rows.filter(has_text="pr_title")).to_contain_text("Update the README with new information.")
    expect(rows.filter(has_text="pr_base_branch")).to_contain_text("main")
    expect(rows.filter(has_text="pr_url")).to_contain_text("https://github.com/Codertocat/Hello-World/pull/12")
    ui.shot("pull-request-build-properties")
    ui.assert_clean()
