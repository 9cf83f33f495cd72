"""Counting the test cases of a JUnit XML file, as the DCI server does for ``application/junit`` uploads.

The parsing is the core's (:mod:`master.junit`, through ``defusedxml``); this only counts.
"""

from __future__ import annotations

from master.sdk import ERROR, FAILED, JUNIT_SKIPPED, JUnitError
from master.sdk import count_cases as count
from master.sdk import parse_junit as parse_cases
from plugins.dci.errors import DciError


def parse_junit(content: bytes) -> dict[str, int]:
    """``{total, success, skips, failures, errors, time}`` of the ``testcase`` elements in *content*.

    ``time`` is the sum of their times in milliseconds.  Unparsable XML, or XML declaring
    entities (an expansion bomb), raises DciError 400 ``Invalid XML: ...``.
    """
    try:
        cases = parse_cases(content, require_report=False)
    except JUnitError as e:
        raise DciError(400, f"Invalid XML: {e.detail}") from None
    counts = count(cases)
    return {
        "total": len(cases), "success": len(cases) - counts[FAILED] - counts[ERROR] - counts[JUNIT_SKIPPED],
        "skips": counts[JUNIT_SKIPPED], "failures": counts[FAILED], "errors": counts[ERROR],
        "time": int(round(sum(case.duration_ns for case in cases) / 1_000_000)),
    }
