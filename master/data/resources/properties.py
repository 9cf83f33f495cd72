"""Properties as one object, ``{name: [value, source]}``, as Buildbot's web UI reads them.

``/builds/B/properties`` answers ``{"properties": [{name: [value, source], ...}]}`` (one object,
like a single resource); the build page shows it in its Properties tab and follows
``builds/B/properties/update`` events, which carry the properties just set.  Build requests
(their buildset's), buildsets and changes have theirs too; those never change once made.
The same properties are also offered inline, e.g. by ``/builds?property=*``.
"""

from __future__ import annotations

from typing import Any

from master.data.base import Declaration, Endpoint, Field, ResourceType
from master.data.types import JsonObject, String
from master.db import schema

bp = schema.build_properties


class PropertiesEndpoint(Endpoint):
    """Reads the properties of the build or buildset the path names (None when it does not exist: 404)."""

    def __init__(self, pattern: str, owner: tuple[str, ...], doc: str) -> None:
        super().__init__(pattern, doc=doc)
        self.owner = owner

    async def get(self, data: Any, spec: Any, args: dict[str, Any]) -> dict[str, Any] | None:
        """The owner's ``properties`` field, read with ``property=*``."""
        path = tuple(str(args[part[1:]]) if part.startswith(":") else part for part in self.owner)
        endpoint, _ = data.resolve(path)
        # builds and buildsets load properties when asked (property=*); changes always do
        owner = await data.get(path, query={"property": ["*"]} if "property" in endpoint.options else {})
        return None if owner is None else dict(owner.get("properties") or {})


class Properties(ResourceType):
    """``/builds/B/properties``, ``/builders/B/builds/N/properties``, ``/buildsets/S/properties``."""

    name = "property"
    plural = "properties"
    id_field = "name"
    # only a build's change; the others are fixed when made (listed so that they can be watched)
    event_paths = (
        "builds/:buildid/properties",
        "buildrequests/:buildrequestid/properties",
        "buildsets/:bsid/properties",
        "changes/:changeid/properties",
    )
    doc = "the properties of a build or buildset: one object mapping each name to [value, source]"

    def declare(self) -> Declaration:
        """The endpoints; the fields describe one property (the object maps names to [value, source])."""
        fields = {
            "name": Field(String(), bp.c.name, "the property's name (a key of the object)"),
            "value": Field(JsonObject(), None, "[value, source]"),
        }
        endpoints = [
            PropertiesEndpoint("/builds/n:buildid/properties", ("builds", ":buildid"),
                               "the properties of a build"),
            PropertiesEndpoint("/builders/n:builderid/builds/n:number/properties",
                               ("builders", ":builderid", "builds", ":number"),
                               "the properties of a build, by builder and number"),
            PropertiesEndpoint("/buildsets/n:bsid/properties", ("buildsets", ":bsid"),
                               "the properties of a buildset"),
            PropertiesEndpoint("/buildrequests/n:buildrequestid/properties", ("buildrequests", ":buildrequestid"),
                               "the properties of a build request (its buildset's)"),
            PropertiesEndpoint("/changes/n:changeid/properties", ("changes", ":changeid"),
                               "the properties of a change"),
        ]
        return bp, fields, endpoints, {}

    async def produce_build_properties(self, buildid: int, properties: dict[str, Any]) -> None:
        """Publish ``builds/B/properties/update`` with the properties just set, ``{name: [value, source]}``.

        The keys are not made from the entity's fields (it has only property names), so this
        does not go through :meth:`produce_event`.
        """
        key = ("builds", str(buildid), "properties", "update")
        await self.data.events.produce(self, properties, "update", [key])
