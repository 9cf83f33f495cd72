"""The DCI plugin object: what master.cfg enables."""

from __future__ import annotations

from typing import Any

from master.sdk import Plugin, PluginContext, ResourceType, UserStore
from plugins.dci import resources, tables
from plugins.dci.routes import DciApi


class DciPlugin(Plugin):
    """The DCI API v1 plugin.

    *users_file* is the ci-master users file whose users may log in with Basic auth (by default
    the master's own ``users.json``, relative to the master directory; None: no Basic auth);
    *prefix* is where the API is served.
    """

    name = "dci"
    tables = tables.metadata

    def __init__(self, users_file: str | None = "users.json", prefix: str = "api/v1") -> None:
        self.users_file = users_file
        self.prefix = prefix

    def resource_types(self) -> list[ResourceType]:
        """The DCI resource types."""
        return resources.resource_types()

    def routes(self, ctx: PluginContext) -> dict[str, Any]:
        """The API v1 routes at ``/api/v1``."""
        users = UserStore(ctx.basedir / self.users_file) if self.users_file else None
        return {self.prefix: DciApi(ctx, users)}
