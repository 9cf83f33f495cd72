"""The base class of plugins: a site names plugin objects in master.cfg's ``plugins``."""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import sqlalchemy as sa
from zope.interface import implementer

from master.data.interfaces import IPlugin

ENTRY_POINT_GROUP = "ci_master.plugins"
"""Installed packages offer plugins under this entry point group (name -> plugin class or object)."""


class PluginError(ValueError):
    """A plugin named in master.cfg cannot be found or made; the message says why."""


@implementer(IPlugin)
class Plugin:
    """A plugin contributing nothing; subclasses override what they add.

    ``resource_types()`` adds resource types (their getters and actions) to the data API,
    ``metadata()`` gives the plugin's tables (created when missing), and
    ``web_resources(data)`` returns twisted.web resources mounted at URL prefixes, and
    ``services(data)`` returns twisted.application services started and stopped with the master.
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

    def migrations(self) -> str | None:
        """A folder of Alembic revision files for this plugin's tables, or None.

        Without migrations, missing tables are created from ``metadata()`` and existing ones
        left alone.  With them, new tables are created at the newest revision, and older ones
        are brought up to it by ``ci-master upgrade-master`` (``start`` refuses until then).
        The revisions are stamped in the plugin's own version table, ``alembic_version_<name>``.
        """
        return None

    def web_resources(self, data: Any) -> dict[str, Any]:
        """``{prefix: resource}`` to mount on the web server, e.g. ``{"v1": resource}``."""
        return {}

    def services(self, data: Any) -> list[Any]:
        """twisted.application services to run while the plugin is enabled (started after the data API)."""
        return []


def available_plugins() -> dict[str, EntryPoint]:
    """The plugins installed packages offer, by entry point name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_plugin(spec: Any) -> Any:
    """The plugin object for what master.cfg names.

    *spec* is a plugin object; a plugin class (made with no arguments); the name of an
    entry point of ``ci_master.plugins``; or a dotted name ``package.module:attr`` (or
    ``package.module.attr``) of a class or object.
    """
    if isinstance(spec, str):
        installed = available_plugins()
        if spec in installed:
            try:
                target = installed[spec].load()
            except Exception as e:
                raise PluginError(f"plugin {spec!r}: its entry point failed to load: {type(e).__name__}: {e}") from None
        elif ":" in spec or "." in spec:
            module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
            try:
                module = importlib.import_module(module_name)
            except ImportError as e:
                raise PluginError(f"plugin {spec!r}: cannot import {module_name}: {e}") from None
            try:
                target = getattr(module, attr)
            except AttributeError:
                raise PluginError(f"plugin {spec!r}: {module_name} has no {attr!r}") from None
        else:
            known = ", ".join(sorted(installed)) or "none installed"
            raise PluginError(f"no plugin named {spec!r} (entry points: {known}; or give a dotted name)")
    else:
        target = spec
    if isinstance(target, type):
        try:
            target = target()
        except TypeError as e:
            raise PluginError(f"plugin {spec!r} needs arguments; make it in master.cfg instead ({e})") from None
    return target
