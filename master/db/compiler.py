"""Compile SQLAlchemy Core statements to driver SQL once, then only bind parameters.

Both backends run statements through the plain DB-API driver (``sqlite3`` in a thread,
psycopg2 through txpostgres), so compilation is done here, with a per-backend cache:
:class:`~master.db.interfaces.Prepared` statements are cached by their own key, any other
statement by SQLAlchemy's cache key, whose extracted literal values are re-bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from master.db.interfaces import Prepared, Statement

MAX_SIZES = 64  # expanded forms kept per statement


class _Expansions:
    """Per compiled statement with IN lists: its SQL and where each driver parameter comes from, per list sizes.

    SQLAlchemy expands IN lists at every execution (``construct_expanded_state``), which costs
    more than the rest of a request's SQL handling; the expanded text depends only on how many
    values each list has, so it is expanded once per sizes and then only filled in.
    """

    __slots__ = ("by_sizes",)

    def __init__(self) -> None:
        self.by_sizes: dict[tuple[int, ...], tuple[str, list[tuple[str, str, int]]]] = {}


class StatementCompiler:
    """Turns statements into ``(sql, parameters)`` for one dialect, caching compiled forms."""

    def __init__(self, dialect: Dialect, size: int = 1000) -> None:
        self.dialect = dialect
        self.size = size
        self._cache: OrderedDict[Any, tuple[SQLCompiler, _Expansions | None]] = OrderedDict()

    def _compiled(self, key: Any, make: Any) -> tuple[SQLCompiler, _Expansions | None]:
        entry = self._cache.get(key)
        if entry is None:
            statement, cache_key = make()
            compiled = statement.compile(dialect=self.dialect, cache_key=cache_key)
            # Statements without expanding (IN list) parameters bind in a fast path.
            expands = any(bp.expanding for bp in compiled.binds.values())
            entry = (compiled, _Expansions() if expands else None)
            self._cache[key] = entry
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        else:
            try:
                self._cache.move_to_end(key)
            except KeyError:  # SQLite's reader and writer threads share one compiler
                pass  # the other thread just evicted it; the entry in hand is still good
        return entry

    def render(self, statement: Statement, params: Mapping[str, Any] | None = None) -> tuple[str, Any]:
        """Return the SQL text and the driver parameters for *statement* bound with *params*."""
        if isinstance(statement, Prepared):
            compiled, expands = self._compiled(("p", statement.key), lambda: (statement.build(), None))
            bound = compiled.construct_params(params or {})
        else:
            assert isinstance(statement, Executable) and isinstance(statement, ClauseElement), statement
            cache_key = statement._generate_cache_key()
            if cache_key is None:  # statements SQLAlchemy cannot cache: compile each time
                plain = statement.compile(dialect=self.dialect)
                assert isinstance(plain, SQLCompiler), plain  # a statement's, not a DDL's
                compiled = plain
                expands = any(bp.expanding for bp in compiled.binds.values())  # type: ignore[assignment]
                bound = compiled.construct_params(params or None)
            else:
                compiled, expands = self._compiled(("s", cache_key.key), lambda: (statement, cache_key))
                bound = compiled.construct_params(params or None, extracted_parameters=cache_key.bindparams)
        if expands:
            return self._expand(compiled, expands, bound)
        if self.dialect.positional:
            return compiled.string, tuple(bound[name] for name in compiled.positiontup or ())
        return compiled.string, bound


    def _expand(self, compiled: SQLCompiler, expansions: Any, bound: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL and parameters of *compiled* with its IN lists expanded for the values in *bound*."""
        lists = sorted(name for name, bind in compiled.binds.items() if bind.expanding)
        values = [bound.get(name) for name in lists]
        cacheable = (
            isinstance(expansions, _Expansions) and not compiled.literal_execute_params
            # lists of scalars (a tuple IN list expands each element to several parameters)
            and all(isinstance(v, (list, tuple)) and not (v and isinstance(v[0], (list, tuple))) for v in values)
        )
        sizes = tuple(len(v) for v in values if isinstance(v, (list, tuple))) if cacheable else ()
        known = expansions.by_sizes.get(sizes) if cacheable else None
        if known is None:
            state = compiled.construct_expanded_state(bound)
            if not cacheable:
                if self.dialect.positional:
                    return state.statement, tuple(state.positional_parameters)
                return state.statement, state.parameters
            # each driver parameter: a plain bind (index -1) or element i of an IN list
            origin = {name: (name, -1) for name in state.parameters}
            for name, expanded in state.parameter_expansion.items():
                origin.update((element, (name, i)) for i, element in enumerate(expanded))
            names = (state.positiontup or []) if self.dialect.positional else list(state.parameters)
            known = (state.statement, [(name, *origin[name]) for name in names])
            if len(expansions.by_sizes) >= MAX_SIZES:  # lists of ever new sizes: keep memory bounded
                expansions.by_sizes.clear()
            expansions.by_sizes[sizes] = known
        statement, sources = known
        got = [bound[source] if i < 0 else bound[source][i] for _, source, i in sources]
        if self.dialect.positional:
            return statement, tuple(got)
        return statement, dict(zip((name for name, _, _ in sources), got, strict=True))


def dialect_insert(dialect_name: str, table: Any) -> Any:
    """``INSERT`` into *table* with the dialect's ``ON CONFLICT`` clauses (PostgreSQL's or SQLite's).

    The dialect is imported on first use: a master on SQLite never loads PostgreSQL's (2 MB).
    """
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
