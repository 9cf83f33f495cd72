"""The two tiers of the suite: ``slow`` tests, and the fast rest (``python -m pytest -m "not slow"``).

A test is ``slow`` when it spawns a process (ci-master, ci-worker, twistd, git, dcictl, a browser,
docker, or any command a worker runs), uses the PostgreSQL server, or sleeps in real time.  Modules
mark themselves (``pytestmark = pytest.mark.slow``) or single tests; tests on PostgreSQL are
marked here.  The fast tier keeps itself honest: a test not marked ``slow`` that starts a process
or calls ``time.sleep`` fails, naming what it did, so a new test lands in the right tier.
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

SLOW = "slow"

# Every way a process starts here: subprocess (its own binding of fork_exec, or posix_spawn), Twisted's
# spawnProcess (posix_spawnp, or fork), the worker's SessionProcess and process groups (posix_spawn).
_SPAWNERS: tuple[tuple[Any, str], ...] = (
    (os, "fork"), (os, "posix_spawn"), (os, "posix_spawnp"), (_posixsubprocess, "fork_exec"),
    (subprocess, "_fork_exec"),
)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the ``slow`` marker."""
    config.addinivalue_line(
        "markers", f"{SLOW}: spawns a process, uses PostgreSQL or sleeps in real time (deselect with -m 'not slow')"
    )


# REST tests reach the site in memory (no port) unless they ask for a real one: ``transport`` is
# "in-memory" by default; a test parametrized with ALSO_OVER_TCP runs over TCP too (slow tier), one
# with OVER_TCP only over TCP (for clients the pool cannot carry: urllib, a thread, a WebSocket).
IN_MEMORY, TCP = "in-memory", "tcp"
ALSO_OVER_TCP = pytest.mark.parametrize("transport", [IN_MEMORY, pytest.param(TCP, marks=pytest.mark.slow)],
                                        indirect=True)
OVER_TCP = pytest.mark.parametrize("transport", [TCP], indirect=True)


@pytest.fixture
def transport(request: pytest.FixtureRequest) -> str:
    """How a test's client reaches the site: IN_MEMORY, unless the test is parametrized otherwise."""
    return getattr(request, "param", IN_MEMORY)


def _uses_postgresql(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    return "[postgresql" in item.nodeid or item.get_closest_marker("postgresql") is not None or "pg_server" in fixtures


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark slow every test on the PostgreSQL server (the ``postgresql`` half of the storage tests)."""
    for item in items:
        if _uses_postgresql(item):
            item.add_marker(pytest.mark.slow)


def _describe(name: str, args: tuple[Any, ...]) -> str:
    """A short account of a process start: the function and, when it is there, the program."""
    for arg in args:
        if isinstance(arg, (str, bytes, os.PathLike)):
            return f"{name}({os.fsdecode(arg)!r})"
        if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], (str, bytes, os.PathLike)):
            return f"{name}({os.fsdecode(arg[0])!r}, ...)"
    return f"{name}()"


def _recording(original: Callable[..., Any], name: str, seen: list[str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append(_describe(name, args))
        return original(*args, **kwargs)

    return wrapper


@pytest.fixture(autouse=True)
def _fast_tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In a test not marked slow, record process starts and real sleeps; fail the test if there were any.

    The calls still happen (failing them would hide the test's own outcome); the test then errors
    in teardown with what it did and the remedy.
    """
    if request.node.get_closest_marker(SLOW) is not None:
        yield
        return
    seen: list[str] = []
    for module, name in _SPAWNERS:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, _recording(getattr(module, name), f"{module.__name__}.{name}", seen))
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if seconds > 0:
            seen.append(f"time.sleep({seconds:g})")
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    yield
    if seen:
        shown = ", ".join(dict.fromkeys(seen))
        pytest.fail(
            f"{request.node.nodeid} is in the fast tier but did {shown}: mark it slow "
            "(@pytest.mark.slow, or pytestmark = pytest.mark.slow for its module), or make it in-process",
            pytrace=False,
        )
