"""The ``TestResults`` step: JUnit XML reports from the worker, parsed on the master into test results.

``TestResults(junit="reports/*.xml")`` (a pattern, or a list of them, relative to the step's
``workdir`` on the worker) finds the matching files on the worker, brings each over the worker's
WebSocket (at most ``maxsize`` bytes, 20 MiB by default), parses it on the master with the
core's safe parser (:mod:`master.junit`; a document declaring entities is refused) and records
it as a test result set of the build (Buildbot's ``test_result_sets``: category ``pass_fail``,
value unit ``boolean``) with one test result per test case (value ``1`` passed, ``0`` failed or
erred; skipped cases are counted in the log and the description, not as results).

The step fails when no file matches, a file is not a JUnit report, or a test failed or erred
(``flunkOnFailure=False, warnOnFailure=True`` makes failed tests a warning instead).  It runs
after a failed step too (``alwaysRun``), since failed tests are what it reports.  Its state
string counts the tests; its log lists each failure; its links lead to each set's results.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from twisted.internet import threads

from master.engine.filelink import TransferFailed
from master.engine.interfaces import Command
from master.engine.steps import StepLog
from master.engine.transfer import _TransferStep
from master.junit import ERROR, FAILED, PASSED, SKIPPED, JUnitError, TestCase, count, parse_junit
from master.results import FAILURE, SUCCESS

DEFAULT_MAXSIZE = 20 * 1024 * 1024
GLOB_CHARS = "*?[]"
PLAIN = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+,@%=:")


def shell_pattern(pattern: str) -> str:
    """*pattern* for ``sh``: its glob characters kept, every other special character escaped."""
    return "".join(c if c in PLAIN or c in GLOB_CHARS else "\\" + c for c in pattern)


def result_rows(cases: Sequence[TestCase]) -> list[dict[str, Any]]:
    """The test results of a pass_fail/boolean set: one per case that passed, failed or erred."""
    return [{
        "test_name": case.full_name, "test_code_path": case.file, "line": case.line,
        "duration_ns": case.duration_ns, "value": "1" if case.status == PASSED else "0",
    } for case in cases if case.status != SKIPPED]


def summary(counts: dict[str, int]) -> str:
    """``6 tests: 3 passed, 1 failed, 1 error, 1 skipped`` (the parts that are not zero)."""
    total = sum(counts.values())
    parts = [f"{counts[PASSED]} passed"]
    parts += [f"{counts[k]} {word}" for k, word in ((FAILED, "failed"), (ERROR, "error"), (SKIPPED, "skipped"))
              if counts[k]]
    return f"{total} test{'s' if total != 1 else ''}: {', '.join(parts)}"


class TestResults(_TransferStep):
    """Read JUnit XML reports matching *junit* on the worker into the build's test results (see the module)."""

    __test__ = False  # not a pytest class, whatever its name
    default_name = "test results"
    description_verb = ("reading test results", "test results")

    def __init__(self, junit: str | Sequence[str] | Any, maxsize: int | None = DEFAULT_MAXSIZE,
                 alwaysRun: bool = True, **kwargs: Any) -> None:  # noqa: N803 (Buildbot's name)
        super().__init__(maxsize=maxsize, alwaysRun=alwaysRun, **kwargs)
        self.junit = junit
        self._summary: str | None = None

    def describe(self, done: bool) -> str:
        """The counts once done."""
        if done and self._summary is not None and self._why is None and not self.descriptionDone:
            return self._summary
        return super().describe(done)

    async def _matching(self, stdio: StepLog, patterns: list[str]) -> list[str]:
        """The files on the worker that match *patterns*, in order, each once."""
        loops = "; ".join(f'for f in {shell_pattern(p)}; do [ -f "$f" ] && printf \'%s\\n\' "$f"; done'
                          for p in patterns)
        out: list[str] = []
        command = Command(shell=f"{loops}; true", builder=self.build.builder.name,
                          workdir=str(self.render(self.workdir)), timeout=60)
        result = await self.build.worker.run(command, lambda stream, text: out.append(text) if stream == "o" else None
                                             ).result
        if result.rc != 0:
            raise TransferFailed(f"could not list the files matching {', '.join(patterns)} (exit {result.rc})")
        files = list(dict.fromkeys(line for line in "".join(out).splitlines() if line))
        stdio.add_header(f"{len(files)} file(s) match {', '.join(patterns)}")
        return files

    async def transfer(self, stdio: StepLog) -> None:
        """Find the reports, bring and parse each, record its results."""
        junit = self.render(self.junit)
        patterns = [junit] if isinstance(junit, str) else [str(p) for p in junit]
        self._what = ", ".join(patterns)
        await self.set_state(self.describe(False))
        files = await self._matching(stdio, patterns)
        if not files:
            raise TransferFailed(f"no file matches {self._what}")
        totals = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0}
        refused = []
        for path in files:
            sink = io.BytesIO()
            build = self.build
            await self._await(self._files().upload(
                sink, builder=build.builder.name, workdir=str(self.render(self.workdir)), path=path, kind="file",
                maxsize=self.maxsize))
            try:
                cases = await threads.deferToThread(parse_junit, sink.getvalue())
            except JUnitError as e:
                stdio.add_header(f"{path}: {e}")
                refused.append(path)
                continue
            counts = count(cases)
            for kind in totals:
                totals[kind] += counts[kind]
            await self._record(path, cases, counts)
            stdio.add_header(f"{path}: {summary(counts)}")
            for case in cases:
                if case.status in (FAILED, ERROR):
                    stdio.add("o", f"{case.status.upper()} {case.full_name}"
                                   + (f": {case.message}" if case.message else "") + "\n")
        self._summary = summary(totals)
        if refused:
            raise TransferFailed(f"not read: {', '.join(refused)} (see the log)")
        self._failed_tests = totals[FAILED] + totals[ERROR]

    async def _record(self, path: str, cases: Sequence[TestCase], counts: dict[str, int]) -> None:
        build, updates = self.build, self.data.updates
        setid = await updates.add_test_result_set(build.builder.builderid, build.id, self.id,
                                                  f"JUnit {path}", "pass_fail", "boolean")
        await updates.add_test_results(build.builder.builderid, setid, result_rows(cases))
        await updates.complete_test_result_set(setid, counts[PASSED], counts[FAILED] + counts[ERROR])
        await updates.add_step_url(self.id, f"{path}: {summary(counts)}",
                                   f"{self._base_url()}api/v2/test_result_sets/{setid}/results")

    async def run(self) -> int:
        """Read the reports; FAILURE when one cannot be read or a test failed or erred."""
        self._failed_tests = 0
        results = await super().run()
        if results == SUCCESS and self._failed_tests:
            return FAILURE
        return results
