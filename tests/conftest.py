"""Fixtures shared by the whole suite: a database URL and a started storage on each backend.

Tests using ``db_url`` or ``storage`` run twice, on SQLite and on a throwaway PostgreSQL
server started once per session (only if such a test runs).  PostgreSQL tests never skip:
if the server cannot start they error, so CI notices.  ``CI_MASTER_REQUIRE_PG=1`` also
fails the session when no PostgreSQL test passed at all (for example when none was selected).
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from pgserver import PostgresServer

from master.db import migrate
from master.db.backends import make_storage
from master.db.interfaces import IStorage

pytest_plugins = ["tiers"]  # the slow marker, and the fast tier's guard

BACKENDS = ["sqlite", "postgresql"]
REQUIRE_PG_ENV = "CI_MASTER_REQUIRE_PG"

_db_numbers = itertools.count(1)
_pg_passed: set[str] = set()


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``postgresql`` marker."""
    config.addinivalue_line("markers", "postgresql: the test runs against PostgreSQL")


def _is_postgresql(item: pytest.Item) -> bool:
    """Whether *item* runs against PostgreSQL: the backend's parameter, or the marker."""
    return "[postgresql" in item.nodeid or item.get_closest_marker("postgresql") is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the PostgreSQL half of parametrized tests, so ``-m postgresql`` selects it too."""
    for item in items:
        if "[postgresql" in item.nodeid:
            item.add_marker(pytest.mark.postgresql)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Remember which PostgreSQL tests passed, for the summary and CI_MASTER_REQUIRE_PG."""
    report = yield
    if _is_postgresql(item):
        if report.when == "call" and report.passed:
            _pg_passed.add(item.nodeid)
        elif report.failed:  # an error in teardown undoes the pass
            _pg_passed.discard(item.nodeid)
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With CI_MASTER_REQUIRE_PG=1, fail an otherwise green session in which no PostgreSQL test passed."""
    if os.environ.get(REQUIRE_PG_ENV) == "1" and not _pg_passed and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print ``postgresql tests: N passed`` so that CI logs show the backend was tested."""
    terminalreporter.write_line(f"postgresql tests: {len(_pg_passed)} passed")
    if os.environ.get(REQUIRE_PG_ENV) == "1" and not _pg_passed:
        terminalreporter.write_line(
            f"{REQUIRE_PG_ENV}=1 but no PostgreSQL test passed: failing the run", red=True, bold=True
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session, started on first use."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend a test runs on: "sqlite" or "postgresql"."""
    return request.param


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty database on each backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/state.sqlite"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"test_{os.getpid()}_{next(_db_numbers)}")


@pytest.fixture(scope="session")
def schema_templates() -> dict[str, str]:
    """Per backend, a database holding the current schema, made once and copied for each test."""
    return {}


@pytest.fixture
def migrated_url(
    backend: str, tmp_path: Path, schema_templates: dict[str, str], request: pytest.FixtureRequest
) -> str:
    """The URL of a fresh database holding the current schema, copied from a template made once."""
    if backend == "sqlite":
        if "sqlite" not in schema_templates:
            template = request.getfixturevalue("tmp_path_factory").mktemp("template") / "state.sqlite"
            migrate.create(f"sqlite:///{template}")
            schema_templates["sqlite"] = str(template)
        shutil.copyfile(schema_templates["sqlite"], tmp_path / "state.sqlite")
        return f"sqlite:///{tmp_path}/state.sqlite"
    server: PostgresServer = request.getfixturevalue("pg_server")
    if "postgresql" not in schema_templates:
        migrate.create(server.create_database("schema_template"))
        schema_templates["postgresql"] = "schema_template"
    return server.create_database(f"test_{os.getpid()}_{next(_db_numbers)}", template="schema_template")


@pytest_twisted.async_yield_fixture()
async def storage(migrated_url: str) -> AsyncIterator[IStorage]:
    """A started backend on a fresh database holding the current schema."""
    started = make_storage(migrated_url)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()
