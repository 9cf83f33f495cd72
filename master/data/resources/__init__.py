"""The core resource types, with the field names and shapes of Buildbot's REST API v2."""

from __future__ import annotations

from master.data.base import ResourceType


def core_resource_types() -> list[ResourceType]:
    """A fresh instance of every core resource type."""
    from master.data.resources import (
        artifacts,
        builders,
        buildrequests,
        builds,
        buildsets,
        changes,
        forceschedulers,
        logs,
        masters,
        projects,
        properties,
        schedulers,
        sourcestamps,
        steps,
        workers,
    )

    return [
        masters.Masters(),
        projects.Projects(),
        builders.Builders(),
        builds.Builds(),
        workers.Workers(),
        schedulers.Schedulers(),
        forceschedulers.ForceSchedulers(),
        sourcestamps.SourceStamps(),
        changes.Changes(),
        buildsets.Buildsets(),
        buildrequests.BuildRequests(),
        steps.Steps(),
        logs.Logs(),
        logs.LogChunks(),
        properties.Properties(),
        artifacts.Artifacts(),
    ]
