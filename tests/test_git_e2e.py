"""From a push to a checked-out build, with real processes on each backend.

A commit is pushed to a bare repository (the "remote", cloned by ``file://`` URL), GitHub's push
webhook for it (the documented example payload of ``tests/data``, its sha and clone URL replaced,
signed with the hook's secret) is posted to a real ``ci-master``, whose SingleBranchScheduler's build
runs on a real ``ci-worker``: the Git step checks out exactly that sha (``got_revision``) and the next
step prints a file of that commit.  A failing commit makes a failed build, and a pull request's
``synchronize`` payload builds the pull request's head, found again by ``property.pr_number``.

The payloads keep GitHub's clone URL (``https://github.com/Codertocat/Hello-World.git``): the Git
step's ``insteadOf`` setting sends git to the local bare repository, so the GitHubStatusPush
reporter finds the repository as it would on GitHub, and reports each build's ``pending`` and
end state on its ``got_revision`` to the stand-in forge (``tests/forge.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cliutil import free_port, http_get, run
from forge import Forge
from gitrepo import Repo
from test_end_to_end import worker
from waiting import wait_until

pytestmark = pytest.mark.slow  # real master, worker and git processes

DATA = Path(__file__).parent / "data"
SECRET = "a webhook secret"
GITHUB_URL = "https://github.com/Codertocat/Hello-World.git"

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.properties import Interpolate
from master.engine.schedulers import ChangeFilter, SingleBranchScheduler
from master.engine.steps import Git, ShellCommand
from master.reporters import GitHubStatusPush

# git fetches GitHub's URL from the local bare repository (the forge cannot be reached from here)
LOCAL_GITHUB = {{"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "url.{remote}.insteadOf",
                "GIT_CONFIG_VALUE_0": {github_url!r}}}

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    change_hooks={{"github": {{"secret": {secret!r}}}}},
    workers=[WorkerConfig("w1", "s3cret")],
    reporters=[GitHubStatusPush({token!r}, context=Interpolate("ci-master/%(prop:buildername)s"),
                                base_url={forge_url!r}, retry_delay=0.2)],
    builders=[
        BuilderConfig(name="ci", workernames=["w1"], steps=[
            Git(repourl=Interpolate("%(src::repository)s"), mode="full", method="fresh", retry=(1, 2),
                env=LOCAL_GITHUB),
            ShellCommand(name="show", command=["cat", "VERSION"]),
            ShellCommand(name="test", command=["sh", "check.sh"]),
        ]),
    ],
    schedulers=[
        SingleBranchScheduler(name="main", builderNames=["ci"], branch="main"),
        SingleBranchScheduler(name="pull-requests", builderNames=["ci"], change_filter=ChangeFilter(category="pull")),
    ],
)
"""


@pytest.fixture
def site(tmp_path: Path, db_url: str) -> Iterator[dict[str, Any]]:
    port = free_port()
    master_dir = tmp_path / "master"
    repo = Repo(tmp_path / "remotes", "hello-world")
    forge = Forge().start()
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    (master_dir / "master.cfg").write_text(textwrap.dedent(CONFIG.format(
        db_url=db_url, port=port, secret=SECRET, remote=repo.url, github_url=GITHUB_URL,
        token=forge.github_token, forge_url=forge.url)))
    upgraded = run("upgrade-master", str(master_dir), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    started = run("start", str(master_dir), cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    worker_dir = tmp_path / "worker"
    try:
        made = worker("create-worker", str(worker_dir), "--master", f"http://127.0.0.1:{port}", "--name", "w1",
                      "--password", "s3cret", cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        up = worker("start", str(worker_dir), cwd=tmp_path)
        assert up.returncode == 0 and "connected" in up.stdout, (up.stdout, up.stderr)
        yield {"port": port, "repo": repo, "forge": forge}
    finally:
        worker("stop", str(worker_dir), cwd=tmp_path)
        run("stop", str(master_dir), cwd=tmp_path)
        forge.stop()


def post_github(port: int, event: str, payload: dict[str, Any]) -> dict[str, Any]:
    """POST *payload* as GitHub does: JSON, signed with X-Hub-Signature-256 over the exact bytes."""
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/change_hook/github", body, {
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-Hub-Signature-256": signature,
        "X-GitHub-Delivery": "d5a3e8f0-9c1a-11ef-8a2b-4e5f6a7b8c9d", "User-Agent": "GitHub-Hookshot/a1b2c3d"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def push_payload(repo: Repo, sha: str, message: str) -> dict[str, Any]:
    payload = json.loads((DATA / "github_push.json").read_text())
    commit = {**payload["commits"][0], "id": sha, "message": message}
    payload.update(after=sha, commits=[commit], head_commit=commit)
    assert payload["repository"]["clone_url"] == GITHUB_URL  # GitHub's, as the forge sends it
    return payload


def finished_build(port: int, changeid: int) -> dict[str, Any]:
    """The finished build of the change's buildset, with its properties."""
    def done() -> Any:
        builds = http_get(port, f"/api/v2/changes/{changeid}/builds?complete=true&property=*")["builds"]
        return builds[0] if builds else None

    return wait_until(done, timeout=60)


def step_log(port: int, buildid: int, step: str) -> str:
    url = f"http://127.0.0.1:{port}/api/v2/builds/{buildid}/steps/{step}/logs/stdio/raw_inline"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def reported(forge: Forge, sha: str, build: dict[str, Any], port: int, end: str) -> None:
    """The forge got ``pending`` then *end* for *sha*, each once, with the build's context and page."""
    wait_until(lambda: forge.states(sha, "github") == ["pending", end], timeout=30)
    target = f"http://127.0.0.1:{port}/#/builders/{build['builderid']}/builds/{build['number']}"
    for status in (s for s in forge.statuses if s.sha == sha):
        assert (status.repo, status.context, status.target_url) == ("Codertocat/Hello-World", "ci-master/ci", target)


def test_a_pushed_commit_is_built_at_exactly_that_sha(site: dict[str, Any]) -> None:
    port, repo, forge = site["port"], site["repo"], site["forge"]
    repo.commit({"VERSION": "version one\n", "check.sh": "exit 0\n"}, "first")
    good = repo.commit({"VERSION": "version two\n"}, "second")
    # the branch moves on before the build runs: the build must check out the pushed sha, not the head
    repo.commit({"VERSION": "a later commit\n"}, "third")
    repo.push()
    answer = post_github(port, "push", push_payload(repo, good, "second"))
    (changeid,) = answer["changeids"]
    build = finished_build(port, changeid)
    assert build["results"] == 0, step_log(port, build["buildid"], "git")
    assert build["properties"]["got_revision"] == [good, "Git"]
    assert build["properties"]["revision"][0] == good and build["properties"]["branch"][0] == "main"
    assert "version two\n" in step_log(port, build["buildid"], "show")
    git_log = step_log(port, build["buildid"], "git")
    assert f"got_revision: {good}" in git_log and f"checkout -f {good}" in git_log
    reported(forge, good, build, port, "success")

    # a failing commit: a failed build, checked out at its own sha
    repo.commit({"VERSION": "version three\n", "check.sh": "echo the tests fail >&2; exit 1\n"}, "break it")
    bad = repo.commit({"VERSION": "version four\n"}, "and more")
    repo.push()
    (changeid,) = post_github(port, "push", push_payload(repo, bad, "and more"))["changeids"]
    build = finished_build(port, changeid)
    assert build["results"] == 2 and build["properties"]["got_revision"] == [bad, "Git"]
    assert "version four\n" in step_log(port, build["buildid"], "show")
    assert "the tests fail" in step_log(port, build["buildid"], "test")
    steps = http_get(port, f"/api/v2/builds/{build['buildid']}/steps?order=number")["steps"]
    assert [(s["name"], s["results"]) for s in steps] == [("git", 0), ("show", 0), ("test", 2)]
    reported(forge, bad, build, port, "failure")

    # a pull request: GitHub keeps its head at refs/pull/N/head of the base repository
    repo.commit({"VERSION": "from the pull request\n", "check.sh": "exit 0\n"}, "fix it")
    head = repo.commit({"VERSION": "pull request head\n"}, "the pull request's head")
    repo.push("refs/pull/7/head")
    payload = json.loads((DATA / "github_pull_request_synchronize.json").read_text())
    pr = payload["pull_request"]
    payload.update(number=7, after=head)
    pr.update(number=7, html_url="https://github.com/Codertocat/Hello-World/pull/7")
    pr["head"]["sha"] = head
    (changeid,) = post_github(port, "pull_request", payload)["changeids"]
    build = finished_build(port, changeid)
    assert build["results"] == 0 and build["properties"]["got_revision"] == [head, "Git"]
    assert build["properties"]["branch"][0] == "refs/pull/7/head"
    assert build["properties"]["pr_number"] == [7, "Change"]
    assert build["properties"]["pr_base_branch"] == ["main", "Change"]
    assert build["properties"]["pr_title"] == ["Update the README with new information.", "Change"]
    assert "pull request head\n" in step_log(port, build["buildid"], "show")
    reported(forge, head, build, port, "success")
    # only the pull request scheduler took it; and its builds are found by their pr_number
    buildset = http_get(port, "/api/v2/buildsets?field=reason&order=-bsid&limit=1")["buildsets"][0]
    assert buildset == {"reason": "The SingleBranchScheduler scheduler named 'pull-requests' triggered this build"}
    found = http_get(port, "/api/v2/builds?property.pr_number=7&field=buildid")
    assert found == {"builds": [{"buildid": build["buildid"]}], "meta": {"total": 1}}
    assert http_get(port, "/api/v2/builds?field=buildid")["meta"]["total"] == 3

    # a closed pull request builds nothing
    closed = {**payload, "action": "closed"}
    assert post_github(port, "pull_request", closed)["changeids"] == []
    with pytest.raises(urllib.error.HTTPError) as refused:  # and an unsigned one is refused
        urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/change_hook/github", json.dumps(payload).encode(),
            {"Content-Type": "application/json", "X-GitHub-Event": "pull_request"}), timeout=10)
    assert refused.value.code == 403
