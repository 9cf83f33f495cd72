"""StatementCompiler's IN-list expansion (cached per list sizes) matches SQLAlchemy's own, on both dialects."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from master.db.compiler import MAX_SIZES, StatementCompiler
from master.db.interfaces import Prepared

T = sa.table("t", sa.column("a"), sa.column("b"), sa.column("c"))


def _query() -> sa.Select:
    return sa.select(T.c.a).where(
        T.c.a.in_(sa.bindparam("ids", expanding=True)),
        T.c.b == sa.bindparam("x"),
        T.c.c.in_(sa.bindparam("names", expanding=True)),
    )


def _reference(dialect: sa.engine.Dialect, params: dict) -> tuple[str, object]:
    compiled = _query().compile(dialect=dialect)
    state = compiled.construct_expanded_state(compiled.construct_params(params))
    if dialect.positional:
        return state.statement, tuple(state.positional_parameters)
    return state.statement, state.parameters


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg2.dialect()], ids=["sqlite", "postgresql"])
def test_expansion_matches_sqlalchemy(dialect: sa.engine.Dialect) -> None:
    compiler = StatementCompiler(dialect)
    prepared = Prepared(("test", "in-lists"), _query)
    cases = [
        {"ids": [1, 2, 3], "x": 9, "names": ["a"]},
        {"ids": [4, 5, 6], "x": 8, "names": ["b"]},  # same sizes: the cached form, new values
        {"ids": [7], "x": 7, "names": ["c", "d", "e"]},
        {"ids": [], "x": 6, "names": ["f"]},
        {"ids": list(range(MAX_SIZES + 5)), "x": 5, "names": ["g", "h"]},
    ]
    cases += [{"ids": list(range(n)), "x": n, "names": ["z"]} for n in range(1, MAX_SIZES + 3)]  # past the cap
    for params in cases + cases[:3]:
        assert compiler.render(prepared, params) == _reference(dialect, params), params
