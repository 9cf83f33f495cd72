"""The current state of the entities a master is changing, so that their events need no read-back.

Update methods publish whole entities.  Reading the row back after each write costs a query per
event; for a build, step or log that this master created and that only its own update methods
change until it finishes, every field is known already: the values it was created with, and the
columns each update wrote.  :class:`LiveEntities` keeps those entities (in field order, as a read
gives them) and hands out the next state of one after an update.

It only answers for resource types whose fields it was set up with: a field added to the type
later (computed, perhaps, from several columns) makes it answer nothing, and the update methods
then read the entity back as before.  Entities are forgotten when they finish, and the oldest are
forgotten beyond *size* (an entity not found here is read back: a cache miss is never wrong).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any


class LiveEntities:
    """Entities of one resource type by id, for the update methods that publish their events."""

    def __init__(self, rtype: Any, known_fields: Iterable[str], size: int = 20_000) -> None:
        # in the order a read gives them: the columns, then the fields its loaders fill
        fields = rtype.fields
        self._fields = tuple([n for n in fields if fields[n].column is not None] +
                             [n for n in fields if fields[n].column is None])
        # a field this code does not know how to keep up to date: never answer, always read back
        self.enabled = set(self._fields) == set(known_fields)
        self._size = size
        self._entities: OrderedDict[Any, dict[str, Any]] = OrderedDict()

    def put(self, entity_id: Any, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """Remember the entity made of *values* (every field, put in the order a read gives them); return it.

        None when disabled.
        """
        if not self.enabled:
            return None
        entity = {name: values[name] for name in self._fields}
        self._entities[entity_id] = entity
        if len(self._entities) > self._size:
            self._entities.popitem(last=False)
        return dict(entity)

    def known(self, entity_id: Any) -> bool:
        """Whether the entity's state is known here."""
        return entity_id in self._entities

    def update(self, entity_id: Any, **values: Any) -> dict[str, Any] | None:
        """The entity with *values* changed (and remembered so), or None when it is not known here."""
        entity = self._entities.get(entity_id)
        if entity is None:
            return None
        entity.update(values)
        return dict(entity)

    def finish(self, entity_id: Any, **values: Any) -> dict[str, Any] | None:
        """Like :meth:`update`, for the last change this master makes: the entity is forgotten."""
        entity = self._entities.pop(entity_id, None)
        if entity is None:
            return None
        entity.update(values)
        return entity

    def forget(self, entity_id: Any) -> None:
        """Drop an entity whose state is no longer known here."""
        self._entities.pop(entity_id, None)
