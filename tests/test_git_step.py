"""The Git source step with Debian's real ``git``: bare repositories in a temporary directory as the remote.

Builds run on the engine with workers running real local subprocesses (``tests/test_engine.py``'s
LocalWorker); the storage is SQLite only here (the step writes through the data API like every step;
both backends are covered by the end-to-end test in ``test_git_e2e.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import test_engine
from gitrepo import ALLOW_FILE_PROTOCOL, Repo, git
from test_engine import BuilderSpec, Config, Master
from waiting import wait_for

from master.engine.properties import Interpolate, Properties, Property
from master.engine.source import Git
from master.engine.steps import Git as ExportedGit
from master.engine.steps import ShellCommand
from master.results import CANCELLED, EXCEPTION, FAILURE, SUCCESS

pytestmark = pytest.mark.slow  # real git processes


@pytest.fixture
def backend() -> str:
    """SQLite only (see the module's documentation)."""
    return "sqlite"


masters = test_engine.masters  # the fixture: a factory of masters with in-process workers


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "remotes")


async def start(masters: Any, *steps: Any, name: str = "m1") -> Master:
    """A master *name* with one builder, ``b-<name>``, of *steps* (several masters of a test share the
    database: their own builder each keeps one from building the other's requests)."""
    master = await masters(Config([BuilderSpec(f"b-{name}", ["w1"], list(steps))]), name=name)
    await master.attach("w1")
    return master


def builder_of(master: Master) -> Any:
    (builder,) = master.engine.builders.values()
    return builder


async def build(master: Master, properties: dict[str, Any] | None = None, **stamp: Any) -> dict[str, Any]:
    """Run one build of builder b for a source stamp of *stamp*; the finished build with its properties."""
    builderid = builder_of(master).builderid
    props = {name: (value, "test") for name, value in (properties or {}).items()}
    _, brids = await master.data.updates.add_buildset(None, [stamp] if stamp else [], "test", props, [builderid])
    done = await master.build_done((await master.first_build(brids[builderid]))["buildid"])
    return await master.data.get(("builds", str(done["buildid"])), query={"property": ["*"]})


async def step_log(master: Master, buildid: int, number: int = 0) -> str:
    return await master.log_text((await master.steps(buildid))[number]["stepid"])


def workdir(master: Master, name: str = "build") -> Path:
    return master.basedir / "w1" / builder_of(master).name / name


def got(build: dict[str, Any]) -> Any:
    return build["properties"]["got_revision"][0]


# -- without a build ---------------------------------------------------------------------------------


def test_options_are_checked_when_configured() -> None:
    assert ExportedGit is Git  # master.cfg imports steps from master.engine.steps
    assert Git("u").method is None and Git("u", mode="full").method == "fresh"
    with pytest.raises(ValueError, match="mode must be one of incremental, full"):
        Git("u", mode="partial")
    with pytest.raises(ValueError, match="method='clobber' applies only to mode='full'"):
        Git("u", method="clobber")
    with pytest.raises(ValueError, match="method must be one of"):
        Git("u", mode="full", method="wipe")
    with pytest.raises(ValueError, match="shallow must be"):
        Git("u", shallow=0)
    with pytest.raises(ValueError, match="retry must be"):
        Git("u", retry=(1,))
    with pytest.raises(ValueError, match="must stay inside"):
        Git("u", workdir="../elsewhere")
    assert Git("u", mode=Interpolate("%(prop:m)s")).method is None  # renderables are checked at run time


def test_interpolate_source_stamp_placeholders() -> None:
    props = Properties()
    props.sourcestamps = [
        {"codebase": "", "revision": "abc123", "branch": "main", "repository": "https://h/r.git", "project": "p"},
        {"codebase": "lib", "revision": None, "branch": "dev", "repository": "https://h/lib.git", "project": ""},
    ]
    assert Interpolate("%(src::revision)s %(src::branch)s %(src::repository)s").render(props) == (
        "abc123 main https://h/r.git")
    assert Interpolate("%(src:lib:branch)s|%(src:lib:revision:-tip)s|%(src:nope:branch:-none)s|"
                       "%(src::project:+yes)s").render(props) == "dev|tip|none|yes"
    with pytest.raises(KeyError, match="no source stamp attribute 'author'"):
        Interpolate("%(src::author)s").render(props)
    with pytest.raises(KeyError, match="src:CODEBASE:ATTR"):
        Interpolate("%(src:revision)s").render(props)


# -- modes and methods -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_incremental_checks_out_each_revision_and_keeps_the_tree(masters: Any, repo: Repo) -> None:
    first = repo.commit({"hello.txt": "one\n", ".gitignore": "*.o\n"}, "first")
    second = repo.commit({"hello.txt": "two\n"}, "second")
    repo.push()
    master = await start(masters, Git(repo.url), ShellCommand(["cat", "hello.txt"], name="cat"))
    done = await build(master, branch="main", revision=first, repository=repo.url, codebase="")
    assert done["results"] == SUCCESS and got(done) == first
    assert "one\n" in await step_log(master, done["buildid"], 1)
    (workdir(master) / "untracked.txt").write_text("stays")
    (workdir(master) / "obj.o").write_text("stays")
    done = await build(master, branch="main", revision=second, repository=repo.url, codebase="")
    assert done["results"] == SUCCESS and got(done) == second
    assert "two\n" in await step_log(master, done["buildid"], 1)
    assert (workdir(master) / "untracked.txt").exists() and (workdir(master) / "obj.o").exists()
    text = await step_log(master, done["buildid"])
    assert f"hgit fetch -f --tags {repo.url} {second}\n" in text and f"got_revision: {second}" in text
    step = (await master.steps(done["buildid"]))[0]
    assert step["name"] == "git" and step["state_string"] == "update"


@pytest_twisted.ensureDeferred
async def test_no_revision_builds_the_branch_head(masters: Any, repo: Repo) -> None:
    repo.commit({"a": "1"})
    repo.push("refs/heads/main")
    head = repo.commit({"a": "2"})
    repo.push("refs/heads/dev")
    master = await start(masters, Git(repo.url, branch="main"))
    done = await build(master, branch="dev", repository=repo.url)  # the stamp's branch wins over the step's
    assert done["results"] == SUCCESS and got(done) == head
    done = await build(master, properties={"x": 1})  # no source stamp: the step's branch
    assert got(done) == git("rev-parse", "main", cwd=repo.bare)
    # alwaysUseLatest ignores the stamp's revision
    master2 = await start(masters, Git(repo.url, alwaysUseLatest=True), name="m2")
    done = await build(master2, branch="dev", revision=git("rev-parse", "main", cwd=repo.bare), repository=repo.url)
    assert got(done) == head


@pytest_twisted.ensureDeferred
async def test_full_fresh_and_clean(masters: Any, repo: Repo) -> None:
    sha = repo.commit({"f.txt": "x", ".gitignore": "*.o\n"})
    repo.push()
    master = await start(masters, Git(repo.url, mode="full", method="fresh"))
    assert got(await build(master, branch="main", revision=sha)) == sha
    marker = workdir(master) / ".git" / "kept-by-fresh"
    marker.write_text("the repository is reused")
    (workdir(master) / "untracked.txt").write_text("goes")
    (workdir(master) / "obj.o").write_text("goes too")
    (workdir(master) / "f.txt").write_text("local edit")
    assert got(await build(master, branch="main", revision=sha)) == sha
    assert marker.exists() and not (workdir(master) / "untracked.txt").exists()
    assert not (workdir(master) / "obj.o").exists() and (workdir(master) / "f.txt").read_text() == "x"

    master2 = await start(masters, Git(repo.url, mode="full", method="clean"), name="m2")
    await build(master2, branch="main", revision=sha)
    (workdir(master2) / "untracked.txt").write_text("goes")
    (workdir(master2) / "obj.o").write_text("ignored: stays")
    done = await build(master2, branch="main", revision=sha)
    assert done["results"] == SUCCESS and "hgit clean -f -f -d\n" in await step_log(master2, done["buildid"])
    assert not (workdir(master2) / "untracked.txt").exists() and (workdir(master2) / "obj.o").exists()


@pytest_twisted.ensureDeferred
async def test_full_clobber_and_copy(masters: Any, repo: Repo) -> None:
    sha = repo.commit({"f.txt": "x"})
    repo.push()
    master = await start(masters, Git(repo.url, mode="full", method="clobber"))
    await build(master, branch="main", revision=sha)
    marker = workdir(master) / ".git" / "marker"
    marker.write_text("gone after a clobber")
    done = await build(master, branch="main", revision=sha)
    assert done["results"] == SUCCESS and got(done) == sha and not marker.exists()
    assert (workdir(master) / "f.txt").read_text() == "x"

    master2 = await start(masters, Git(repo.url, mode="full", method="copy"), name="m2")
    await build(master2, branch="main", revision=sha)
    source_marker = workdir(master2, "source") / ".git" / "marker"
    source_marker.write_text("the source repository is kept")
    (workdir(master2) / "built.o").write_text("goes with the old copy")
    newer = repo.commit({"f.txt": "y"})
    repo.push()
    done = await build(master2, branch="main", revision=newer)
    assert done["results"] == SUCCESS and got(done) == newer
    assert source_marker.exists() and not (workdir(master2) / "built.o").exists()
    assert (workdir(master2) / "f.txt").read_text() == "y" and (workdir(master2) / ".git").is_dir()


@pytest_twisted.ensureDeferred
async def test_shallow(masters: Any, repo: Repo) -> None:
    for n in range(4):
        sha = repo.commit({"n": str(n)})
    repo.push()
    master = await start(masters, Git(repo.url, shallow=True))
    done = await build(master, branch="main", revision=sha)
    assert done["results"] == SUCCESS and got(done) == sha
    assert git("rev-parse", "--is-shallow-repository", cwd=workdir(master)) == "true"
    assert git("rev-list", "--count", "HEAD", cwd=workdir(master)) == "1"
    master2 = await start(masters, Git(repo.url, shallow=2, alwaysUseLatest=True), name="m2")
    await build(master2, branch="main")
    assert git("rev-list", "--count", "HEAD", cwd=workdir(master2)) == "2"


@pytest_twisted.ensureDeferred
async def test_submodules(masters: Any, repo: Repo, tmp_path: Path) -> None:
    lib = Repo(tmp_path / "remotes", "lib")
    lib_sha = lib.commit({"lib.txt": "library v1"})
    lib.push()
    git("submodule", "--quiet", "add", lib.url, "vendor/lib", cwd=repo.work)
    sha = repo.commit({"main.txt": "uses lib"})
    repo.push()
    master = await start(masters, Git(repo.url, submodules=True, env=ALLOW_FILE_PROTOCOL),
                         ShellCommand(["cat", "vendor/lib/lib.txt"], name="cat"))
    done = await build(master, branch="main", revision=sha)
    assert done["results"] == SUCCESS, await step_log(master, done["buildid"])
    assert "library v1" in await step_log(master, done["buildid"], 1)
    assert git("rev-parse", "HEAD", cwd=workdir(master) / "vendor" / "lib") == lib_sha
    without = await start(masters, Git(repo.url), name="m2")
    await build(without, branch="main", revision=sha)
    assert not (workdir(without) / "vendor" / "lib" / "lib.txt").exists()


# -- source stamps, renderables, forks ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_repourl_from_the_stamp_and_renderables(masters: Any, repo: Repo) -> None:
    sha = repo.commit({"f": "1"})
    repo.push("refs/heads/topic")
    master = await start(masters, Git(branch=Interpolate("%(prop:which)s"), workdir=Interpolate("w-%(prop:which)s"),
                                      mode=Interpolate("%(prop:mode)s"), method=Property("method")))
    done = await build(master, properties={"which": "topic", "mode": "full", "method": "clobber"},
                       repository=repo.url, codebase="")
    assert done["results"] == SUCCESS and got(done) == sha and (workdir(master, "w-topic") / "f").exists()
    bad = await build(master, properties={"which": "topic", "mode": "incremental", "method": "clobber"},
                      repository=repo.url)
    assert bad["results"] == EXCEPTION
    assert "bad configuration: Git: method='clobber' applies only to mode='full'" in await step_log(
        master, bad["buildid"])
    none = await start(masters, Git(), name="m2")
    nothing = await build(none, properties={"x": 1})
    assert nothing["results"] == EXCEPTION and "names no repository" in await step_log(none, nothing["buildid"])


@pytest_twisted.ensureDeferred
async def test_a_fork_head_is_fetched_by_its_sha(masters: Any, repo: Repo, tmp_path: Path) -> None:
    base = repo.commit({"f": "base"})
    repo.push()
    fork = Repo(tmp_path / "remotes", "fork")
    git("fetch", "--quiet", repo.url, "main", cwd=fork.work)
    git("reset", "--quiet", "--hard", "FETCH_HEAD", cwd=fork.work)
    head = fork.commit({"f": "from the fork"})
    fork.push("refs/heads/feature")
    # the hook's change for a fork's pull request: the base's PR ref, the fork's URL, the head sha
    master = await start(masters, Git())
    done = await build(master, branch="refs/pull/7/head", revision=head, repository=fork.url)
    assert done["results"] == SUCCESS and got(done) == head != base
    assert (workdir(master) / "f").read_text() == "from the fork"


@pytest_twisted.ensureDeferred
async def test_codebase_sets_got_revision_per_codebase(masters: Any, repo: Repo) -> None:
    sha = repo.commit({"f": "1"})
    repo.push()
    master = await start(masters, Git(repo.url, codebase=Interpolate("%(prop:cb)s"), workdir="app"))
    done = await build(master, properties={"cb": "app"}, branch="main", revision=sha, repository=repo.url,
                       codebase="app")
    assert got(done) == {"app": sha}


# -- failures and retries ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_fetch_retries_then_fails_with_gits_error(masters: Any, tmp_path: Path) -> None:
    missing = (tmp_path / "no-such-repo.git").as_uri()
    master = await start(masters, Git(missing, retry=(0.1, 2)), ShellCommand(["true"], name="after"))
    done = await build(master, branch="main")
    assert done["results"] == FAILURE
    text = await step_log(master, done["buildid"])
    assert "fetch failed (attempt 1 of 3); retrying in 0.1 s" in text and "(attempt 2 of 3)" in text
    assert f"fetch of {missing} failed after 3 attempt(s)" in text
    assert text.count(f"hgit fetch -f --tags {missing} main\n") == 3
    assert "efatal:" in text and "does not appear to be a git repository" in text  # git's own error
    assert "got_revision" not in done["properties"]
    steps = await master.steps(done["buildid"])
    assert steps[0]["results"] == FAILURE and steps[0]["state_string"] == "update (failure)"


@pytest_twisted.ensureDeferred
async def test_fetch_retry_succeeds_once_the_remote_answers(masters: Any, repo: Repo, tmp_path: Path) -> None:
    sha = repo.commit({"f": "1"})
    repo.push()
    later = tmp_path / "later.git"
    master = await start(masters, Git(later.as_uri(), retry=(0.3, 50)))
    builderid = builder_of(master).builderid
    _, brids = await master.data.updates.add_buildset(None, [{"branch": "main", "revision": sha}], "t", {}, [builderid])
    buildid = (await master.first_build(brids[builderid]))["buildid"]

    async def failed_once() -> bool:
        steps = await master.steps(buildid)
        return bool(steps) and "(attempt 1 of 51)" in await step_log(master, buildid)

    await wait_for(failed_once, what="a first failed fetch")
    repo.bare.rename(later)  # the remote comes back
    done = await master.build_done(buildid)
    assert done["results"] == SUCCESS
    text = await step_log(master, buildid)
    assert f"got_revision: {sha}" in text and "failed after" not in text


@pytest_twisted.ensureDeferred
async def test_an_unknown_revision_fails_the_checkout(masters: Any, repo: Repo) -> None:
    repo.commit({"f": "1"})
    repo.push()
    master = await start(masters, Git(repo.url))
    done = await build(master, branch="main", revision="0123456789abcdef0123456789abcdef01234567")
    assert done["results"] == FAILURE
    text = await step_log(master, done["buildid"])
    assert "could not check out 0123456789abcdef0123456789abcdef01234567" in text and "efatal:" in text


@pytest_twisted.ensureDeferred
async def test_stopping_the_build_ends_the_pause_between_fetches(masters: Any, tmp_path: Path) -> None:
    missing = (tmp_path / "no-such-repo.git").as_uri()
    master = await start(masters, Git(missing, retry=(600, 3)))
    builderid = builder_of(master).builderid
    _, brids = await master.data.updates.add_buildset(None, [{"branch": "main"}], "t", {}, [builderid])
    buildid = (await master.first_build(brids[builderid]))["buildid"]

    async def pausing() -> bool:
        steps = await master.steps(buildid)
        return bool(steps) and "retrying in 600 s" in await step_log(master, buildid)

    await wait_for(pausing, what="the pause after a failed fetch")
    await master.engine.stop_build(buildid, "enough")
    done = await master.build_done(buildid)  # well before the 600 s pause would end
    assert done["results"] == CANCELLED
    assert "not retried: enough" in await step_log(master, buildid)
