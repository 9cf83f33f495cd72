"""Reading JUnit XML reports into Evergreen test results (the parsing is the core's :mod:`master.junit`)."""

from __future__ import annotations

from typing import Any

from master.sdk import JUNIT_SKIPPED, PASSED, JUnitError
from master.sdk import parse_junit as parse_cases

__all__ = ["JUnitError", "parse_junit"]


def parse_junit(text: str) -> list[dict[str, Any]]:
    """Every ``<testcase>`` of a report as ``{name, status, duration_ns}``, in document order.

    The name is ``classname.name`` (or ``name`` alone); a name seen twice gets `` #2``,
    `` #3``... so that each result keeps its own entry in Evergreen's name-keyed maps.
    Status is ``fail`` for a case with ``<failure>`` or ``<error>``, ``skip`` for one with
    ``<skipped>``, else ``pass``.  Raises JUnitError for text that is not XML, that declares
    entities, or whose root is neither ``<testsuites>`` nor ``<testsuite>``.
    """
    results = []
    seen: dict[str, int] = {}
    for case in parse_cases(text):
        full = case.full_name
        seen[full] = seen.get(full, 0) + 1
        if seen[full] > 1:
            full = f"{full} #{seen[full]}"
        status = case.status if case.status in (PASSED, JUNIT_SKIPPED) else "fail"
        results.append({"name": full, "status": status, "duration_ns": case.duration_ns})
    return results
