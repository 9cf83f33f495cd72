"""JUnit XML reports, read safely: the one parser of the core (TestResults) and the DCI and Evergreen plugins.

Parsing goes through ``defusedxml``: a document declaring entities (the "billion laughs"
expansion bomb, external entities) is refused with :class:`JUnitError`, never expanded.  A test
case with a ``<failure>`` child failed, with an ``<error>`` child erred, with a ``<skipped>``
child was skipped, and passed otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as DET  # noqa: N814 (the usual short name)

PASSED, FAILED, ERROR, SKIPPED = "pass", "fail", "error", "skip"
REPORT_ROOTS = ("testsuites", "testsuite")


class JUnitError(ValueError):
    """The content is not a JUnit report, or is refused; ``detail`` is the parser's own message."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail or message


@dataclass
class TestCase:
    """One ``<testcase>``: its names, where its code is, its status and duration, and its message."""

    __test__ = False  # not a pytest class, whatever its name

    name: str
    classname: str | None
    status: str
    duration_ns: int
    file: str | None = None
    line: int | None = None
    message: str | None = None

    @property
    def full_name(self) -> str:
        """``classname.name``, or the name alone."""
        return f"{self.classname}.{self.name}" if self.classname else self.name


def seconds_to_ns(seconds: str | None) -> int:
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


def _status(case: Element) -> tuple[str, str | None]:
    for tag, status in (("failure", FAILED), ("error", ERROR), ("skipped", SKIPPED)):
        found = case.find(tag)
        if found is not None:
            return status, found.get("message") or (found.text or "").strip() or None
    return PASSED, None


def _line(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def parse_junit(content: bytes | str, require_report: bool = True) -> list[TestCase]:
    """Every ``<testcase>`` of *content*, in document order.

    Raises JUnitError for content that is not XML, declares entities (refused, not expanded),
    or (with *require_report*) whose root is neither ``<testsuites>`` nor ``<testsuite>``.
    """
    try:
        root = DET.fromstring(content)
    except defusedxml.DefusedXmlException as e:
        raise JUnitError(f"refused: the document declares entities ({type(e).__name__}); JUnit reports need none",
                         f"entities are not allowed ({type(e).__name__})") from None
    except ParseError as e:
        raise JUnitError(f"not XML: {e}", str(e)) from None
    if require_report and root.tag not in REPORT_ROOTS:
        raise JUnitError(f"not a JUnit report: the root element is <{root.tag}>")
    cases = []
    for case in root.iter("testcase"):
        status, message = _status(case)
        cases.append(TestCase(
            name=case.get("name") or "(unnamed)", classname=case.get("classname") or None, status=status,
            duration_ns=seconds_to_ns(case.get("time")), file=case.get("file") or None, line=_line(case.get("line")),
            message=message,
        ))
    return cases


def count(cases: list[TestCase]) -> dict[str, int]:
    """How many cases of each status: ``{pass, fail, error, skip}``."""
    counts = {PASSED: 0, FAILED: 0, ERROR: 0, SKIPPED: 0}
    for case in cases:
        counts[case.status] += 1
    return counts
