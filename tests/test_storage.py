"""The IStorage contract and the migrations, on SQLite and on PostgreSQL."""

from __future__ import annotations

import socket
import time
import zlib
from pathlib import Path

import psycopg2
import pytest
import pytest_twisted
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from twisted.internet import defer

from master.db import migrate
from master.db.backends import make_storage
from master.db.interfaces import IntegrityError, IStorage, ITransaction, Prepared, StorageError
from master.db.postgres import PostgresStorage
from master.db.schema import (
    builders,
    buildrequests,
    builds,
    buildsets,
    logchunks,
    logs,
    masters,
    metadata,
    steps,
    workers,
)
from master.db.sqlite import SQLiteStorage


async def add_builders(storage: IStorage, *names: str) -> dict[str, int]:
    """Insert builders by name; return their ids."""
    ids = {}
    for name in names:
        rows = await storage.fetch_all(
            sa.insert(builders).values(name=name, description=f"about {name}").returning(builders.c.id)
        )
        ids[name] = rows[0]["id"]
    return ids


def names(rows: list[dict]) -> list[str]:
    """The ``name`` column of each row."""
    return [row["name"] for row in rows]


# --- the storage contract ----------------------------------------------------------


def test_storage_provides_interface(storage: IStorage) -> None:
    assert IStorage.providedBy(storage)
    assert storage.dialect_name in ("sqlite", "postgresql")


@pytest_twisted.ensureDeferred
async def test_fetch_all_filters_in_limit_offset(storage: IStorage) -> None:
    await add_builders(storage, "alpha", "bravo", "charlie", "delta", "echo")
    query = sa.select(builders.c.name).order_by(builders.c.name)

    assert names(await storage.fetch_all(query)) == ["alpha", "bravo", "charlie", "delta", "echo"]
    # the same statement shape with other literals: the compiled form is cached, values are not
    assert names(await storage.fetch_all(query.where(builders.c.name > "charlie"))) == ["delta", "echo"]
    assert names(await storage.fetch_all(query.where(builders.c.name > "alpha"))) == [
        "bravo",
        "charlie",
        "delta",
        "echo",
    ]
    assert names(await storage.fetch_all(query.where(builders.c.name.in_(["echo", "alpha", "zulu"])))) == [
        "alpha",
        "echo",
    ]
    assert names(await storage.fetch_all(query.where(builders.c.name.in_(["delta"])))) == ["delta"]
    assert names(await storage.fetch_all(query.where(builders.c.name.in_([])))) == []
    assert names(await storage.fetch_all(query.where(builders.c.name.not_in(["alpha", "bravo"])))) == [
        "charlie",
        "delta",
        "echo",
    ]
    assert names(await storage.fetch_all(query.limit(2).offset(1))) == ["bravo", "charlie"]
    assert names(await storage.fetch_all(query.limit(2).offset(3))) == ["delta", "echo"]
    # LIKE is case-sensitive on both; '%' in the value is data, not a wildcard
    assert names(await storage.fetch_all(query.where(builders.c.name.contains("harl")))) == ["charlie"]
    assert names(await storage.fetch_all(query.where(builders.c.name.contains("HARL")))) == []
    assert names(await storage.fetch_all(query.where(builders.c.description.contains("%", autoescape=True)))) == []
    count = await storage.fetch_all(sa.select(sa.func.count().label("n")).select_from(builders))
    assert count == [{"n": 5}]


@pytest_twisted.ensureDeferred
async def test_rows_are_dicts_by_label(storage: IStorage) -> None:
    ids = await add_builders(storage, "alpha")
    rows = await storage.fetch_all(
        sa.select(builders.c.id, builders.c.name.label("builder_name"), builders.c.projectid)
    )
    assert rows == [{"id": ids["alpha"], "builder_name": "alpha", "projectid": None}]
    assert type(rows[0]) is dict


@pytest_twisted.ensureDeferred
async def test_prepared_statements_reused_with_other_params(storage: IStorage) -> None:
    await add_builders(storage, "alpha", "bravo", "charlie")
    builds_made = []

    def build() -> sa.Select:
        builds_made.append(1)
        return (
            sa.select(builders.c.name)
            .where(builders.c.name.in_(sa.bindparam("names", expanding=True)))
            .where(builders.c.name != sa.bindparam("not_name"))
            .order_by(builders.c.name.desc())
            .limit(sa.bindparam("limit"))
        )

    prepared = Prepared(("builders-by-name", "test"), build)
    rows = await storage.fetch_all(prepared, {"names": ["alpha", "bravo", "charlie"], "not_name": "x", "limit": 10})
    assert names(rows) == ["charlie", "bravo", "alpha"]
    rows = await storage.fetch_all(prepared, {"names": ["alpha", "bravo"], "not_name": "bravo", "limit": 10})
    assert names(rows) == ["alpha"]
    rows = await storage.fetch_all(prepared, {"names": ["alpha", "bravo", "charlie"], "not_name": "", "limit": 1})
    assert names(rows) == ["charlie"]
    rows = await storage.fetch_all(prepared, {"names": [], "not_name": "", "limit": 1})
    assert rows == []
    assert len(builds_made) == 1

    update = Prepared(
        ("rename-builder", "test"),
        lambda: sa.update(builders).where(builders.c.name == sa.bindparam("old")).values(name=sa.bindparam("new")),
    )
    assert await storage.execute(update, {"old": "alpha", "new": "aleph"}) == 1
    assert await storage.execute(update, {"old": "nope", "new": "nothing"}) == 0
    assert "aleph" in names(await storage.fetch_all(sa.select(builders.c.name)))


@pytest_twisted.ensureDeferred
async def test_insert_returning_gives_ids(storage: IStorage) -> None:
    ids = await add_builders(storage, "one", "two", "three")
    assert len(set(ids.values())) == 3
    assert all(type(i) is int for i in ids.values())
    assert ids["one"] < ids["two"] < ids["three"]
    rows = await storage.fetch_all(sa.select(builders.c.id, builders.c.name).order_by(builders.c.id))
    assert {row["name"]: row["id"] for row in rows} == ids
    # RETURNING more than one column, from an UPDATE too
    rows = await storage.fetch_all(
        sa.update(builders)
        .where(builders.c.name == "two")
        .values(description="changed")
        .returning(builders.c.id, builders.c.description)
    )
    assert rows == [{"id": ids["two"], "description": "changed"}]


@pytest_twisted.ensureDeferred
async def test_execute_returns_rowcount(storage: IStorage) -> None:
    await add_builders(storage, "a1", "a2", "b1")
    assert await storage.execute(sa.insert(masters).values(name="m", active=True, last_active=1)) == 1
    changed = await storage.execute(sa.update(builders).where(builders.c.name.like("a%")).values(description="an a"))
    assert changed == 2
    assert await storage.execute(sa.update(builders).where(builders.c.name == "zzz").values(description="")) == 0
    assert await storage.execute(sa.delete(builders).where(builders.c.name.in_(["a1", "b1", "c1"]))) == 2
    assert names(await storage.fetch_all(sa.select(builders.c.name))) == ["a2"]


@pytest_twisted.ensureDeferred
async def test_fetch_many_returns_one_list_per_statement(storage: IStorage) -> None:
    await add_builders(storage, "alpha", "bravo")
    results = await storage.fetch_many(
        [
            (sa.select(builders.c.name).order_by(builders.c.name), None),
            (sa.select(sa.func.count().label("n")).select_from(builders), None),
            (sa.select(masters.c.name), None),
            (
                Prepared(
                    ("by-name", "many"),
                    lambda: sa.select(builders.c.name).where(builders.c.name == sa.bindparam("name")),
                ),
                {"name": "bravo"},
            ),
        ]
    )
    assert results == [[{"name": "alpha"}, {"name": "bravo"}], [{"n": 2}], [], [{"name": "bravo"}]]
    assert await storage.fetch_many([]) == []
    assert await storage.fetch_many([(sa.select(builders.c.name).where(builders.c.name == "alpha"), None)]) == [
        [{"name": "alpha"}]
    ]


@pytest_twisted.ensureDeferred
async def test_fetch_page_counts_only_when_needed(storage: IStorage) -> None:
    page = Prepared(
        ("builders-page", "test"),
        lambda: (
            sa.select(builders.c.name)
            .order_by(builders.c.name)
            .limit(sa.bindparam("page_limit"))
            .offset(sa.bindparam("page_offset"))
        ),
    )
    count = Prepared(
        ("builders-count", "test"), lambda: sa.select(sa.func.count().label("total")).select_from(builders)
    )
    # a count that fails if it runs: proves the page alone told the total
    no_count = sa.text("SELECT count(*) AS total FROM no_such_table")

    assert await storage.fetch_page(page, no_count, {"page_limit": 3, "page_offset": 0}, 3, 0) == ([], 0)
    await add_builders(storage, "alpha", "bravo", "charlie", "delta", "echo")

    async def fetch(limit: int, offset: int, counter: sa.Executable | Prepared = count) -> tuple[list[str], int]:
        rows, total = await storage.fetch_page(
            page, counter, {"page_limit": limit, "page_offset": offset}, limit, offset
        )
        return names(rows), total

    assert await fetch(2, 0) == (["alpha", "bravo"], 5)
    assert await fetch(2, 2) == (["charlie", "delta"], 5)
    assert await fetch(2, 4, no_count) == (["echo"], 5)
    assert await fetch(10, 0, no_count) == (["alpha", "bravo", "charlie", "delta", "echo"], 5)
    assert await fetch(2, 10) == ([], 5)
    with pytest.raises(StorageError):
        await fetch(5, 0, no_count)  # a full page needs the count


@pytest_twisted.ensureDeferred
async def test_transaction_commits_on_return(storage: IStorage) -> None:
    seen_outside = []

    async def work(txn: ITransaction) -> int:
        assert ITransaction.providedBy(txn)
        rows = await txn.fetch_all(sa.insert(builders).values(name="inside").returning(builders.c.id))
        assert await txn.execute(sa.update(builders).values(description="set in txn")) == 1
        # the transaction sees its own writes ...
        assert names(await txn.fetch_all(sa.select(builders.c.name))) == ["inside"]
        # ... and nobody else does before the commit
        seen_outside.extend(await storage.fetch_all(sa.select(builders.c.name)))
        return rows[0]["id"]

    builder_id = await storage.transaction(work)
    assert seen_outside == []
    rows = await storage.fetch_all(sa.select(builders.c.id, builders.c.description))
    assert rows == [{"id": builder_id, "description": "set in txn"}]


@pytest_twisted.ensureDeferred
async def test_transaction_rolls_back_on_exception(storage: IStorage) -> None:
    await add_builders(storage, "before")

    class Oops(Exception):
        pass

    async def work(txn: ITransaction) -> None:
        await txn.execute(sa.insert(builders).values(name="during"))
        await txn.execute(sa.delete(builders).where(builders.c.name == "before"))
        raise Oops("changed my mind")

    with pytest.raises(Oops, match="changed my mind"):
        await storage.transaction(work)
    assert names(await storage.fetch_all(sa.select(builders.c.name))) == ["before"]

    # the backend is still usable, and the next transaction commits normally
    async def work2(txn: ITransaction) -> str:
        await txn.execute(sa.insert(builders).values(name="after"))
        return "ok"

    assert await storage.transaction(work2) == "ok"
    assert sorted(names(await storage.fetch_all(sa.select(builders.c.name)))) == ["after", "before"]


@pytest_twisted.ensureDeferred
async def test_transaction_serialises_concurrent_statements(storage: IStorage) -> None:
    async def work(txn: ITransaction) -> list[int]:
        inserts = [defer.ensureDeferred(txn.execute(sa.insert(builders).values(name=f"b{i}"))) for i in range(5)]
        return await defer.gatherResults(inserts)

    assert await storage.transaction(work) == [1] * 5
    assert len(await storage.fetch_all(sa.select(builders.c.id))) == 5


@pytest_twisted.ensureDeferred
async def test_unique_violation_raises_integrity_error(storage: IStorage) -> None:
    await add_builders(storage, "same")
    with pytest.raises(IntegrityError) as caught:
        await storage.execute(sa.insert(builders).values(name="same"))
    assert isinstance(caught.value, StorageError)
    assert "Traceback" not in str(caught.value)
    with pytest.raises(IntegrityError):
        await storage.fetch_all(sa.insert(builders).values(name="same").returning(builders.c.id))

    async def work(txn: ITransaction) -> None:
        await txn.execute(sa.insert(builders).values(name="first in txn"))
        await txn.execute(sa.insert(builders).values(name="same"))

    with pytest.raises(IntegrityError):
        await storage.transaction(work)
    # the failed transaction left nothing behind
    assert names(await storage.fetch_all(sa.select(builders.c.name))) == ["same"]
    # a NOT NULL violation is an integrity error too
    with pytest.raises(IntegrityError):
        await storage.execute(sa.insert(builders).values(name=None))


@pytest_twisted.ensureDeferred
async def test_other_errors_are_storage_errors(storage: IStorage) -> None:
    with pytest.raises(StorageError) as caught:
        await storage.fetch_all(sa.text("SELECT * FROM no_such_table"))
    assert not isinstance(caught.value, IntegrityError)
    assert "no_such_table" in str(caught.value)
    # and the connection that failed is still fine for the next statement
    assert await storage.fetch_all(sa.select(sa.literal(1).label("one"))) == [{"one": 1}]


async def make_log(storage: IStorage) -> int:
    """A builder, a buildset, a request, a build, a step and a log: what a log chunk hangs on."""
    (builder,) = await storage.fetch_all(sa.insert(builders).values(name="b").returning(builders.c.id))
    (buildset,) = await storage.fetch_all(sa.insert(buildsets).values(submitted_at=1).returning(buildsets.c.id))
    (request,) = await storage.fetch_all(
        sa.insert(buildrequests)
        .values(buildsetid=buildset["id"], builderid=builder["id"], submitted_at=1)
        .returning(buildrequests.c.id)
    )
    (build,) = await storage.fetch_all(
        sa.insert(builds)
        .values(number=1, builderid=builder["id"], buildrequestid=request["id"], started_at=2)
        .returning(builds.c.id)
    )
    (step,) = await storage.fetch_all(
        sa.insert(steps).values(number=0, name="compile", buildid=build["id"]).returning(steps.c.id)
    )
    (log,) = await storage.fetch_all(
        sa.insert(logs).values(name="stdio", slug="stdio", stepid=step["id"]).returning(logs.c.id)
    )
    return log["id"]


@pytest_twisted.ensureDeferred
async def test_types_round_trip_alike(storage: IStorage) -> None:
    await storage.execute(sa.insert(workers).values(name="w1", paused=True, pause_reason=None))
    await storage.execute(sa.insert(workers).values(name="w2", graceful=True, pause_reason="maintenance"))
    rows = await storage.fetch_all(
        sa.select(
            workers.c.name, workers.c.info, workers.c.paused, workers.c.graceful, workers.c.pause_reason
        ).order_by(workers.c.name)
    )
    assert rows == [
        {"name": "w1", "info": "{}", "paused": True, "graceful": False, "pause_reason": None},
        {"name": "w2", "info": "{}", "paused": False, "graceful": True, "pause_reason": "maintenance"},
    ]
    for row in rows:
        assert type(row["paused"]) is bool and type(row["graceful"]) is bool
    # booleans as filter values
    paused = await storage.fetch_all(sa.select(workers.c.name).where(workers.c.paused == sa.true()))
    assert names(paused) == ["w1"]
    prepared = Prepared(
        ("workers-by-paused", "test"),
        lambda: sa.select(workers.c.name).where(workers.c.paused == sa.bindparam("paused", type_=sa.Boolean)),
    )
    assert names(await storage.fetch_all(prepared, {"paused": False})) == ["w2"]

    log_id = await make_log(storage)
    plain = "line one\nline two é\n".encode()
    packed = zlib.compress(b"\x00\xff" * 100)
    await storage.execute(
        sa.insert(logchunks).values(logid=log_id, first_line=0, last_line=1, content=plain, compressed=0)
    )
    await storage.execute(
        sa.insert(logchunks).values(logid=log_id, first_line=2, last_line=5, content=packed, compressed=1)
    )
    chunks = await storage.fetch_all(
        sa.select(logchunks.c.content, logchunks.c.compressed).order_by(logchunks.c.first_line)
    )
    assert chunks == [{"content": plain, "compressed": 0}, {"content": packed, "compressed": 1}]
    for chunk in chunks:
        assert type(chunk["content"]) is bytes and type(chunk["compressed"]) is int
    assert zlib.decompress(chunks[1]["content"]) == b"\x00\xff" * 100
    # the same through fetch_many and inside a transaction
    (many,) = await storage.fetch_many([(sa.select(logchunks.c.content).where(logchunks.c.compressed == 1), None)])
    assert many == [{"content": packed}] and type(many[0]["content"]) is bytes

    async def work(txn: ITransaction) -> list[dict]:
        return await txn.fetch_all(
            sa.select(logchunks.c.content, logs.c.complete).join(logs).where(logchunks.c.first_line == 0)
        )

    rows = await storage.transaction(work)
    assert rows == [{"content": plain, "complete": False}]
    assert type(rows[0]["content"]) is bytes and type(rows[0]["complete"]) is bool


# --- migrations ------------------------------------------------------------------


def schema_differences(url: str) -> list:
    """Alembic's differences between the database at *url* and the declared schema."""
    engine = sa.create_engine(migrate.sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def run_sql(url: str, *statements: sa.Executable) -> list:
    """Run statements in one committed transaction through a plain SQLAlchemy engine."""
    engine = sa.create_engine(migrate.sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as connection:
            return [connection.execute(statement) for statement in statements]
    finally:
        engine.dispose()


def fetch_sql(url: str, statement: sa.Executable) -> list[dict]:
    """Read rows through a plain SQLAlchemy engine, independent of the backends under test."""
    engine = sa.create_engine(migrate.sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]
    finally:
        engine.dispose()


def test_create_then_check(db_url: str) -> None:
    assert migrate.current_revision(db_url) is None
    migrate.create(db_url)
    migrate.check(db_url)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    assert schema_differences(db_url) == []
    with pytest.raises(StorageError, match="already has a schema"):
        migrate.create(db_url)


def test_check_on_empty_database_says_create(db_url: str) -> None:
    with pytest.raises(StorageError, match="create-master"):
        migrate.check(db_url)


def test_upgrade_from_first_revision_reaches_head(db_url: str) -> None:
    messages: list[str] = []
    migrate.upgrade(db_url, progress=messages.append, target="0001")
    assert migrate.current_revision(db_url) == "0001"
    with pytest.raises(StorageError, match="upgrade-master") as caught:
        migrate.check(db_url)
    assert "0001" in str(caught.value)

    migrate.upgrade(db_url, progress=messages.append)
    assert migrate.current_revision(db_url) == migrate.head_revision()
    migrate.check(db_url)
    assert schema_differences(db_url) == []
    assert any("0002" in message for message in messages)

    messages.clear()
    migrate.upgrade(db_url, progress=messages.append)
    assert any("already at" in message for message in messages)


def test_data_at_first_revision_survives_upgrade(db_url: str) -> None:
    migrate.upgrade(db_url, progress=lambda _: None, target="0001")
    run_sql(
        db_url,
        sa.insert(builders).values(id=1, name="old builder", description="kept"),
        sa.insert(buildsets).values(id=1, submitted_at=10, complete=True),
        sa.insert(buildrequests).values(id=1, buildsetid=1, builderid=1, submitted_at=11),
        sa.insert(builds).values(id=1, number=7, builderid=1, buildrequestid=1, started_at=12, complete_at=13),
        sa.update(buildsets).where(buildsets.c.id == 1).values(parent_buildid=1),
    )
    migrate.upgrade(db_url, progress=lambda _: None)
    assert fetch_sql(db_url, sa.select(builders.c.name, builders.c.description)) == [
        {"name": "old builder", "description": "kept"}
    ]
    assert fetch_sql(db_url, sa.select(builds.c.number, builds.c.complete_at)) == [{"number": 7, "complete_at": 13}]
    assert fetch_sql(db_url, sa.select(buildsets.c.parent_buildid, buildsets.c.complete)) == [
        {"parent_buildid": 1, "complete": True}
    ]


def test_upgrade_backs_up_sqlite_only(db_url: str) -> None:
    migrate.upgrade(db_url, progress=lambda _: None, target="0001")
    messages: list[str] = []
    backup = migrate.upgrade(db_url, progress=messages.append)
    if db_url.startswith("sqlite"):
        assert backup is not None and Path(backup).is_file()
        assert any("backed up" in message for message in messages)
        # the backup is the database as it was: still at 0001
        assert migrate.current_revision(f"sqlite:///{backup}") == "0001"
    else:
        assert backup is None


# --- backend selection and connection failures ----------------------------------------


def test_make_storage_picks_backend_by_scheme(tmp_path: Path) -> None:
    assert isinstance(make_storage(f"sqlite:///{tmp_path}/x.sqlite"), SQLiteStorage)
    assert isinstance(make_storage("postgresql://u@127.0.0.1:5432/db"), PostgresStorage)
    assert isinstance(make_storage("postgres://u@127.0.0.1:5432/db"), PostgresStorage)
    with pytest.raises(StorageError, match="mysql://u:\\*\\*\\*@host/db"):
        make_storage("mysql://u:secret@host/db")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_start_unreachable_postgresql_names_masked_url() -> None:
    port = closed_port()
    storage = PostgresStorage(f"postgresql://ci:s3cret@127.0.0.1:{port}/ci", pool_size=2)
    began = time.monotonic()
    with pytest.raises(StorageError) as caught:
        await storage.start()
    message = str(caught.value)
    assert message.startswith(f"database unreachable at postgresql://ci:***@127.0.0.1:{port}/ci: ")
    assert "s3cret" not in message and "Traceback" not in message
    assert "refused" in message.lower()
    assert time.monotonic() - began < 5


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_start_times_out_on_silent_server() -> None:
    # a socket that accepts TCP connections but never speaks the protocol
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        storage = PostgresStorage(f"postgresql://ci:s3cret@127.0.0.1:{port}/ci?connect_timeout=1")
        began = time.monotonic()
        with pytest.raises(StorageError, match=r"database unreachable at .*\*\*\*.*no answer within 1s"):
            await storage.start()
        assert time.monotonic() - began < 5


@pytest.mark.postgresql
@pytest_twisted.ensureDeferred
async def test_postgresql_reconnects_after_connections_are_killed(pg_server) -> None:
    from twisted.internet import reactor

    url = pg_server.create_database(f"reconnect_{int(time.time() * 1000)}")
    migrate.create(url)
    storage = PostgresStorage(url, pool_size=2)
    await storage.start()
    try:
        assert await storage.fetch_all(sa.select(sa.literal(1).label("one"))) == [{"one": 1}]
        dbname = url.rsplit("/", 1)[1]
        admin = psycopg2.connect(url.rsplit("/", 1)[0] + "/postgres")
        try:
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
                assert cursor.rowcount == 2
        finally:
            admin.close()
        # the first calls may or may not notice the dead connections; none may hang
        for _ in range(2):
            d = defer.ensureDeferred(storage.fetch_all(sa.select(builders.c.id)))
            d.addTimeout(10, reactor)
            try:
                await d
            except StorageError:
                pass
        assert await storage.fetch_all(sa.select(sa.literal(2).label("two"))) == [{"two": 2}]
        assert await storage.execute(sa.insert(builders).values(name="after reconnect")) == 1
    finally:
        await storage.stop()
    with pytest.raises(StorageError, match="not running"):
        await storage.fetch_all(sa.select(builders.c.id))


@pytest_twisted.ensureDeferred
async def test_reads_cancelled_in_flight_do_not_break_other_reads(storage: IStorage) -> None:
    """A client hanging up cancels its reads; the pool must stay whole for everyone else."""
    if storage.dialect_name == "postgresql":
        slow = sa.select(sa.func.pg_sleep(0.05).label("slept"))
    else:
        numbers = sa.select(sa.literal(1).label("n")).cte("numbers", recursive=True)
        numbers = numbers.union_all(sa.select(numbers.c.n + 1).where(numbers.c.n < 200_000))
        slow = sa.select(sa.func.count().label("slept")).select_from(numbers)
    doomed = [defer.ensureDeferred(storage.fetch_all(slow)) for _ in range(8)]
    for d in doomed:
        d.cancel()
    results = await defer.gatherResults(
        [defer.ensureDeferred(storage.fetch_all(sa.select(sa.literal(n).label("n")))) for n in range(16)],
        consumeErrors=True,
    )
    assert [rows[0]["n"] for rows in results] == list(range(16))
    for d in doomed:
        with pytest.raises(defer.CancelledError):
            await d
    # and once the cancelled reads have run their course, the storage still works
    await defer.gatherResults([defer.ensureDeferred(storage.fetch_all(slow)) for _ in range(2)])
    assert (await storage.fetch_all(sa.select(sa.literal(7).label("n"))))[0]["n"] == 7


@pytest_twisted.ensureDeferred
async def test_a_long_read_leaves_the_reactor_free(storage: IStorage) -> None:
    """Reads may start on the reactor thread (SQLite), but one that runs long must not hold it."""
    from twisted.internet import reactor

    ticks: list[float] = []
    slow = sa.text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) SELECT count(*) AS c FROM n"
    )
    ticker = reactor.callLater(0.01, lambda: ticks.append(time.monotonic()))
    started = time.monotonic()
    rows = await storage.fetch_all(slow)
    finished = time.monotonic()
    assert rows == [{"c": 2000000}]
    if not ticker.called:
        ticker.cancel()
    assert finished - started > 0.05  # a long read indeed
    assert ticks and ticks[0] < finished  # the reactor ran while it went on
    # short reads still answer, and the page/count pair too
    assert await storage.fetch_all(sa.text("SELECT 1 AS one")) == [{"one": 1}]
