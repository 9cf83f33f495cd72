"""Build steps that give Evergreen's API what ci-master does not record by itself.

* :class:`TaskCommand` is a ShellCommand that records a timeout (Evergreen's
  ``status_details.timed_out`` and ``timeout_stage``) as the build property
  ``evergreen_timeout_stage``.
* :class:`TestResults` reads a JUnit XML file the task wrote on the worker and records
  its test cases as Evergreen test results (``evergreen_test_results``).
"""

from __future__ import annotations

from typing import Any

from master.sdk import CANCELLED, FAILURE, SUCCESS, Command, CommandResult, ShellCommand, StepLog
from plugins.evergreen.junit import JUnitError, parse_junit
from plugins.evergreen.resources import TIMEOUT_PROPERTY, EvergreenTestResults


class TaskCommand(ShellCommand):
    """A ShellCommand whose timeout is recorded for Evergreen (``timed_out``, ``timeout_stage``)."""

    default_name = "task"

    async def run_command(self, command: Command, stdio: StepLog, on_output: Any = None) -> CommandResult | None:
        """Run the command; when it timed out, name this step in the build property ``evergreen_timeout_stage``."""
        result = await super().run_command(command, stdio, on_output)
        if result is not None and result.timed_out:
            await self.build.set_property(TIMEOUT_PROPERTY, self.name, "Evergreen")
        return result


class TestResults(ShellCommand):
    """Read the JUnit XML file *path* (relative to *workdir*) on the worker and record its test results.

    The file's text is kept in the step's ``stdio`` log, which each result's ``logs.url``
    points to.  The step fails when the file is missing or not a JUnit report; failed tests
    do not fail it (the command that ran them says whether the task passed).  It runs even
    after a failed step (``alwaysRun``), since failing tests are what it reports.
    """

    __test__ = False  # not a pytest test class, whatever its name
    default_name = "test results"

    def __init__(self, path: str | Any = "junit.xml", alwaysRun: bool = True, **kwargs: Any) -> None:  # noqa: N803
        super().__init__(["cat", path], alwaysRun=alwaysRun, **kwargs)
        self.path = path
        self._text: list[str] = []

    def on_output(self, stream: str, text: str) -> None:
        """Collect the file's text."""
        if stream == "o":
            self._text.append(text)

    async def run(self) -> int:
        """Read the file, parse it, record the results."""
        self._text = []
        results = await super().run()
        # descriptionDone is what the build shows once the step is done
        if results != SUCCESS:
            if results != CANCELLED:
                self.descriptionDone = f"no test results: cannot read {self.render(self.path)}"
            return results
        try:
            parsed = parse_junit("".join(self._text))
        except JUnitError as e:
            self.descriptionDone = f"no test results: {e}"
            return FAILURE
        logid = self.logs[0].logid if self.logs else None
        store = self.data.resource_type(EvergreenTestResults)
        await store.add_evergreen_test_results(self.build.id, self.id, logid, parsed)
        failed = sum(1 for result in parsed if result["status"] == "fail")
        self.descriptionDone = self.descriptionDone or f"{len(parsed)} tests, {failed} failed"
        return SUCCESS
