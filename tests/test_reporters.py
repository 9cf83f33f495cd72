"""Reporters piece by piece: repository URLs, config checks, mail modes, delivery to the stand-in forge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import sqlalchemy as sa
from cliutil import run
from forge import Forge

from master.config import ConfigError, MasterConfig, _check
from master.db import schema
from master.engine.properties import Interpolate, Properties
from master.reporters import GitHubStatusPush, GitLabStatusPush, HttpStatusPush, MailNotifier, check_reporters
from master.reporters.base import FINISH, START, BuildInfo, GiveUp, Retry
from master.reporters.forges import repository_path
from master.reporters.http import close_pool
from master.results import EXCEPTION, FAILURE, SUCCESS

GH_TOKEN = "ghp_" + "A" * 36
GL_TOKEN = "glpat-" + "B" * 20
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(("url", "path"), [
    ("https://github.com/acme/widget.git", "acme/widget"),
    ("https://github.com/acme/widget", "acme/widget"),
    ("http://github.example.org/acme/widget/", "acme/widget"),
    ("ssh://git@github.com/acme/widget.git", "acme/widget"),
    ("ssh://git@github.com:2222/acme/widget.git", "acme/widget"),
    ("git@github.com:acme/widget.git", "acme/widget"),
    ("git://github.com/acme/widget.git", "acme/widget"),
    ("https://gitlab.com/group/sub/project.git", "group/sub/project"),
    ("git@gitlab.com:group/sub/project.git", "group/sub/project"),
])
def test_repository_urls_of_every_form_give_the_path(url: str, path: str) -> None:
    assert repository_path(url) == path


@pytest.mark.parametrize("url", [None, "", "/srv/git/widget.git", "file:///srv/git/widget.git",
                                 "https://github.com/widget", "not a url", "https://github.com/../x"])
def test_other_repository_urls_give_none(url: str | None) -> None:
    assert repository_path(url) is None


@pytest.mark.parametrize(("reporter", "message"), [
    (GitHubStatusPush("not a token"), "reporters[0] (GitHubStatusPush 'GitHubStatusPush'): token: not a GitHub"),
    (GitHubStatusPush(GH_TOKEN, base_url="htp:/nowhere"), "base_url: 'htp:/nowhere' is not an http"),
    (GitHubStatusPush(GH_TOKEN, base_url="https://api.example.org:99999"), "base_url: 'https://api.example.org:99999'"),
    (GitLabStatusPush("short"), "reporters[0] (GitLabStatusPush 'GitLabStatusPush'): token: not a GitLab"),
    (GitLabStatusPush(GL_TOKEN, base_url="gitlab.example.org"), "base_url: 'gitlab.example.org' is not an http"),
    (HttpStatusPush("https://hooks example.org/x"), "reporters[0] (HttpStatusPush 'HttpStatusPush'): url:"),
    (MailNotifier("ci@example.org"), "extraRecipients: no recipient"),
    (MailNotifier("ci@example.org", mode="sometimes", extraRecipients=["a@example.org"]), "mode: unknown mode"),
    (MailNotifier("nobody", extraRecipients=["a@example.org"]), "fromaddr: expected a mail address"),
    (MailNotifier("ci@example.org", extraRecipients=["a@example.org"], smtp_user="u"), "give both or neither"),
    (GitHubStatusPush(GH_TOKEN, max_attempts=0), "max_attempts: expected a positive integer"),
    ("GitHubStatusPush", "reporters[0]: expected a reporter"),
])
def test_a_reporter_that_cannot_work_is_refused_naming_it_and_why(reporter: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as refused:
        _check(MasterConfig(reporters=[reporter]), Path("."))
    assert message in str(refused.value)


def test_two_reporters_of_one_name_are_refused_and_good_ones_pass() -> None:
    good = [GitHubStatusPush(GH_TOKEN), GitLabStatusPush(GL_TOKEN, base_url="https://gitlab.example.org"),
            HttpStatusPush("http://127.0.0.1:9/hook", headers={"X-Key": "k"}),
            MailNotifier("ci@example.org", extraRecipients=["dev@example.org"], use_tls=True)]
    check_reporters(good)
    with pytest.raises(ValueError, match=r"reporters\[1\] \(GitHubStatusPush 'GitHubStatusPush'\): another reporter"):
        check_reporters([GitHubStatusPush(GH_TOKEN), GitHubStatusPush(GH_TOKEN, context="other")])
    check_reporters([GitHubStatusPush(GH_TOKEN), GitHubStatusPush(GH_TOKEN, context="other", name="gh-other")])


@pytest.mark.slow  # runs ci-master
def test_checkconfig_refuses_a_malformed_reporter_url_naming_the_reporter(tmp_path: Path) -> None:
    master_dir = tmp_path / "master"
    assert run("create-master", str(master_dir), cwd=tmp_path).returncode == 0
    cfg = master_dir / "master.cfg"
    cfg.write_text(cfg.read_text() + (
        "\nfrom master.reporters import GitHubStatusPush\n"
        f"config.reporters = [GitHubStatusPush({GH_TOKEN!r}, base_url='https//api.github.com', name='github')]\n"
    ))
    checked = run("checkconfig", str(master_dir), cwd=tmp_path)
    assert checked.returncode != 0
    assert "reporters[0] (GitHubStatusPush 'github'): base_url: 'https//api.github.com'" in checked.stderr
    cfg.write_text(cfg.read_text().replace("https//api.github.com", "https://api.github.com"))
    checked = run("checkconfig", str(master_dir), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr


def _info(results: int | None, previous: int | None = None, props: dict | None = None) -> BuildInfo:
    return BuildInfo(
        build={"buildid": 7, "number": 3, "builderid": 2, "results": results, "state_string": "done"},
        builder={"builderid": 2, "name": "unit", "tags": ["fast"]},
        sourcestamps=[{"repository": "git@github.com:acme/widget.git", "revision": SHA, "branch": "main",
                       "codebase": ""}],
        url="http://ci.example.org/#/builders/2/builds/3",
        props=Properties({k: (v, "test") for k, v in {"buildername": "unit", **(props or {})}.items()}),
        steps=[{"name": "compile", "results": SUCCESS}, {"name": "test", "results": FAILURE}],
        previous_results=previous,
    )


@pytest.mark.parametrize(("modes", "results", "previous", "mailed"), [
    ("failing", FAILURE, None, True),
    ("failing", SUCCESS, None, False),
    ("failing", EXCEPTION, None, False),
    ("problem", FAILURE, SUCCESS, True),
    ("problem", FAILURE, FAILURE, False),
    ("change", SUCCESS, FAILURE, True),
    ("change", SUCCESS, SUCCESS, False),
    ("change", SUCCESS, None, False),
    (("passing", "exception"), EXCEPTION, None, True),
    ("all", SUCCESS, None, True),
])
def test_mail_modes_select_builds(modes: Any, results: int, previous: int | None, mailed: bool) -> None:
    notifier = MailNotifier("ci@example.org", mode=modes, extraRecipients=["dev@example.org"])
    notifier.check()
    assert notifier.matches(_info(results, previous)) is mailed


@pytest_twisted.ensureDeferred
async def test_the_mail_names_builder_result_revision_failing_step_and_url() -> None:
    notifier = MailNotifier("ci@example.org", mode="failing", extraRecipients=["dev@example.org"])
    mail = await notifier.make_report(_info(FAILURE), FINISH)
    assert mail["to"] == ["dev@example.org"]
    assert "unit" in mail["subject"] and "failure" in mail["subject"] and SHA[:12] in mail["subject"]
    for text in ("Builder:  unit", "Result:   failure", f"Revision: {SHA}", "Failing step: test",
                 "http://ci.example.org/#/builders/2/builds/3"):
        assert text in mail["body"]
    assert await notifier.make_report(_info(SUCCESS), FINISH) is None


@pytest_twisted.ensureDeferred
async def test_github_status_uses_got_revision_and_renders_the_context() -> None:
    reporter = GitHubStatusPush(GH_TOKEN, context=Interpolate("ci/%(prop:buildername)s"), base_url="http://f:1/")
    other = "fedcba9876543210fedcba9876543210fedcba98"
    start = await reporter.make_report(_info(None), START)
    assert start == {"url": f"http://f:1/repos/acme/widget/statuses/{SHA}", "body": {
        "state": "pending", "target_url": "http://ci.example.org/#/builders/2/builds/3",
        "description": "Build #3 started.", "context": "ci/unit"}}
    end = await reporter.make_report(_info(FAILURE, props={"got_revision": other}), FINISH)
    assert end["url"].endswith(f"/statuses/{other}") and end["body"]["state"] == "failure"
    gitlab = GitLabStatusPush(GL_TOKEN, context="ci", base_url="http://f:1")
    report = await gitlab.make_report(_info(EXCEPTION), FINISH)
    assert report == {"project": "acme/widget", "sha": SHA, "body": {
        "state": "failed", "name": "ci", "target_url": "http://ci.example.org/#/builders/2/builds/3",
        "description": "Build #3 done: exception.", "ref": "main"}}


@pytest.fixture
def forge() -> Any:
    started = Forge(projects={"acme/widget": 42}).start()
    yield started
    started.stop()


@pytest_twisted.ensureDeferred
async def test_delivery_sorts_the_forges_answers(forge: Forge) -> None:
    github = GitHubStatusPush(GH_TOKEN, base_url=forge.url)
    report = await github.make_report(_info(SUCCESS), FINISH)
    try:
        await github.deliver(report)
        assert forge.states(SHA) == ["success"]
        forge.fail(503)
        with pytest.raises(Retry, match="HTTP 503"):
            await github.deliver(report)
        forge.recover()
        forge.drop()
        with pytest.raises(Retry, match="connection"):
            await github.deliver(report)
        forge.recover()
        with pytest.raises(GiveUp, match="HTTP 401 .*Bad credentials"):
            await GitHubStatusPush("ghp_" + "Z" * 36, base_url=forge.url).deliver(report)
        gitlab = GitLabStatusPush(GL_TOKEN, base_url=forge.url)
        await gitlab.deliver(await gitlab.make_report(_info(SUCCESS), FINISH))
        assert forge.states(SHA, "gitlab") == ["success"] and forge.statuses[-1].repo == "acme/widget"
        lost = await gitlab.make_report(_info(SUCCESS), FINISH)
        lost["project"] = "acme/unknown"
        with pytest.raises(GiveUp, match="HTTP 404"):
            await gitlab.deliver(lost)
        hook = HttpStatusPush(forge.url + "/hook")
        await hook.deliver(await hook.make_report(_info(SUCCESS), START))
        assert forge.hooks[0]["buildid"] == 7 and forge.hooks[0]["builder"]["name"] == "unit"
    finally:
        await close_pool()


async def _until(check: Any, timeout: float = 20.0) -> None:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"not true within {timeout}s")


async def _data_api(storage: Any) -> tuple[Any, int, int]:
    """A data API on *storage* with the core resource types, one builder ("unit") and this master: (data, ids)."""
    from master.data.connector import DataAPI
    from master.data.resources import core_resource_types

    data = DataAPI(storage)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    builderid = await data.updates.update_builder("unit")
    masterid = await data.updates.master_active("m1")
    data.bind_master(masterid)
    return data, builderid, masterid


async def _one_build(data: Any, builderid: int, masterid: int, revision: str) -> int:
    stamp = {"branch": "main", "revision": revision, "repository": "https://github.com/acme/widget.git",
             "codebase": "", "project": ""}
    _, brids = await data.updates.add_buildset("force", [stamp], "test", {}, [builderid])
    buildid, _ = await data.updates.add_build(builderid, brids[builderid], None, masterid, properties=lambda b, n: {
        "buildername": ("unit", "Build")}, then_state="building")
    await data.updates.finish_build(buildid, SUCCESS, state_string="build successful")
    return buildid


@pytest_twisted.ensureDeferred
async def test_events_journaled_but_not_recorded_before_a_crash_are_reported_after_it(storage: Any,
                                                                                      forge: Forge) -> None:
    """A master killed between journaling a build's events and recording its reports reports it on restart, once."""
    from master.reporters.service import Reporters

    data, builderid, masterid = await _data_api(storage)
    reporter = GitHubStatusPush(GH_TOKEN, context="ci", base_url=forge.url, retry_delay=0.1)
    other = "fedcba9876543210fedcba9876543210fedcba98"
    try:
        first = Reporters(data, masterid, [reporter], "http://ci.example.org/")
        await first.start()
        await _one_build(data, builderid, masterid, SHA)
        await _until(lambda: forge.states(SHA) == ["pending", "success"] and first.backlog() == {"GitHubStatusPush": 0})
        await first.stop()  # what a kill leaves: nothing listens while the next build's events are journaled
        buildid = await _one_build(data, builderid, masterid, other)
        assert forge.states(other) == []
        second = Reporters(data, masterid, [GitHubStatusPush(GH_TOKEN, context="ci", base_url=forge.url)],
                           "http://ci.example.org/")
        await second.start()
        await _until(lambda: forge.states(other) == ["pending", "success"])
        await _until(lambda: second.backlog() == {"GitHubStatusPush": 0})
        await second.stop()
        # a third start finds nothing left: no status is sent twice
        third = Reporters(data, masterid, [GitHubStatusPush(GH_TOKEN, context="ci", base_url=forge.url)],
                          "http://ci.example.org/")
        await third.start()
        await third.stop()
        assert forge.states(SHA) == ["pending", "success"] and forge.states(other) == ["pending", "success"]
        assert forge.statuses[-1].target_url == f"http://ci.example.org/#/builders/{builderid}/builds/2"
        rows = await storage.fetch_all(sa.select(schema.reporter_reports).where(
            schema.reporter_reports.c.buildid == buildid))
        assert sorted((r["state"], r["delivered_at"] is not None) for r in rows) == [("finish", True), ("start", True)]
    finally:
        await close_pool()


@pytest_twisted.ensureDeferred
async def test_a_forge_that_never_answers_is_a_retry_after_the_timeout() -> None:
    """A forge that accepts the connection and stays silent (or stops in the middle of a body) is tried again."""
    import socket

    from master.reporters.http import request_json

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/repos/acme/widget/statuses/{SHA}"
    try:
        with pytest.raises(Retry, match=r"no answer within 0\.3s"):
            await request_json("POST", url, {}, {"state": "pending"}, timeout=0.3)
    finally:
        silent.close()
        await close_pool()


@pytest_twisted.ensureDeferred
async def test_reports_take_the_properties_from_the_events_without_reading_the_build_back(
        storage: Any, forge: Forge) -> None:
    """A property set after the build's start (got_revision) is in its reports; the build is never read again."""
    from master.reporters.service import Reporters

    data, builderid, masterid = await _data_api(storage)
    read: list[tuple[str, ...]] = []
    get = data.get

    async def counted(path: tuple[str, ...], *args: Any, **kwargs: Any) -> Any:
        read.append(path)
        return await get(path, *args, **kwargs)

    data.get = counted  # type: ignore[method-assign]
    got = "fedcba9876543210fedcba9876543210fedcba98"
    reporters = Reporters(data, masterid, [GitHubStatusPush(GH_TOKEN, context=Interpolate("ci/%(prop:buildername)s"),
                                                            base_url=forge.url)], "http://ci.example.org/")
    try:
        await reporters.start()
        stamp = {"branch": "main", "revision": SHA, "repository": "https://github.com/acme/widget.git",
                 "codebase": "", "project": ""}
        _, brids = await data.updates.add_buildset("force", [stamp], "test", {}, [builderid])
        buildid, _ = await data.updates.add_build(builderid, brids[builderid], None, masterid,
                                                  properties=lambda b, n: {"buildername": ("unit", "Build")})
        await data.updates.set_build_properties(buildid, {"got_revision": (got, "Git")})
        await data.updates.finish_build(buildid, FAILURE)
        await _until(lambda: forge.states(got) == ["pending", "failure"])
        assert [s.context for s in forge.statuses] == ["ci/unit", "ci/unit"]
        assert forge.states(SHA) == []
        assert ("builds", str(buildid)) not in read, read
        assert reporters._properties == {}  # the finished build's properties are not kept
    finally:
        await reporters.stop()
        await close_pool()
