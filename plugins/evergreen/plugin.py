"""The plugin object master.cfg enables: resource types, the test results table and the web routes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from master.plugin import Plugin
from plugins.evergreen.resources import EvergreenTasks, EvergreenTestResults, EvergreenVersions
from plugins.evergreen.tables import metadata
from plugins.evergreen.web import EvergreenApi


class EvergreenPlugin(Plugin):
    """Evergreen (MCI) REST v1 at ``/rest/v1`` over ci-master's own data (the mapping is the package's docstring)."""

    name = "evergreen"

    def resource_types(self) -> list[Any]:
        """``evergreen_tasks``, ``evergreen_versions`` (with ``set_activation``) and ``evergreen_test_results``."""
        return [EvergreenTasks(), EvergreenVersions(), EvergreenTestResults()]

    def metadata(self) -> sa.MetaData:
        """The ``evergreen_test_results`` table."""
        return metadata

    def web_resources(self, data: Any) -> dict[str, Any]:
        """The REST v1 routes at ``rest/v1``."""
        return {"rest/v1": EvergreenApi(data).resource()}
