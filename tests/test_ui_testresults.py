"""Buildbot's web UI, unmodified, shows a build's test results (the TestResults step) on the build page.

In the style of test_ui_browser (its master launcher, worker and browser fixtures): a build
brings a JUnit report with passes, failures, an error and a skip; the build page shows the
counts as the step's text, a link to the set's results (served by REST), and the failed
tests in the step's log preview, with no error in the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from test_ui_browser import Master, Ui, browser, master_with_worker, playwright, results_class  # noqa: F401

pytestmark = pytest.mark.slow  # a real master and Chromium

DATA = Path(__file__).parent / "data" / "junit"

CONFIG = """
from master.config import BuilderConfig, MasterConfig, WorkerConfig
from master.engine.schedulers import ForceScheduler
from master.engine.steps import ShellCommand
from master.engine.testresults import TestResults

config = MasterConfig(
    title="ci-master UI test",
    db_url="sqlite:///state.sqlite",
    www={{"interface": "127.0.0.1", "port": {port}}},
    workers=[WorkerConfig("w1", "s3cret")],
    builders=[
        BuilderConfig(name="tested", workernames=["w1"], steps=[
            ShellCommand(name="test", command="mkdir -p reports && cp DATA_DIR/report.xml reports/unit.xml"),
            TestResults(junit="reports/*.xml"),
        ]),
    ],
    schedulers=[ForceScheduler(name="force", builderNames=["tested"])],
)
""".replace("DATA_DIR", str(DATA))


@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    with master_with_worker(tmp_path_factory.mktemp("ui-junit"), CONFIG) as master:
        yield master


def test_the_build_page_shows_the_test_results(browser: Browser, tested: Master, tmp_path: Path) -> None:  # noqa: F811
    build = tested.finished_build(tested.force("tested"))
    sets = tested.get(f"builds/{build['buildid']}/test_result_sets")["test_result_sets"]
    assert [(s["tests_passed"], s["tests_failed"]) for s in sets] == [(3, 2)]
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    ui = Ui(context.new_page(), tested, tmp_path)
    try:
        ui.open(f"/builders/{build['builderid']}/builds/{build['number']}")
        step = ui.page.locator("#bb-step-1")
        expect(step).to_contain_text("6 tests: 3 passed, 1 failed, 1 error, 1 skipped")
        expect(step.locator(".bb-badge-round")).to_have_class(results_class("FAILURE"))
        link = step.get_by_role("link", name="reports/unit.xml: 6 tests: 3 passed, 1 failed, 1 error, 1 skipped")
        expect(link).to_have_attribute("href", f"{tested.url}api/v2/test_result_sets/{sets[0]['test_result_setid']}"
                                               "/results")
        expect(step.locator(".logpreview")).to_contain_text("FAIL app.math.test_div: ZeroDivisionError")
        expect(step.locator(".logpreview")).to_contain_text("ERROR app.net.test_fetch")
        ui.shot("test-results")
        ui.assert_clean()
    finally:
        context.close()
