"""A real ci-master process with a LocalWorker, on SQLite or PostgreSQL, for end-to-end tests."""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cliutil import free_port, http_get, run
from test_end_to_end import rpc
from waiting import wait_until


def database_url(backend: str, request: pytest.FixtureRequest, prefix: str) -> str:
    """SQLite in the master directory, or a new database on the session's PostgreSQL server."""
    if backend == "postgresql":
        return request.getfixturevalue("pg_server").create_database(f"{prefix}_{os.getpid()}_{time.monotonic_ns()}")
    return "sqlite:///state.sqlite"


def start_master(root: Path, name: str, config: str, worker: str = "w1", env: dict[str, str] | None = None,
                 **fields: Any) -> dict[str, Any]:
    """Create, upgrade and start master *name* under *root* with *config* (a template taking ``port`` and
    *fields*), its environment added *env*; return once its LocalWorker *worker* is connected."""
    port = free_port()
    master_dir = root / name
    assert run("create-master", str(master_dir), cwd=root).returncode == 0
    (master_dir / "master.cfg").write_text(textwrap.dedent(config).format(port=port, **fields))
    upgraded = run("upgrade-master", str(master_dir), cwd=root)
    assert upgraded.returncode == 0, upgraded.stderr
    started = run("start", str(master_dir), cwd=root, env=env)
    assert started.returncode == 0, started.stderr
    pid = int((master_dir / "twistd.pid").read_text())
    wait_until(lambda: http_get(port, f"/api/v2/workers?name={worker}")["workers"][0]["connected_to"])
    return {"dir": master_dir, "port": port, "pid": pid}


@contextmanager
def running_master(root: Path, config: str, env: dict[str, str] | None = None,
                   **fields: Any) -> Iterator[dict[str, Any]]:
    """:func:`start_master` as a context: the master is stopped at its end."""
    try:
        yield start_master(root, "master", config, env=env, **fields)
    finally:
        run("stop", str(root / "master"), cwd=root)


def force(port: int, builder: str) -> int:
    """Force a build of *builder*; return its request's id."""
    builderid = http_get(port, f"/api/v2/builders/{builder}")["builders"][0]["builderid"]
    return next(iter(rpc(port, "forceschedulers/force", "force", builderid=builderid)["result"][1].values()))


def finished_builds(port: int, brids: list[int], timeout: float = 120) -> list[dict[str, Any]]:
    """The builds of requests *brids*, once all have finished."""
    def done() -> list[dict[str, Any]] | None:
        builds = [http_get(port, f"/api/v2/buildrequests/{brid}/builds?complete=true")["builds"] for brid in brids]
        return [found[0] for found in builds] if all(builds) else None

    return wait_until(done, timeout=timeout)


def forced_build(port: int, builder: str) -> dict[str, Any]:
    """Force a build of *builder* and return it once finished."""
    return finished_builds(port, [force(port, builder)], timeout=60)[0]
