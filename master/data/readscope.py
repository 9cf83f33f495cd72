"""Read checks for the reads a plugin's web route makes on behalf of its caller.

A plugin route answers from many ``data.get`` calls (a version, its tasks, its project...).
Rather than each route listing the resource types it touches (and missing one), the route
opens a *read scope* for its caller before it reads: from then on, within that route's
coroutine, every ``DataAPI.get`` first asks the scope whether the caller may read the
resource type it names, exactly as a REST read of that type is checked.

The scope lives in a :class:`contextvars.ContextVar`.  Twisted runs each coroutine given to
``ensureDeferred`` in a copy of the context it was started from, so a scope set inside a
route's coroutine covers the awaits of that coroutine and nothing else: not the reactor's
other work, not another request.  A route must therefore set it from inside its coroutine.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

ReadCheck = Callable[[str], None]
"""Raises (the web layer's AuthError) unless the caller may read the resource type named (plural)."""

_scope: ContextVar[ReadCheck | None] = ContextVar("ci_master_read_scope", default=None)


def open_read_scope(check: ReadCheck | None) -> None:
    """Check every later ``DataAPI.get`` of the running coroutine with *check* (None: no check)."""
    _scope.set(check)


def check_read(plural: str) -> None:
    """Run the open scope's check for resource type *plural*; nothing when no scope is open."""
    check = _scope.get()
    if check is not None:
        check(plural)
