"""Test results end to end: a real ci-master with its ci-worker, on SQLite and PostgreSQL.

A build brings JUnit reports from the worker with ``TestResults(junit="reports/*.xml")``; REST
serves them as Buildbot's ``test_result_sets`` and ``test_results`` (same paths, field names,
counts).  A "billion laughs" report is refused, not expanded.  The one JUnit parser is also
checked alone, with the DCI and Evergreen plugins reading through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cliutil import http_get
from localsite import database_url, forced_build, running_master

pytestmark = pytest.mark.slow  # real master processes

DATA = Path(__file__).parent / "data" / "junit"

# Buildbot's field names (master/buildbot/spec/types/test_result_set.raml and test_result.raml)
SET_FIELDS = {"test_result_setid", "builderid", "buildid", "stepid", "description", "category", "value_unit",
              "tests_passed", "tests_failed", "complete"}
RESULT_FIELDS = {"test_resultid", "builderid", "test_result_setid", "test_name", "test_code_path", "line",
                 "duration_ns", "value"}

CONFIG = """
from master.config import BuilderConfig, MasterConfig
from master.engine.localworkers import LocalWorker
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.engine.testresults import TestResults

config = MasterConfig(
    db_url={db_url!r},
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[LocalWorker("w1")],
    builders=[
        BuilderConfig(name="tested", workernames=["w1"], steps=[
            ShellCommand(name="test", command="mkdir -p reports && cp {data}/report.xml reports/unit.xml"),
            TestResults(junit="reports/*.xml"),
        ]),
        BuilderConfig(name="laughs", workernames=["w1"], steps=[
            ShellCommand(name="test", command="cp {data}/laughs.xml ."),
            TestResults(junit=["laughs.xml"]),
        ]),
        BuilderConfig(name="nothing", workernames=["w1"], steps=[TestResults(junit="reports/*.xml")]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["tested", "laughs", "nothing"])],
)
"""


@pytest.fixture
def site(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    with running_master(tmp_path, CONFIG, db_url=database_url(backend, request, "junit"), data=DATA) as master:
        yield master


def test_junit_reports_become_buildbots_test_result_sets_and_results(site: dict[str, Any]) -> None:
    port = site["port"]
    build = forced_build(port, "tested")
    assert build["results"] == 2  # a test failed and one erred: the step fails
    step = http_get(port, f"/api/v2/builds/{build['buildid']}/steps?order=number")["steps"][1]
    assert step["state_string"] == "6 tests: 3 passed, 1 failed, 1 error, 1 skipped (failure)"
    sets = http_get(port, f"/api/v2/builds/{build['buildid']}/test_result_sets")
    assert sets["meta"]["total"] == 1
    (found,) = sets["test_result_sets"]
    assert set(found) == SET_FIELDS
    assert found == {
        "test_result_setid": found["test_result_setid"], "builderid": build["builderid"],
        "buildid": build["buildid"], "stepid": step["stepid"], "description": "JUnit reports/unit.xml",
        "category": "pass_fail", "value_unit": "boolean", "tests_passed": 3, "tests_failed": 2, "complete": True,
    }
    setid = found["test_result_setid"]
    for path in (f"test_result_sets/{setid}", f"steps/{step['stepid']}/test_result_sets",
                 f"builders/{build['builderid']}/test_result_sets", "builders/tested/test_result_sets"):
        assert http_get(port, f"/api/v2/{path}")["test_result_sets"] == [found], path
    results = http_get(port, f"/api/v2/test_result_sets/{setid}/results?order=test_resultid")["test_results"]
    assert all(set(result) == RESULT_FIELDS for result in results)
    by_name = {r["test_name"]: r for r in results}
    assert {name: r["value"] for name, r in by_name.items()} == {
        "app.math.test_add": "1", "app.math.test_sub": "1", "app.math.test_div": "0", "app.net.test_fetch": "0",
        "app.slow.test_small": "1",
    }
    assert by_name["app.math.test_div"]["test_code_path"] == "tests/test_math.py"
    assert by_name["app.math.test_div"]["line"] == 31
    assert by_name["app.math.test_sub"]["duration_ns"] == 500_000_000
    assert step["urls"][0]["url"].endswith(f"api/v2/test_result_sets/{setid}/results")

    refused = forced_build(port, "laughs")
    assert refused["results"] == 2
    step = http_get(port, f"/api/v2/builds/{refused['buildid']}/steps?order=number")["steps"][1]
    assert "not read: laughs.xml" in step["state_string"]
    assert http_get(port, f"/api/v2/builds/{refused['buildid']}/test_result_sets")["test_result_sets"] == []
    nothing = forced_build(port, "nothing")
    step = http_get(port, f"/api/v2/builds/{nothing['buildid']}/steps")["steps"][0]
    assert nothing["results"] == 2 and "no file matches reports/*.xml" in step["state_string"]


def test_one_parser_for_the_core_and_the_plugins() -> None:
    from master.junit import JUnitError, parse_junit
    from plugins.dci.errors import DciError
    from plugins.dci.junit import parse_junit as dci_parse
    from plugins.evergreen.junit import parse_junit as evergreen_parse

    report = (DATA / "report.xml").read_bytes()
    statuses = [(case.full_name, case.status) for case in parse_junit(report)]
    assert statuses == [
        ("app.math.test_add", "pass"), ("app.math.test_sub", "pass"), ("app.math.test_div", "fail"),
        ("app.net.test_fetch", "error"), ("app.slow.test_big", "skip"), ("app.slow.test_small", "pass"),
    ]
    assert dci_parse(report) == {"total": 6, "success": 3, "skips": 1, "failures": 1, "errors": 1, "time": 4262}
    assert [r["status"] for r in evergreen_parse(report.decode())] == ["pass", "pass", "fail", "fail", "skip", "pass"]
    laughs = (DATA / "laughs.xml").read_bytes()
    with pytest.raises(JUnitError, match="refused"):
        parse_junit(laughs)
    with pytest.raises(DciError, match="Invalid XML"):
        dci_parse(laughs)
    with pytest.raises(JUnitError, match="refused"):
        evergreen_parse(laughs.decode())
