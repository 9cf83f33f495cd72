"""The DataAPI: the registry of resource types and the one door to read and change data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, TypeVar, cast

from zope.interface.verify import verifyObject

from master.data.base import ActionCall, Collection, Endpoint, Kind, ResourceType, is_update_method
from master.data.errors import Conflict, InvalidParams, InvalidPath, NotFound, UnknownAction
from master.data.events import EventHub
from master.data.interfaces import IEndpoint, IPlugin, IResourceType
from master.data.pathmatch import Matcher, split_path
from master.data.readscope import check_read
from master.data.resultspec import Limits, ResultSpec, parse_result_spec
from master.data.seams import AuthPolicy, EngineControls
from master.data.types import check_free_value, check_text
from master.db.interfaces import IStorage

if TYPE_CHECKING:
    from master.data.updates import CoreUpdates

R = TypeVar("R", bound=ResourceType)


class DataAPI:
    """Resource types registered by the core and by plugins, over one storage backend.

    ``get`` reads, ``control`` runs actions, ``updates.<name>`` are the update methods the
    engine and plugins write through, and ``events`` is where each change is published.

    ``updates`` is a namespace filled as resource types register; it is declared as
    :class:`~master.data.updates.CoreUpdates`, the core's methods, so that their calls are
    type-checked.  A plugin reaches its own through :meth:`resource_type`.

    What the layers above hand it (:mod:`master.data.seams`): *basedir*, the master directory
    (artifacts live under it; None for a DataAPI of no master), and, once they exist, the
    engine's controls (:meth:`bind_engine`), the auth policy (:meth:`bind_auth`) and this
    master's id (:meth:`bind_master`).
    """

    def __init__(
        self, storage: IStorage, limits: Limits | None = None, *, basedir: str | Path | None = None,
        auth: AuthPolicy | None = None,
    ) -> None:
        self.storage = storage
        self.limits = limits or Limits()
        # filled by add_resource_type; tests/test_updates_protocol.py checks it provides CoreUpdates
        self.updates: CoreUpdates = cast("CoreUpdates", SimpleNamespace())
        self.rtypes: dict[str, ResourceType] = {}
        self.events = EventHub(storage, self.rtypes)
        self.basedir: Path | None = None if basedir is None else Path(basedir)
        self.auth: AuthPolicy | None = auth  # the master's, for plugins' own APIs
        self.engine: EngineControls | None = None  # the engine running builds here, while it runs
        self.plugins: list[Any] = []
        self._matcher: Matcher[Endpoint] = Matcher()

    # -- what the layers above hand over (master.data.seams) -------------------------------------

    def bind_engine(self, engine: EngineControls | None) -> None:
        """Reach *engine* for the actions that need one (the engine binds itself on start, None on stop)."""
        self.engine = engine

    def controls(self) -> EngineControls:
        """The engine bound by :meth:`bind_engine`; ``Conflict`` when no engine runs on this master."""
        if self.engine is None:
            raise Conflict("no build engine runs on this master")
        return self.engine

    def bind_auth(self, auth: AuthPolicy | None) -> None:
        """Carry the master's auth policy, which plugins' routes check their callers with."""
        self.auth = auth

    def bind_master(self, masterid: int) -> None:
        """Journal this master's events under *masterid* (the id ``master_active`` returned)."""
        self.events.masterid = masterid

    # -- registry ---------------------------------------------------------------------------

    def add_resource_type(self, rtype: ResourceType) -> None:
        """Register a resource type, its endpoints and its update methods."""
        verifyObject(IResourceType, rtype)
        if rtype.plural in self.rtypes:
            raise ValueError(f"resource type {rtype.plural!r} is already registered")
        if rtype.id_field not in rtype.fields or rtype.fields[rtype.id_field].column is None:
            raise ValueError(f"resource type {rtype.plural!r}: id field {rtype.id_field!r} needs a column")
        for endpoint in rtype.endpoints:
            verifyObject(IEndpoint, endpoint)
        updates = {
            name: getattr(rtype, name)
            for name in dir(type(rtype))
            if is_update_method(getattr(type(rtype), name))
        }
        for name in updates:
            if hasattr(self.updates, name):
                raise ValueError(f"update method {name!r} of {rtype.plural!r} is already defined")
        added = []
        try:
            for endpoint in rtype.endpoints:
                self._matcher.add(endpoint.pattern, endpoint)
                added.append(endpoint.pattern)
        except ValueError:
            for pattern in added:
                self._matcher.remove(pattern)
            raise
        for name, method in updates.items():
            setattr(self.updates, name, method)
        self.rtypes[rtype.plural] = rtype
        rtype.attach(self)

    def resource_type(self, cls: type[R]) -> R:
        """The registered resource type of class *cls*, e.g. for a plugin to call its own update methods, typed.

        Raises LookupError when no resource type of that class is registered.
        """
        for rtype in self.rtypes.values():
            if isinstance(rtype, cls):
                return rtype
        raise LookupError(f"no resource type of class {cls.__name__} is registered")

    def add_plugin(self, plugin: Any) -> None:
        """Register the resource types a plugin provides."""
        verifyObject(IPlugin, plugin)
        added = []
        try:
            for rtype in plugin.resource_types():
                self.add_resource_type(rtype)
                rtype.plugin = plugin
                added.append(rtype.plural)
        except ValueError:
            for plural in added:
                self.remove_resource_type(plural)
            raise
        self.plugins.append(plugin)

    def remove_resource_type(self, plural: str) -> None:
        """Unregister a resource type with its endpoints and update methods."""
        rtype = self.rtypes.pop(plural)
        for endpoint in rtype.endpoints:
            self._matcher.remove(endpoint.pattern)
        for name in dir(type(rtype)):
            if is_update_method(getattr(type(rtype), name)):
                delattr(self.updates, name)

    def remove_plugin(self, plugin: Any) -> None:
        """Unregister the resource types of a plugin added before."""
        self.plugins.remove(plugin)
        for plural in [p for p, rtype in self.rtypes.items() if getattr(rtype, "plugin", None) is plugin]:
            self.remove_resource_type(plural)

    def endpoints(self) -> list[Endpoint]:
        """Every registered endpoint, sorted by pattern."""
        return sorted((value for _, value in self._matcher.patterns()), key=lambda e: e.pattern)

    def root_links(self) -> list[str]:
        """Plural names of the resource types with a top-level collection."""
        return sorted(
            e.rtype.plural
            for e in self.endpoints()
            if e.kind is Kind.COLLECTION and e.pattern.strip("/") == e.rtype.plural
        )

    # -- reading ----------------------------------------------------------------------------

    def resolve(self, path: str | Sequence[str]) -> tuple[Endpoint, dict[str, Any]]:
        """Find the endpoint and typed arguments for a path, or raise InvalidPath."""
        segments = split_path(path)
        found = self._matcher.match(segments)
        if found is None:
            raise InvalidPath(f"invalid path: {'/'.join(segments) or '(root)'}")
        return found

    def parse_spec(self, endpoint: Endpoint, args: Mapping[str, Sequence[str]]) -> ResultSpec:
        """Parse query arguments for *endpoint* (raises InvalidQuery naming the parameter)."""
        return parse_result_spec(
            endpoint.rtype,
            args,
            collection=endpoint.kind is Kind.COLLECTION,
            limits=self.limits,
            options=endpoint.options,
        )

    async def get(
        self,
        path: str | Sequence[str],
        spec: ResultSpec | None = None,
        query: Mapping[str, Sequence[str]] | None = None,
    ) -> Any:
        """Read *path*: an entity or None (single), a Collection, or RawContent.

        Give either a parsed *spec* or raw *query* arguments (or neither, for defaults).
        A collection under a parent that does not exist raises NotFound.  Inside a plugin
        route's read scope (:mod:`master.data.readscope`) the caller must be allowed to read
        the resource type first.
        """
        endpoint, args = self.resolve(path)
        check_read(endpoint.rtype.plural)
        if spec is None:
            spec = self.parse_spec(endpoint, query or {})
        return await self.get_resolved(endpoint, args, spec, path)

    async def get_resolved(
        self, endpoint: Endpoint, args: dict[str, Any], spec: ResultSpec, path: str | Sequence[str]
    ) -> Any:
        """:meth:`get` for a path the caller has resolved already (the REST layer does, to parse its query)."""
        result = await endpoint.get(self, spec, args)
        if isinstance(result, Collection) and not result.items:
            await self._check_parent(split_path(path))
        return result

    async def _check_parent(self, segments: tuple[str, ...]) -> None:
        for cut in range(len(segments) - 1, 0, -1):
            found = self._matcher.match(segments[:cut])
            if found is not None and found[0].kind is Kind.SINGLE:
                endpoint, args = found
                spec = self.parse_spec(endpoint, {"field": [endpoint.rtype.id_field]})
                if await endpoint.get(self, spec, args) is None:
                    raise NotFound(f"not found: {'/'.join(segments[:cut])}")
                return

    # -- controlling ------------------------------------------------------------------------

    async def control(
        self, path: str | Sequence[str], action: str, params: Mapping[str, Any], user: Any = None
    ) -> Any:
        """Run *action* on *path* with *params*; raise UnknownAction, InvalidParams or NotFound."""
        endpoint, args = self.resolve(path)
        found = endpoint.actions.get(action)
        if found is None:
            known = ", ".join(sorted(endpoint.actions)) or "none"
            raise UnknownAction(f"action {action!r} is not supported at {endpoint.pattern} (actions: {known})")
        checked = check_params(found, params)
        entity = None
        if endpoint.kind is Kind.SINGLE:
            entity = await endpoint.get(self, self.parse_spec(endpoint, {}), args)
            if entity is None:
                raise NotFound(f"not found: {'/'.join(split_path(path))}")
        return await found(ActionCall(self, args, checked, entity, user))


def check_params(action: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate action parameters by their declared types; collect one message per bad field."""
    errors: dict[str, str] = {}
    checked: dict[str, Any] = {}
    for name, param in action.params.items():
        if name in params:
            try:
                checked[name] = param.type.from_json(params[name])
            except ValueError as e:
                errors[name] = str(e)
        elif param.required:
            errors[name] = "required"
        else:
            checked[name] = param.default
    for name, value in params.items():
        if name not in action.params:
            if not action.open_params:
                errors[name] = "unknown parameter"
                continue
            try:  # no declared type checks it: nothing neither backend can store, at any depth
                check_text(name)
                check_free_value(value)
                checked[name] = value
            except ValueError as e:
                errors[name] = str(e)
    if errors:
        raise InvalidParams(errors)
    return checked

