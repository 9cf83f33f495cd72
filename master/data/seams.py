"""What the data API is handed by the layers above it: the engine's controls and the auth policy.

The data layer may not import the engine or the web layer (``lint-imports`` checks it), yet some
actions reach the engine (stop a build, force a scheduler...) and plugins' routes check their
callers with the master's auth policy.  These Protocols name exactly what is asked of each; the
master hands the objects over with :meth:`DataAPI.bind_engine` and :meth:`DataAPI.bind_auth`
(``master.engine.engine.Engine`` and ``master.www.auth.Authenticator`` satisfy them; mypy checks the
binding and ``tests/test_seams.py`` the methods at run time).

Types the data layer cannot name (the web layer's ``User``, a Twisted ``IRequest``) are ``Any``
here; the objects behind the Protocols are typed in full where they live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class EngineControls(Protocol):
    """The build engine of this master, as the data API's actions reach it.

    Actions that need an engine answer ``Conflict`` when none is bound (a DataAPI serving a
    database without running builds: ``ci-master cleanup``, tests, a master stopping).
    """

    async def stop_build(self, buildid: int, reason: str | None = None) -> None:
        """Stop build *buildid* (it ends cancelled); ``Conflict`` if another master runs it."""
        ...

    async def rebuild(self, buildid: int, reason: str | None = None) -> list[Any]:
        """Submit build *buildid*'s buildset again for its builder; return ``[bsid, {builderid: brid}]``."""
        ...

    async def cancel_buildrequest(self, brid: int, reason: str | None = None) -> bool:
        """Stop the build of claimed request *brid* if it runs here; return whether it does."""
        ...

    async def shutdown_worker(self, workerid: int, graceful: bool) -> None:
        """Ask worker *workerid* to leave, after its builds (*graceful*) or now, if it is connected here."""
        ...

    async def force(self, schedulername: str, params: Mapping[str, Any], user: Any = None) -> list[Any]:
        """Run the ``force`` action of force scheduler *schedulername* (it checks *params*)."""
        ...

    def latent_state(self, workerid: int) -> str | None:
        """The state of latent worker *workerid* on this master (``stopped``, ``starting``...), or None."""
        ...


@runtime_checkable
class AuthPolicy(Protocol):
    """The master's auth policy (``master.cfg``'s ``auth``), carried by the data API for plugins' routes."""

    @property
    def enabled(self) -> bool:
        """Whether auth is on (users, tokens and rules exist)."""
        ...

    @property
    def restricts_reads(self) -> bool:
        """Whether read rules restrict reads."""
        ...

    def authenticate(self, request: Any) -> Any:
        """The user making *request*, or None; raises the web layer's AuthError(401) for bad credentials."""
        ...

    def authorize(self, user: Any, resource: str, action: str) -> None:
        """Raise the web layer's AuthError(401/403) unless *user* may call *action* on *resource*."""
        ...

    def authorize_read(self, user: Any, resource: str) -> None:
        """Raise the web layer's AuthError(401/403) unless *user* may read *resource*."""
        ...

    def scope_reads(self, user: Any) -> None:
        """Check the running coroutine's later reads against the read rules, as *user*."""
        ...
