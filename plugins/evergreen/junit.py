"""Reading JUnit XML reports into Evergreen test results."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET  # noqa: N817 (the usual name)
from typing import Any


class JUnitError(ValueError):
    """The text is not a JUnit report; the message says why."""


def _nanoseconds(seconds: str | None) -> int:
    """A JUnit ``time`` attribute (seconds, maybe fractional) in nanoseconds; 0 when absent or unreadable."""
    if not seconds:
        return 0
    try:
        value = float(seconds.replace(",", ""))
    except ValueError:
        return 0
    if not math.isfinite(value) or value < 0:
        return 0
    return round(value * 1_000_000_000)


def _status(case: ET.Element) -> str:
    if case.find("failure") is not None or case.find("error") is not None:
        return "fail"
    if case.find("skipped") is not None:
        return "skip"
    return "pass"


def parse_junit(text: str) -> list[dict[str, Any]]:
    """Every ``<testcase>`` of a report as ``{name, status, duration_ns}``, in document order.

    The name is ``classname.name`` (or ``name`` alone); a name seen twice gets `` #2``,
    `` #3``... so that each result keeps its own entry in Evergreen's name-keyed maps.
    Status is ``fail`` for a case with ``<failure>`` or ``<error>``, ``skip`` for one with
    ``<skipped>``, else ``pass``.  Raises JUnitError for text that is not XML or whose root
    is neither ``<testsuites>`` nor ``<testsuite>``.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise JUnitError(f"not XML: {e}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise JUnitError(f"not a JUnit report: the root element is <{root.tag}>")
    results = []
    seen: dict[str, int] = {}
    for case in root.iter("testcase"):
        name = case.get("name") or "(unnamed)"
        classname = case.get("classname")
        full = f"{classname}.{name}" if classname else name
        seen[full] = seen.get(full, 0) + 1
        if seen[full] > 1:
            full = f"{full} #{seen[full]}"
        results.append({"name": full, "status": _status(case), "duration_ns": _nanoseconds(case.get("time"))})
    return results
