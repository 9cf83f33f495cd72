"""The core resource types, with the field names and shapes of Buildbot's REST API v2."""

from __future__ import annotations

from master.data.base import ResourceType


def core_resource_types() -> list[ResourceType]:
    """A fresh instance of every core resource type."""
    from master.data.resources import builders, builds, masters, projects

    return [
        masters.Masters(),
        projects.Projects(),
        builders.Builders(),
        builds.Builds(),
    ]
