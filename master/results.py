"""Result codes of builds, steps, build requests and buildsets, as Buildbot numbers them.

The one home of the codes, their names and their order of severity: the data API stores
them, the engine computes them, reporters and plugins name them.  Imports nothing of the
master, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Iterable

RESULTS = ("success", "warnings", "failure", "skipped", "exception", "retry", "cancelled")
"""Result codes 0..6, by name."""
SUCCESS, WARNINGS, FAILURE, SKIPPED, EXCEPTION, RETRY, CANCELLED = range(7)

# Worse ranks higher, as in Buildbot: cancelled > retry > exception > failure > warnings >
# success > skipped.  A buildset starts from success, so skipped requests count as success.
_SEVERITY = {SKIPPED: 0, SUCCESS: 1, WARNINGS: 2, FAILURE: 3, EXCEPTION: 4, RETRY: 5, CANCELLED: 6}


def worst_result(results: Iterable[int | None]) -> int:
    """The worst of *results*, starting from success (None, a result never set, is ignored)."""
    worst = SUCCESS
    for result in results:
        if result is not None and _SEVERITY[result] > _SEVERITY[worst]:
            worst = result
    return worst


def result_name(results: int | None, unset: str = "running") -> str:
    """The name of a result code; *unset* for None (no result yet), the number itself for an unknown code."""
    if results is None:
        return unset
    return RESULTS[results] if 0 <= results < len(RESULTS) else str(results)
