"""The change path's last in-process step: events handed to whoever subscribed to them.

An event is a routing key (path segments plus the event name, e.g.
``('builds', '12', 'finished')``) and the whole entity.  Subscriptions are key patterns
in which ``*`` matches any one segment.  Live updates (the websocket, other masters)
subscribe here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

if TYPE_CHECKING:
    from master.data.base import ResourceType

Key = tuple[str, ...]
Callback = Callable[[Key, Mapping[str, Any]], Awaitable[None] | None]

log = Logger()


def key_matches(pattern: Key, key: Key) -> bool:
    """True when *key* has the length of *pattern* and equals it wherever it is not ``*``."""
    return len(pattern) == len(key) and all(p == "*" or p == k for p, k in zip(pattern, key, strict=True))


class Subscription:
    """A callback for keys matching a pattern; ``cancel()`` ends it."""

    def __init__(self, hub: EventHub, pattern: Key, callback: Callback) -> None:
        self.hub = hub
        self.pattern = pattern
        self.callback = callback

    def cancel(self) -> None:
        """Stop receiving events."""
        self.hub._subscriptions.discard(self)


class EventHub:
    """Delivers produced events to matching subscriptions, in production order."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self, pattern: Key | str, callback: Callback) -> Subscription:
        """Call *callback(key, entity)* for every event whose key matches *pattern*."""
        if isinstance(pattern, str):
            pattern = tuple(pattern.strip("/").split("/"))
        subscription = Subscription(self, tuple(pattern), callback)
        self._subscriptions.add(subscription)
        return subscription

    async def produce(self, rtype: ResourceType, entity: Mapping[str, Any], event: str, keys: list[Key]) -> None:
        """Deliver one event of *rtype* under each of its *keys*."""
        for key in keys:
            for subscription in list(self._subscriptions):
                if key_matches(subscription.pattern, key):
                    try:
                        result = subscription.callback(key, entity)
                        if result is not None:
                            await result
                    except Exception:
                        log.failure("event subscriber failed on {key}", key="/".join(key))
