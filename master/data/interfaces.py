"""The interfaces that resource types, endpoints, actions and plugins provide."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from sqlalchemy import MetaData

    from master.data.connector import DataAPI
    from master.data.resultspec import ResultSpec


class IResourceType(Interface):
    """A kind of resource: its names, fields, getters, and the paths its events go out on."""

    name = Attribute("singular name, e.g. 'build'")
    plural = Attribute("plural name, e.g. 'builds'; the key of REST envelopes")
    id_field = Attribute("the field that identifies one entity, e.g. 'buildid'")
    fields = Attribute("dict: field name -> master.data.base.Field")
    endpoints = Attribute("list of IEndpoint")
    event_paths = Attribute("path templates such as 'builds/:buildid' under which changes are published")

    def attach(data: DataAPI) -> None:
        """Called once when registered with a DataAPI (gives access to storage and events)."""


class IEndpoint(Interface):
    """A getter at one typed path pattern, with the actions (controls) allowed there."""

    pattern = Attribute("typed path pattern, e.g. '/builders/n:builderid/builds/n:number'")
    kind = Attribute("master.data.base.Kind: SINGLE, COLLECTION or RAW")
    actions = Attribute("dict: action name -> IAction")
    options = Attribute("extra query parameters this endpoint reads itself (passed in spec.options)")

    async def get(data: DataAPI, spec: ResultSpec, args: dict[str, Any]) -> Any:
        """Return the entity (SINGLE, or None when missing), a Collection, or a RawContent."""


class IAction(Interface):
    """A control: a named operation with typed parameters."""

    name = Attribute("the JSON-RPC method name, e.g. 'stop'")
    params = Attribute("dict: parameter name -> master.data.base.Param")

    async def __call__(call: Any) -> Any:
        """Perform the action described by an ActionCall; return a JSON-encodable result."""


class IPlugin(Interface):
    """Something a site enables in master.cfg that adds to ci-master.

    A plugin may contribute resource types (with their endpoints and actions), tables on
    its own SQLAlchemy MetaData, and web resources mounted at URL prefixes of its own.
    """

    name = Attribute("a short unique name")

    def resource_types() -> list[Any]:
        """Return the IResourceType objects this plugin adds."""

    def metadata() -> MetaData | None:
        """Return the sqlalchemy.MetaData holding this plugin's tables, or None."""

    def web_resources(data: DataAPI) -> Mapping[str, Any]:
        """Return {url prefix: twisted.web IResource} to mount, given the DataAPI."""

    def services(data: DataAPI) -> list[Any]:
        """Return twisted.application IService objects to run with the master, given the DataAPI."""
