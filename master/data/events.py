"""The change path's last steps: every event journaled with an id, then handed to its subscribers.

An event is a routing key (path segments plus the event name, e.g. ``('builds', '12', 'finished')``)
and the whole entity; one change is published under every path its resource is reachable by.
Subscriptions are key patterns in which ``*`` matches any one segment.

Ids and order: :meth:`EventHub.produce` appends the event to the storage's journal, which gives
it an id; ids are committed in increasing order on every backend (PostgreSQL serializes appends
with an advisory lock), so delivering "every row after the last id delivered", in id order, is
exact.  Events of this master are delivered from memory as soon as their id is next; events of
other masters sharing a PostgreSQL database are read from the journal when its NOTIFY arrives.
A websocket client that reconnects resumes with :meth:`EventHub.replay` from the last id it saw,
for as long as the journal keeps events (``event_retention_minutes``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from master.db import schema
from master.metrics import metrics_of

if TYPE_CHECKING:
    from master.data.base import ResourceType
    from master.db.interfaces import IStorage

Key = tuple[str, ...]
Callback = Callable[[Key, Mapping[str, Any]], Awaitable[None] | None]

log = Logger()
ev = schema.events

READ_BATCH = 500
"""Journal rows read per query when catching up."""


def key_matches(pattern: Key, key: Key) -> bool:
    """True when *key* has the length of *pattern* and equals it wherever it is not ``*``."""
    return len(pattern) == len(key) and all(p == "*" or p == k for p, k in zip(pattern, key, strict=True))


def split_key(path: str) -> Key:
    """``"builds/*/*"`` -> ``("builds", "*", "*")``."""
    return tuple(path.strip("/").split("/"))


class _Node:
    """One segment position of :class:`PatternIndex`: its literal children, its ``*`` child, and what ends here."""

    __slots__ = ("literal", "members", "pattern", "wild")

    def __init__(self) -> None:
        self.pattern: Key = ()
        self.literal: dict[str, _Node] = {}
        self.wild: _Node | None = None
        self.members: set[Any] = set()


class PatternIndex:
    """Key patterns and their members, indexed segment by segment (a tree of literal segments and ``*``).

    Matching a key walks at most two branches per segment (the literal one and ``*``), so its
    cost depends on the key's length and on how many patterns actually match, not on how many
    patterns are held: a client holding 20,000 ``builds/<id>/*`` costs an event of build 12
    one dictionary look-up, not 20,000 comparisons.
    """

    def __init__(self) -> None:
        self._roots: dict[int, _Node] = {}  # by key length: keys only ever match patterns of their length
        self._patterns: dict[Key, _Node] = {}

    def __len__(self) -> int:
        return len(self._patterns)

    def add(self, pattern: Key, member: Any) -> None:
        """Add *member* under *pattern*."""
        node = self._patterns.get(pattern)
        if node is None:
            node = self._roots.setdefault(len(pattern), _Node())
            for segment in pattern:
                if segment == "*":
                    node.wild = node = node.wild or _Node()
                else:
                    node = node.literal.setdefault(segment, _Node())
            node.pattern = pattern
            self._patterns[pattern] = node
        node.members.add(member)

    def discard(self, pattern: Key, member: Any) -> None:
        """Remove *member* from *pattern*; a pattern left without members is pruned from the tree."""
        node = self._patterns.get(pattern)
        if node is None:
            return
        node.members.discard(member)
        if node.members:
            return
        del self._patterns[pattern]
        path = [self._roots[len(pattern)]]
        for segment in pattern:
            parent = path[-1]
            child = parent.wild if segment == "*" else parent.literal[segment]
            assert child is not None  # the pattern is held, so every node on its branch exists
            path.append(child)
        for depth in range(len(pattern), 0, -1):
            node, parent, segment = path[depth], path[depth - 1], pattern[depth - 1]
            if node.members or node.literal or node.wild is not None:
                break
            if segment == "*":
                parent.wild = None
            else:
                del parent.literal[segment]
        root = self._roots[len(pattern)]
        if not root.literal and root.wild is None and not root.members:
            del self._roots[len(pattern)]

    def members(self, pattern: Key) -> set[Any]:
        """The members of *pattern* (empty when it is not held)."""
        node = self._patterns.get(pattern)
        return node.members if node is not None else set()

    def match(self, key: Key) -> list[tuple[Key, set[Any]]]:
        """Each pattern matching *key* (``*`` matches any one segment), with its members."""
        root = self._roots.get(len(key))
        if root is None:
            return []
        level = [root]
        for segment in key:
            following = []
            for node in level:
                child = node.literal.get(segment)
                if child is not None:
                    following.append(child)
                if node.wild is not None:
                    following.append(node.wild)
            if not following:
                return []
            level = following
        return [(node.pattern, node.members) for node in level if node.members]


@dataclass(frozen=True, slots=True)
class Event:
    """One published change: its journal id, the resource type's plural, its keys and the entity."""

    id: int
    rtype: str
    keys: tuple[Key, ...]
    entity: Mapping[str, Any]


class Subscription:
    """A callback for keys matching a pattern; ``cancel()`` ends it."""

    def __init__(self, hub: EventHub, pattern: Key, callback: Callback) -> None:
        self.hub = hub
        self.pattern = pattern
        self.callback = callback

    def cancel(self) -> None:
        """Stop receiving events."""
        self.hub._subscriptions.discard(self.pattern, self)


class TooOld(Exception):
    """The events after the id asked for are no longer all in the journal."""


class EventHub:
    """Journals produced events and delivers them, in id order, to subscriptions and listeners.

    *storage* may be None (an in-memory hub for tests of the routing alone): ids are then
    counted here and nothing is journaled.
    """

    def __init__(
        self, storage: IStorage | None = None, resource_types: Mapping[str, ResourceType] | None = None
    ) -> None:
        self._storage = storage
        self._rtypes = resource_types if resource_types is not None else {}
        self._subscriptions = PatternIndex()
        self._listeners: list[Callable[[Event], None]] = []
        self.masterid: int | None = None
        self.delivered: int | None = None  # the id of the last event delivered here
        self._own: dict[int, Event] = {}  # produced here, not yet delivered
        self._lock = defer.DeferredLock()
        self._listener: Any = None
        self._memory_ids = 0
        # journal rows waiting for the append running now to end, each with its producer's Deferred
        self._to_append: list[tuple[dict[str, Any], defer.Deferred[int]]] = []
        self._appending = False

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(self, pattern: Key | str, callback: Callback) -> Subscription:
        """Call *callback(key, entity)* for every event whose key matches *pattern*."""
        if isinstance(pattern, str):
            pattern = split_key(pattern)
        subscription = Subscription(self, tuple(pattern), callback)
        self._subscriptions.add(subscription.pattern, subscription)
        return subscription

    def add_listener(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call *listener(event)* for every event, in id order; return a function that removes it.

        Listeners are synchronous: they must not wait (the websocket queues what it sends).
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- producing --------------------------------------------------------------------------

    async def produce(self, rtype: ResourceType, entity: Mapping[str, Any], event: str, keys: list[Key]) -> None:
        """Journal one event of *rtype* under each of its *keys*, then deliver it (and any before it)."""
        if not keys:
            return
        metrics_of(self).events_published.labels(rtype.plural).inc()
        if self._storage is None:
            self._memory_ids += 1
            await self._deliver([Event(self._memory_ids, rtype.plural, tuple(keys), entity)])
            return
        if self.delivered is None:
            await self._start_ids(self._storage)
        assert self.delivered is not None  # _start_ids set it
        journaled = getattr(rtype, "journal_entity", None)
        stored = journaled(entity) if journaled is not None else entity
        event_id = await self._journal(self._storage, {
            "at": int(time.time()),
            "masterid": self.masterid,
            "keys": "\n".join("/".join(key) for key in keys),
            "rtype": rtype.plural,
            "entity": orjson.dumps(stored, default=str).decode(),
        })
        if event_id > self.delivered:  # else a catch-up has delivered it from the journal already
            self._own[event_id] = Event(event_id, rtype.plural, tuple(keys), entity)
        await self.catch_up(event_id)

    async def _journal(self, storage: IStorage, row: dict[str, Any]) -> int:
        """Append *row* to the journal; return its id.

        Group commit: while one append runs, the rows produced meanwhile wait and then go
        together, in the order they were produced, so a busy master journals many events per
        trip to the database instead of one.
        """
        appended: defer.Deferred[int] = defer.Deferred()
        self._to_append.append((row, appended))
        if not self._appending:
            self._appending = True
            defer.ensureDeferred(self._append_waiting(storage))
        return await appended

    async def _append_waiting(self, storage: IStorage) -> None:
        try:
            while self._to_append:
                batch, self._to_append = self._to_append, []
                try:
                    ids = await storage.append_events([row for row, _ in batch])
                except Exception:
                    failure = Failure()
                    for _, appended in batch:
                        appended.errback(failure)
                    continue
                for (_, appended), event_id in zip(batch, ids, strict=True):
                    appended.callback(event_id)
        finally:
            self._appending = False

    async def _start_ids(self, storage: IStorage) -> None:
        async with self._lock:
            if self.delivered is None:
                rows = await storage.fetch_all(sa.select(sa.func.max(ev.c.id).label("last")))
                self.delivered = rows[0]["last"] or 0

    async def catch_up(self, through: int | None = None) -> None:
        """Deliver every journaled event after the last one delivered (at least through id *through*).

        Events of this master come from memory when they are next in line; anything else is
        read from the journal, which holds every id in commit order.
        """
        if self._storage is None:
            return
        if self.delivered is None:
            await self._start_ids(self._storage)
        assert self.delivered is not None  # _start_ids set it
        pending: list[Any] = []
        async with self._lock:
            while through is None or self.delivered < through:
                nxt = self._own.pop(self.delivered + 1, None)
                if nxt is not None:
                    pending += self._deliver_now([nxt])
                    continue
                rows = await self._storage.fetch_all(
                    sa.select(ev).where(ev.c.id > self.delivered).order_by(ev.c.id).limit(READ_BATCH)
                )
                if not rows:
                    break
                events = [
                    self._own.pop(row["id"]) if row["id"] in self._own else await self._from_row(row) for row in rows
                ]
                metrics_of(self).journal_rows_read(rows, self.masterid)
                pending += self._deliver_now(events)
                if through is None and len(rows) < READ_BATCH:
                    break
        for result in pending:
            await self._await_callback(result)

    async def _deliver(self, events: list[Event]) -> None:
        for result in self._deliver_now(events):
            await self._await_callback(result)

    def _deliver_now(self, events: list[Event]) -> list[tuple[Key, Any]]:
        """Call every listener and subscription; return what asynchronous callbacks are still doing."""
        pending = []
        for event in events:
            if self.delivered is None or event.id > self.delivered:
                self.delivered = event.id
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:
                    log.failure("event listener failed on event {id}", id=event.id)
            for key in event.keys:
                for subscription in [s for _, members in self._subscriptions.match(key) for s in members]:
                    try:
                        result = subscription.callback(key, event.entity)
                    except Exception:
                        log.failure("event subscriber failed on {key}", key="/".join(key))
                        continue
                    if result is not None:
                        pending.append((key, result))
        return pending

    @staticmethod
    async def _await_callback(pending: tuple[Key, Any]) -> None:
        key, result = pending
        try:
            await result
        except Exception:
            log.failure("event subscriber failed on {key}", key="/".join(key))

    async def _from_row(self, row: Mapping[str, Any]) -> Event:
        """An event read back from the journal (another master's, or one replayed)."""
        entity = orjson.loads(row["entity"])
        rtype = self._rtypes.get(row["rtype"])
        expand = getattr(rtype, "expand_journaled", None)
        if expand is not None:
            try:
                entity = await expand(entity)
            except Exception:
                log.failure("expanding event {id} of {rtype} failed", id=row["id"], rtype=row["rtype"])
        keys = tuple(split_key(key) for key in row["keys"].split("\n"))
        return Event(row["id"], row["rtype"], keys, entity)

    # -- the journal ------------------------------------------------------------------------

    async def replay(self, since: int, through: int) -> list[Event]:
        """The journaled events with ids in (*since*, *through*], in order; TooOld if some are gone."""
        if self._storage is None:
            raise TooOld(f"no journal: events after {since} cannot be replayed")
        oldest = await self._storage.fetch_all(sa.select(sa.func.min(ev.c.id).label("first")))
        first = oldest[0]["first"]
        # the journal keeps every id from `first` on; ids below it were pruned (or never used)
        if since < through and (first is None or first > since + 1):
            raise TooOld(f"events after {since} are no longer kept (the oldest kept is {first})")
        events: list[Event] = []
        last = since
        while last < through:
            rows = await self._storage.fetch_all(
                sa.select(ev).where(ev.c.id > last, ev.c.id <= through).order_by(ev.c.id).limit(READ_BATCH)
            )
            if not rows:
                break
            events += [await self._from_row(row) for row in rows]
            last = rows[-1]["id"]
        return events

    async def prune(self, keep_seconds: float) -> int:
        """Delete journaled events older than *keep_seconds*; return how many."""
        if self._storage is None:
            return 0
        return await self._storage.execute(sa.delete(ev).where(ev.c.at < int(time.time() - keep_seconds)))

    # -- other masters ----------------------------------------------------------------------

    def listen(self) -> None:
        """Deliver the events other masters journal too (their NOTIFY wakes a catch-up)."""
        if self._storage is not None and self._listener is None:
            self._listener = self._storage.listen(lambda: defer.ensureDeferred(self._safe_catch_up()))

    def stop_listening(self) -> None:
        """Stop reading other masters' events."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    async def _safe_catch_up(self) -> None:
        try:
            await self.catch_up()
        except Exception:
            log.failure("reading the event journal failed; the next notification retries")
