"""Waiting in tests: poll a condition until it holds, for a bounded time, and say what never came.

``wait_until`` blocks (for tests that drive other processes: a master, a worker, a browser);
``wait_for`` polls inside the reactor (for tests whose master runs in-process), its check
plain or async; ``within`` bounds the wait for one Deferred.  Each returns the first true value and fails
with an ``AssertionError`` naming what was awaited.  These wait in real time: a test that
uses them is in the ``slow`` tier unless what it awaits is already there.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

T = TypeVar("T")

TIMEOUT = 30.0


def _checked(what: str) -> str:
    """*what*, checked to be the description (a number there is a timeout given in the wrong place)."""
    if not isinstance(what, str):
        raise TypeError(f"what must say what is awaited, got {what!r} (give timeout= by keyword)")
    return what


def _described(check: Callable[..., Any], what: str) -> str:
    """*what*, or else the source of the *check* (a lambda) or its name."""
    if what:
        return what
    try:
        return inspect.getsource(check).strip()
    except (OSError, TypeError):
        return getattr(check, "__qualname__", repr(check))


def wait_until(check: Callable[[], T], what: str = "", timeout: float = TIMEOUT, interval: float = 0.2) -> T:
    """Call *check* every *interval* seconds until it returns something true, and return that.

    Blocks the thread, so the reactor does not run meanwhile: for conditions other processes make true.
    """
    _checked(what)
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {_described(check, what)}")
        time.sleep(interval)


async def wait_for(
    check: Callable[[], Awaitable[T] | T], what: str = "", timeout: float = TIMEOUT, interval: float = 0.05
) -> T:
    """Call *check* (plain, or returning an awaitable) every *interval* seconds until its value is true.

    The reactor runs between calls, so what the test started in-process goes on meanwhile.
    """
    _checked(what)
    deadline = reactor.seconds() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if reactor.seconds() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {_described(check, what)}")
        await deferLater(reactor, interval, lambda: None)


async def within(d: defer.Deferred[T], what: str = "an answer", timeout: float = TIMEOUT) -> T:
    """The result of *d*, or an AssertionError naming *what* after *timeout* seconds.

    *d* is not cancelled, and keeps its result, so a Deferred that others wait on too stays usable; a
    failure is handed on to the caller only (not left unhandled in *d* as well).
    """
    _checked(what)
    waiting: defer.Deferred[T] = defer.Deferred()

    def forward(result: Any) -> Any:
        if not waiting.called:
            waiting.callback(result)
        return None if isinstance(result, Failure) else result

    d.addBoth(forward)
    waiting.addTimeout(timeout, reactor)
    try:
        return await waiting
    except defer.TimeoutError:
        raise AssertionError(f"no {what} within {timeout:g} s") from None
