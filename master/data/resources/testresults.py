"""Test results: Buildbot's ``test_result_sets`` and ``test_results``, with its paths and field names.

A test result set is what one step reported of one kind (``category``: ``pass_fail`` for a JUnit
report), with the unit of its values (``value_unit``: ``boolean``, value ``"1"`` passed and
``"0"`` failed), and the counts ``tests_passed`` and ``tests_failed`` once it is ``complete``.
Each test result is one test: its name, code path, line, duration and value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from master.data.base import Declaration, Endpoint, Field, Kind, ResourceType, update_method
from master.data.errors import NotFound
from master.data.types import Boolean, Integer, NoneOk, String
from master.db import schema

sets = schema.test_result_sets
results = schema.test_results
INSERT_BATCH = 500


def _builder_named(bind: Any) -> Any:
    return sets.c.builderid == sa.select(schema.builders.c.id).where(schema.builders.c.name == bind).scalar_subquery()


class TestResultSets(ResourceType):
    """``/builds/N/test_result_sets``, ``/steps/N/test_result_sets``, ``/test_result_sets/N``..."""

    __test__ = False  # not a pytest class, whatever its name
    name = "test_result_set"
    plural = "test_result_sets"
    id_field = "test_result_setid"
    event_paths = (
        "test_result_sets/:test_result_setid",
        "builds/:buildid/test_result_sets/:test_result_setid",
        "steps/:stepid/test_result_sets/:test_result_setid",
    )

    def declare(self) -> Declaration:
        """Fields and endpoints of test result sets (Buildbot's)."""
        fields = {
            "test_result_setid": Field(Integer(), sets.c.id, "the set's id"),
            "builderid": Field(Integer(), sets.c.builderid, "the builder of the build that reported it"),
            "buildid": Field(Integer(), sets.c.buildid, "the build that reported it"),
            "stepid": Field(Integer(), sets.c.stepid, "the step that reported it"),
            "description": Field(NoneOk(String()), sets.c.description, "where the results come from"),
            "category": Field(String(), sets.c.category, "what the results say: pass_fail, performance, ..."),
            "value_unit": Field(String(), sets.c.value_unit, "the unit of the results' values: boolean, ns, ..."),
            "tests_passed": Field(NoneOk(Integer()), sets.c.tests_passed, "how many tests passed, once complete"),
            "tests_failed": Field(NoneOk(Integer()), sets.c.tests_failed, "how many tests failed, once complete"),
            "complete": Field(Boolean(), sets.c.complete, "whether every result of the set is recorded"),
        }
        endpoints = [
            Endpoint("/test_result_sets", Kind.COLLECTION),
            Endpoint("/test_result_sets/n:test_result_setid"),
            Endpoint("/builds/n:buildid/test_result_sets", Kind.COLLECTION),
            Endpoint("/steps/n:stepid/test_result_sets", Kind.COLLECTION),
            Endpoint("/builders/n:builderid/test_result_sets", Kind.COLLECTION),
            Endpoint("/builders/s:buildername/test_result_sets", Kind.COLLECTION,
                     arg_columns={"buildername": _builder_named}),
        ]
        return sets, fields, endpoints, {}

    @update_method
    async def add_test_result_set(
        self, builderid: int, buildid: int, stepid: int, description: str | None, category: str, value_unit: str
    ) -> int:
        """Create an (incomplete) test result set of step *stepid*; return its id (Buildbot's addTestResultSet)."""
        rows = await self.data.storage.fetch_all(sa.insert(sets).values(
            builderid=builderid, buildid=buildid, stepid=stepid, description=description, category=category,
            value_unit=value_unit, complete=False).returning(sets.c.id))
        setid: int = rows[0]["id"]
        await self.produce_event(await self.get_entity(setid), "new")
        return setid

    @update_method
    async def complete_test_result_set(
        self, test_result_setid: int, tests_passed: int | None = None, tests_failed: int | None = None
    ) -> None:
        """Mark a set complete, with its counts (Buildbot's completeTestResultSet)."""
        changed = await self.data.storage.execute(sa.update(sets).where(sets.c.id == test_result_setid).values(
            complete=True, tests_passed=tests_passed, tests_failed=tests_failed))
        if not changed:
            raise NotFound(f"no test result set {test_result_setid}")
        await self.produce_event(await self.get_entity(test_result_setid), "completed")


class TestResults(ResourceType):
    """``/test_result_sets/N/results``: the results of a set, one per test."""

    __test__ = False
    name = "test_result"
    plural = "test_results"
    id_field = "test_resultid"

    def declare(self) -> Declaration:
        """Fields and endpoints of test results (Buildbot's)."""
        fields = {
            "test_resultid": Field(Integer(), results.c.id, "the result's id"),
            "builderid": Field(Integer(), results.c.builderid, "the builder of the build that reported it"),
            "test_result_setid": Field(Integer(), results.c.test_result_setid, "the set it belongs to"),
            "test_name": Field(NoneOk(String()), results.c.test_name, "the test's name"),
            "test_code_path": Field(NoneOk(String()), results.c.test_code_path, "the file of the test's code"),
            "line": Field(NoneOk(Integer()), results.c.line, "the line of the test's code"),
            "duration_ns": Field(NoneOk(Integer()), results.c.duration_ns, "how long the test ran, in nanoseconds"),
            "value": Field(String(), results.c.value, "the result, in the set's value_unit (boolean: 1 passed)"),
        }
        endpoints = [Endpoint("/test_result_sets/n:test_result_setid/results", Kind.COLLECTION)]
        return results, fields, endpoints, {}

    @update_method
    async def add_test_results(self, builderid: int, test_result_setid: int, result_values: Sequence[Mapping[str, Any]]
                               ) -> int:
        """Record results (``test_name``, ``test_code_path``, ``line``, ``duration_ns``, ``value``) in a set.

        (Buildbot's addTestResults.)  Batches of a few hundred rows per statement; returns how many.
        """
        rows = [{
            "builderid": builderid, "test_result_setid": test_result_setid, "test_name": r.get("test_name"),
            "test_code_path": r.get("test_code_path"), "line": r.get("line"), "duration_ns": r.get("duration_ns"),
            "value": str(r["value"]),
        } for r in result_values]
        for start in range(0, len(rows), INSERT_BATCH):
            await self.data.storage.execute(sa.insert(results).values(rows[start:start + INSERT_BATCH]))
        return len(rows)
