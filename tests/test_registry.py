"""Path patterns, the registry of resource types, and events, without a database."""

from __future__ import annotations

import pytest
import pytest_twisted
from notes_plugin import Notes, NotesPlugin

from master.data.base import Endpoint, Kind
from master.data.connector import DataAPI
from master.data.errors import InvalidPath
from master.data.events import EventHub, key_matches
from master.data.pathmatch import Matcher, parse_pattern
from master.data.resources import core_resource_types


def test_pattern_types() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add("/builders/n:builderid/builds/n:number", "by-id")
    matcher.add("/builders/i:buildername/builds/n:number", "by-name")
    assert matcher.match(("builders", "3", "builds", "7")) == ("by-id", {"builderid": 3, "number": 7})
    assert matcher.match(("builders", "linux-64", "builds", "7")) == (
        "by-name", {"buildername": "linux-64", "number": 7})
    assert matcher.match(("builders", "3", "builds", "x")) is None
    assert matcher.match(("builders", "3.5", "builds", "1")) is None
    assert matcher.match(("builders", "3", "builds")) is None


def test_literal_wins_over_capture() -> None:
    matcher: Matcher[str] = Matcher()
    matcher.add("/logs/n:logid/s:name", "capture")
    matcher.add("/logs/n:logid/raw", "raw")
    assert matcher.match(("logs", "1", "raw"))[0] == "raw"
    assert matcher.match(("logs", "1", "other"))[0] == "capture"


def test_a_pattern_added_or_removed_after_matching_is_seen_and_captures_come_after_literals() -> None:
    """Matching remembers the candidates of each (length, first segment): adding or removing a pattern resets them."""
    matcher: Matcher[str] = Matcher()
    matcher.add("/s:anything/n:id", "capture-first")
    assert matcher.match(("builds", "1")) == ("capture-first", {"anything": "builds", "id": 1})
    matcher.add("/builds/n:buildid", "builds")
    assert matcher.match(("builds", "1")) == ("builds", {"buildid": 1})
    assert matcher.match(("workers", "2")) == ("capture-first", {"anything": "workers", "id": 2})
    matcher.remove("/builds/n:buildid")
    assert matcher.match(("builds", "1"))[0] == "capture-first"
    assert matcher.match(()) is None


def test_bad_and_clashing_patterns() -> None:
    with pytest.raises(ValueError):
        parse_pattern("/builds/x:buildid")
    matcher: Matcher[str] = Matcher()
    matcher.add("/builds/n:buildid", "one")
    with pytest.raises(ValueError, match="clashes"):
        matcher.add("/builds/n:other", "two")


def test_registry_with_plugin() -> None:
    data = DataAPI(storage=None)
    for rtype in core_resource_types():
        data.add_resource_type(rtype)
    data.add_plugin(NotesPlugin())
    endpoint, args = data.resolve("/notes/4")
    assert endpoint.rtype.plural == "notes" and args == {"noteid": 4}
    assert "notes" in data.root_links() and "builds" in data.root_links()
    assert hasattr(data.updates, "add_note") and hasattr(data.updates, "add_build")
    with pytest.raises(InvalidPath):
        data.resolve("/notes/x")
    with pytest.raises(ValueError, match="already registered"):
        data.add_resource_type(Notes())


def test_registry_refuses_a_clash_without_half_registering() -> None:
    data = DataAPI(storage=None)
    data.add_plugin(NotesPlugin())

    class Other(Notes):
        plural = "othernotes"
        add_note = None  # not an update method here, so only the endpoint clash is tested

        def declare(self):
            source, fields, _, loaders = super().declare()
            return source, fields, [Endpoint("/othernotes", Kind.COLLECTION), Endpoint("/notes/n:x")], loaders

    with pytest.raises(ValueError, match="clashes"):
        data.add_resource_type(Other())
    with pytest.raises(InvalidPath):
        data.resolve("/othernotes")
    assert "othernotes" not in data.rtypes


def test_event_keys_cover_every_path() -> None:
    builds = [r for r in core_resource_types() if r.plural == "builds"][0]
    entity = {"buildid": 12, "builderid": 3, "number": 7, "workerid": 2}
    assert builds.event_keys(entity, "new") == [
        ("builders", "3", "builds", "7", "new"),
        ("builds", "12", "new"),
        ("workers", "2", "builds", "12", "new"),
    ]
    # a build not yet on a worker is not published under workers/
    assert len(builds.event_keys({**entity, "workerid": None}, "new")) == 2


def test_key_matching() -> None:
    assert key_matches(("builds", "*", "*"), ("builds", "1", "new"))
    assert not key_matches(("builds", "*"), ("builds", "1", "new"))
    assert not key_matches(("builders", "*", "*"), ("builds", "1", "new"))


@pytest.mark.parametrize("pattern", ["builds/*/*", ("builds", "*", "*")])
@pytest_twisted.ensureDeferred
async def test_hub_delivers_in_order(pattern) -> None:
    hub = EventHub()
    seen = []
    subscription = hub.subscribe(pattern, lambda key, entity: seen.append(key[-1]))
    builds = [r for r in core_resource_types() if r.plural == "builds"][0]
    entity = {"buildid": 1, "builderid": 1, "number": 1, "workerid": None}
    for event in ("new", "update", "finished"):
        await hub.produce(builds, entity, event, builds.event_keys(entity, event))
    subscription.cancel()
    assert seen == ["new", "update", "finished"]
