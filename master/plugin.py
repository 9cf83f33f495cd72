"""The base class of plugins: a site names plugin objects in master.cfg's ``plugins``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from zope.interface import implementer

from master.data.interfaces import IPlugin


@implementer(IPlugin)
class Plugin:
    """A plugin contributing nothing; subclasses override what they add.

    ``resource_types()`` adds resource types (their getters and actions) to the data API,
    ``metadata()`` gives the plugin's tables (created when missing), and
    ``web_resources(data)`` returns twisted.web resources mounted at URL prefixes.
    """

    name = "plugin"

    def __eq__(self, other: object) -> bool:
        """Plugins of the same class with the same settings are the same (reconfig keeps them)."""
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.name))

    def resource_types(self) -> list[Any]:
        """Resource types to register."""
        return []

    def metadata(self) -> sa.MetaData | None:
        """The MetaData of this plugin's tables."""
        return None

    def web_resources(self, data: Any) -> dict[str, Any]:
        """``{prefix: resource}`` to mount on the web server, e.g. ``{"v1": resource}``."""
        return {}
