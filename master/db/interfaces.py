"""The storage interface that both backends provide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.sql import Executable
from zope.interface import Attribute, Interface

T = TypeVar("T")

Row = dict[str, Any]
"""A result row: column label -> value, as the driver returned it."""


@dataclass(frozen=True)
class Prepared:
    """A statement built once per *key* and compiled once per backend.

    Hot read paths describe their query by a cheap, hashable *key* (for example the
    endpoint, the selected fields and the filter operators) and a *build* function that
    makes the SQLAlchemy statement with named ``bindparam`` placeholders.  The backend
    builds and compiles it the first time it sees the key and afterwards only binds
    parameters, which keeps statement construction off the request path.
    """

    key: Hashable
    build: Callable[[], Executable]


Statement = Executable | Prepared


class ITransaction(Interface):
    """Statements run inside one database transaction."""

    async def fetch_all(statement: Statement, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run a statement returning rows (a SELECT, or a write with RETURNING)."""

    async def execute(statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement returning no rows; return the number of rows it changed."""


class IStorage(Interface):
    """A database backend: runs SQLAlchemy Core statements without blocking the reactor."""

    dialect_name = Attribute("'sqlite' or 'postgresql'")
    url = Attribute("the database URL, for messages (passwords masked)")

    async def start() -> None:
        """Open connections; raise StorageError naming the URL when the database is unreachable."""

    async def stop() -> None:
        """Close connections once running statements have finished."""

    async def fetch_all(statement: Statement, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run one read statement in its own implicit transaction and return its rows."""

    async def fetch_many(statements: Sequence[tuple[Statement, Mapping[str, Any] | None]]) -> list[list[Row]]:
        """Run several read statements in one round trip (one thread hop or one interaction)."""

    async def fetch_page(
        page: Statement, count: Statement, params: Mapping[str, Any], limit: int, offset: int
    ) -> tuple[list[Row], int]:
        """Run a paged read and return ``(rows, total)``, in one round trip and one snapshot.

        The COUNT runs only when the page cannot tell the total itself: when the page is
        full, or empty past the first row.
        """

    async def execute(statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """Run one write statement in its own transaction; return the rows it changed."""

    async def transaction(work: Callable[[ITransaction], Awaitable[T]]) -> T:
        """Run ``work(txn)`` in one transaction: committed if it returns, rolled back if it raises."""

    async def append_events(rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append rows to the event journal in order; return their ids, which commit in id order."""

    def listen(callback: Callable[[], Any]) -> Any:
        """Call *callback()* when other masters append events; return an object whose ``stop()`` ends it."""


def page_total(rows: int, limit: int, offset: int) -> int | None:
    """The total a page implies, or None when only a COUNT can tell."""
    if limit > 0 and (0 < rows < limit or (rows == 0 and offset == 0)):
        return offset + rows
    return None


class StorageError(Exception):
    """The database could not be reached or used; the message is meant for a user."""


class DatabaseUnavailable(StorageError):
    """The database server has been unreachable for longer than the backend's retry window.

    Work that fails so failed for the infrastructure, not for itself: the engine ends such a
    build ``retry`` and queues its request again once the database is back.
    """


class IntegrityError(StorageError):
    """A write broke a constraint (a unique key, a foreign key, a NOT NULL)."""
