"""``data.updates`` is typed by ``CoreUpdates``: the interface and the core's update methods must agree.

mypy checks every ``data.updates.<name>(...)`` call against :class:`master.data.updates.CoreUpdates`;
at run time the calls reach the resource types' ``@update_method``s.  These tests fail when the two
drift apart: a method added, removed or renamed on one side only, or a parameter changed (name,
kind, default, annotation) or a return type.
"""

from __future__ import annotations

import inspect

import pytest

from master.data.base import ResourceType, is_update_method, update_method
from master.data.connector import DataAPI
from master.data.resources import core_resource_types
from master.data.updates import CoreUpdates
from tests.notes_plugin import Notes, NotesPlugin


def _declared() -> dict[str, inspect.Signature]:
    """The methods CoreUpdates declares, by name."""
    return {
        name: inspect.signature(member)
        for name, member in vars(CoreUpdates).items()
        if inspect.iscoroutinefunction(member)
    }


def _registered() -> dict[str, tuple[type[ResourceType], inspect.Signature]]:
    """The update methods of the core resource types, by name, with the class defining each."""
    found: dict[str, tuple[type[ResourceType], inspect.Signature]] = {}
    for rtype in core_resource_types():
        for cls in type(rtype).__mro__:
            for name, member in vars(cls).items():
                if is_update_method(member) and name not in found:
                    found[name] = (type(rtype), inspect.signature(member))
    return found


def test_the_same_methods_are_declared_and_registered() -> None:
    declared, registered = set(_declared()), set(_registered())
    assert declared - registered == set(), "in CoreUpdates but no core resource type has it"
    assert registered - declared == set(), "a core update method missing from CoreUpdates"
    assert len(declared) >= 50


@pytest.mark.parametrize("name", sorted(_registered()))
def test_each_method_has_the_same_signature(name: str) -> None:
    owner, actual = _registered()[name]
    declared = _declared()[name]
    # annotations are compared as written (the modules use postponed annotations): the same text
    assert declared == actual, f"{owner.__name__}.{name}{actual} != CoreUpdates.{name}{declared}"


def test_the_live_namespace_provides_every_declared_method() -> None:
    data = DataAPI(storage=None)  # registration alone touches no storage
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    for name in _declared():
        method = getattr(data.updates, name)
        assert inspect.ismethod(method) and is_update_method(method.__func__), name


def test_a_drifted_signature_is_caught() -> None:
    """The comparison the tests above rely on sees a renamed parameter and a changed default."""

    class Drifted(ResourceType):
        @update_method
        async def master_heartbeat(self, master_id: int) -> None:
            """A renamed parameter."""

        @update_method
        async def finish_log(self, logid: int = 0) -> None:
            """A default added."""

    for name in ("master_heartbeat", "finish_log"):
        assert inspect.signature(vars(Drifted)[name]) != _declared()[name]


def test_a_plugin_reaches_its_own_update_methods_through_its_resource_type() -> None:
    data = DataAPI(storage=None)
    data.add_plugin(NotesPlugin())
    notes_type = data.resource_type(Notes)
    assert notes_type is data.rtypes["notes"]
    # the namespace still carries the plugin's method, bound to the same object
    assert data.updates.add_note.__self__ is notes_type

    class Unregistered(ResourceType):
        pass

    with pytest.raises(LookupError, match="no resource type of class Unregistered"):
        data.resource_type(Unregistered)
