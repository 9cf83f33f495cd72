"""The self-serve plugin object: what master.cfg names and the master asks for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from master.sdk import Plugin, PluginContext, ResourceType
from plugins.selfserve import resources, tables
from plugins.selfserve.agent import SelfServeAgent
from plugins.selfserve.routes import PREFIX, SelfServeWeb


class SelfServePlugin(Plugin):
    """Mozilla BuildAPI's self-serve at ``/self-serve``, over the engine's builds and requests.

    *trusted_proxies* are the addresses (e.g. ``["127.0.0.1"]``) of front-end proxies whose
    ``X-Remote-User`` header names the user; from anywhere else the header is ignored and
    the user is the ci-master user of the request's Basic auth (or token, or session).
    *poll_interval* is how often (seconds) the agent looks for jobs queued on other masters;
    *claim_timeout* is how long a job claimed by a master that died waits before another
    master's agent takes it over.
    """

    name = "selfserve"
    tables = tables.metadata

    def __init__(self, trusted_proxies: Iterable[str] = (), poll_interval: float = 5.0,
                 claim_timeout: float = 600.0) -> None:
        self.trusted_proxies = frozenset(trusted_proxies)
        self.poll_interval = poll_interval
        self.claim_timeout = claim_timeout
        # made by services(); not settings, so kept out of the equality reconfig compares
        self._runtime: dict[str, Any] = {}

    def __eq__(self, other: object) -> bool:
        """Same class and settings (reconfig keeps a plugin whose settings did not change)."""
        return type(other) is type(self) and self._settings() == other._settings()

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def _settings(self) -> tuple[Any, ...]:
        return (self.trusted_proxies, self.poll_interval, self.claim_timeout)

    def resource_types(self) -> list[ResourceType]:
        """Job records, and the read views of branches, builds and requests."""
        return resources.resource_types()

    def routes(self, ctx: PluginContext) -> dict[str, Any]:
        """The self-serve routes at ``/self-serve``."""
        return {PREFIX: SelfServeWeb(ctx, self)}

    def background(self, ctx: PluginContext) -> list[Any]:
        """The agent that does the queued jobs."""
        agent = SelfServeAgent(ctx.data, self.poll_interval, self.claim_timeout)
        self._runtime["agent"] = agent
        return [agent]

    @property
    def agent(self) -> SelfServeAgent | None:
        """The agent of this master, once made."""
        return self._runtime.get("agent")
