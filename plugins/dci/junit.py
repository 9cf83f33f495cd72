"""Counting the test cases of a JUnit XML file, as the DCI server does for ``application/junit`` uploads."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: N817 (the usual name)

from plugins.dci.errors import DciError


def _seconds(text: str | None) -> float:
    try:
        return float(text) if text else 0.0
    except ValueError:
        return 0.0  # a garbled time attribute costs the time, not the upload


def parse_junit(content: bytes) -> dict[str, int]:
    """``{total, success, skips, failures, errors, time}`` of the ``testcase`` elements in *content*.

    A test case with a ``failure`` child failed, with an ``error`` child erred, with a ``skipped``
    child was skipped, and passed otherwise; ``time`` is the sum of their times in milliseconds.
    Unparsable XML raises DciError 400 ``Invalid XML: ...``.  (Python's expat refuses entity
    expansion bombs and does not fetch external entities.)
    """
    try:
        root = ET.fromstring(content)
    except ET.ParseError as e:
        raise DciError(400, f"Invalid XML: {e}") from None
    counts = {"total": 0, "success": 0, "skips": 0, "failures": 0, "errors": 0}
    seconds = 0.0
    for case in root.iter("testcase"):
        counts["total"] += 1
        seconds += _seconds(case.get("time"))
        if case.find("failure") is not None:
            counts["failures"] += 1
        elif case.find("error") is not None:
            counts["errors"] += 1
        elif case.find("skipped") is not None:
            counts["skips"] += 1
        else:
            counts["success"] += 1
    return {**counts, "time": int(round(seconds * 1000))}
