"""DCI (Distributed CI) API v1 as a ci-master plugin, mounted at ``/api/v1``.

Partner labs' CI systems (remotecis) use it, through Red Hat's ``dciclient``/``dcictl``, to
find a topic's components, create or schedule jobs, report their states and upload their
test results.  Everything is stored in the plugin's ``dci_*`` tables and served through the
data API: the DCI types are visible at ``/api/v2/dci_*`` too, and their changes are events
(``dci_jobs/<id>/update``...).  See :mod:`plugins.dci.web` for the routes, :mod:`plugins.dci.auth`
for who may call them, and ``python -m plugins.dci --help`` to make teams, remotecis and feeders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from master.plugin import Plugin
from master.www.auth import UserStore
from plugins.dci import resources, tables


class DciPlugin(Plugin):
    """The DCI API v1 plugin.

    *users_file* is the ci-master users file whose users may log in with Basic auth (by default
    the master's own ``users.json``, relative to the master directory); *prefix* is where the
    API is served.
    """

    name = "dci"

    def __init__(self, users_file: str | None = "users.json", prefix: str = "api/v1") -> None:
        self.users_file = users_file
        self.prefix = prefix

    def resource_types(self) -> list[Any]:
        """The DCI resource types."""
        return resources.resource_types()

    def metadata(self) -> Any:
        """The ``dci_*`` tables."""
        return tables.metadata

    def web_resources(self, data: Any) -> dict[str, Any]:
        """The API v1 routes at ``/api/v1``."""
        from plugins.dci.web import DciApi

        users = UserStore(Path(self.users_file)) if self.users_file else None
        return {self.prefix: DciApi(data, users).resource()}


__all__ = ["DciPlugin"]
