"""The plugin object master.cfg enables: resource types, the test results table and the web routes."""

from __future__ import annotations

from typing import Any

from master.sdk import Plugin, PluginContext, ResourceType
from plugins.evergreen.resources import EvergreenTasks, EvergreenTestResults, EvergreenVersions
from plugins.evergreen.routes import EvergreenApi
from plugins.evergreen.tables import metadata


class EvergreenPlugin(Plugin):
    """Evergreen (MCI) REST v1 at ``/rest/v1`` over ci-master's own data (the mapping is the package's docstring)."""

    name = "evergreen"
    tables = metadata

    def resource_types(self) -> list[ResourceType]:
        """``evergreen_tasks``, ``evergreen_versions`` (with ``set_activation``) and ``evergreen_test_results``."""
        return [EvergreenTasks(), EvergreenVersions(), EvergreenTestResults()]

    def routes(self, ctx: PluginContext) -> dict[str, Any]:
        """The REST v1 routes at ``rest/v1``."""
        return {"rest/v1": EvergreenApi(ctx)}
