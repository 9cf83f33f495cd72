"""The embedded SQLite backend: WAL mode, statements run on dedicated threads.

Reads run on a reader thread with its own connection; writes and transactions run one at a
time on a writer thread.  In WAL mode readers never wait for the writer and see only
committed data, and the reactor thread never touches the database.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from master.db import schema
from master.db.compiler import StatementCompiler
from master.db.interfaces import (
    IntegrityError,
    IStorage,
    ITransaction,
    Row,
    Statement,
    StorageError,
    page_total,
)

T = TypeVar("T")
READER_THREADS = 3

INLINE_BUDGET = 0.002
"""Seconds a read may run on the reactor thread before it is moved to a reader thread."""

PROGRESS_STEPS = 1000
"""SQLite VM instructions between two checks of the budget."""

# SQLite stores booleans as 0/1.  Converting by the declared column type hands them back as
# bool, as PostgreSQL does; computed expressions (EXISTS, comparisons) have no declared
# type and stay 0/1.
sqlite3.register_converter("BOOLEAN", lambda value: value != b"0")


def sqlite_path(url: str) -> str:
    """Return the file path of a ``sqlite:///path`` URL (``sqlite://`` alone is refused)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StorageError(f"not a SQLite file URL: {url!r} (expected sqlite:///path/to/file.sqlite)")
    return url[len(prefix):]


class _Connection:
    """sqlite3 connections owned by a pool of *threads* threads, one connection per thread.

    ``conn`` is the connection of the calling thread, opened on its first use; so the
    functions given to :meth:`run` use the connection of the thread they run on.
    """

    def __init__(
        self, path: str, name: str, compiler: StatementCompiler, threads: int = 1, busy_timeout: float = 30
    ) -> None:
        self.path = path
        self.compiler = compiler
        self.busy_timeout = busy_timeout
        self.pool = ThreadPool(minthreads=threads, maxthreads=threads, name=name)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def open(self) -> None:
        """Open the calling thread's connection now, so that a bad file is reported at start."""
        self.conn  # noqa: B018 (opening is the point)

    def close_all(self) -> None:
        """Close every connection (each sqlite3 connection may be closed from any thread)."""
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self.busy_timeout,
            detect_types=sqlite3.PARSE_DECLTYPES,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        # LIKE is case-sensitive on PostgreSQL; make 'contains' mean the same here.
        conn.execute("PRAGMA case_sensitive_like=ON")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def run(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        from twisted.internet import reactor

        # Twisted types the global reactor as its common base only; the real one runs threads
        return threads.deferToThreadPool(cast(IReactorFromThreads, reactor), self.pool, fn, *args)

    def rows(self, statement: Statement, params: Mapping[str, Any] | None) -> list[Row]:
        sql, args = self.compiler.render(statement, params)
        try:
            cursor = self.conn.execute(sql, args)
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from None
        except sqlite3.Error as e:
            raise StorageError(f"SQLite error: {e}") from None
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]  # noqa: B905 (rows have every column)

    def on_its_thread(self) -> bool:
        """Whether the caller runs on one of this connection's pool threads (they alone open connections)."""
        return getattr(self._local, "conn", None) is not None

    def command(self, sql: str) -> None:
        """Run a statement such as BEGIN or COMMIT on the calling thread's connection."""
        self.conn.execute(sql)

    def change(self, statement: Statement, params: Mapping[str, Any] | None) -> int:
        sql, args = self.compiler.render(statement, params)
        try:
            return self.conn.execute(sql, args).rowcount
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from None
        except sqlite3.Error as e:
            raise StorageError(f"SQLite error: {e}") from None


@implementer(IStorage)
class SQLiteStorage:
    """:class:`IStorage` on a SQLite file, for single-master sites and tests."""

    dialect_name = "sqlite"
    database_available = True  # a local file: there is no outage to report (see PostgresStorage)

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        compiler = StatementCompiler(sqlite_dialect.dialect())
        # several readers: sqlite3 lets go of the GIL while it steps, so reads overlap each
        # other and the reactor's own work instead of queueing behind one thread
        self._reader = _Connection(self.path, "sqlite-reader", compiler, threads=READER_THREADS)
        self._writer = _Connection(self.path, "sqlite-writer", compiler)
        # reads are first tried on the reactor thread itself, never waiting for a lock
        self._inline = _Connection(self.path, "sqlite-inline", compiler, threads=0, busy_timeout=0)
        self._reactor_thread: int | None = None
        self._write_lock = defer.DeferredLock()

    async def start(self) -> None:
        """Open the reader and writer connections on their threads."""
        if not Path(self.path).parent.is_dir():
            raise StorageError(f"cannot open {self.url}: directory {Path(self.path).parent} does not exist")
        for conn in (self._writer, self._reader):
            conn.pool.start()
            try:
                await conn.run(conn.open)
            except sqlite3.Error as e:
                raise StorageError(f"cannot open {self.url}: {e}") from None
        self._reactor_thread = threading.get_ident()
        self._inline.open()

    async def stop(self) -> None:
        """Wait for the running write, then close both connections and stop their threads."""
        await self._write_lock.acquire()
        try:
            for conn in (self._reader, self._writer):
                conn.pool.stop()  # waits for the running statements
                conn.close_all()
            self._inline.close_all()
            self._reactor_thread = None
        finally:
            self._write_lock.release()

    async def _read(self, read: Callable[[_Connection], T]) -> T:
        """``read(connection)``: on the reactor thread if it is done within INLINE_BUDGET, else on a reader thread.

        Most reads are index lookups of well under a millisecond, for which a hop to a thread and
        back costs more than the read, and its threads contend with the reactor for the GIL.  A
        read that runs longer is interrupted (by SQLite's progress handler) and run again on a
        reader thread, so a slow query never holds the reactor for more than the budget; so is
        one that would wait for a lock.
        """
        if threading.get_ident() == self._reactor_thread:
            inline = self._inline
            conn = inline.conn
            deadline = time.perf_counter() + INLINE_BUDGET
            interrupted = False

            def over_budget() -> bool:
                nonlocal interrupted
                interrupted = time.perf_counter() > deadline
                return interrupted

            conn.set_progress_handler(over_budget, PROGRESS_STEPS)
            try:
                return read(inline)
            except (StorageError, sqlite3.Error) as e:
                if not interrupted and "locked" not in str(e):
                    raise
            finally:
                conn.set_progress_handler(None, 0)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
        return await self._reader.run(read, self._reader)

    async def fetch_all(self, statement: Statement, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run one read (see :meth:`_read` for where)."""
        return await self._read(lambda conn: conn.rows(statement, params))

    async def fetch_many(
        self, statements: Sequence[tuple[Statement, Mapping[str, Any] | None]]
    ) -> list[list[Row]]:
        """Run several reads at once, inside one read transaction."""

        def run_all(reader: _Connection) -> list[list[Row]]:
            reader.conn.execute("BEGIN")
            try:
                return [reader.rows(statement, params) for statement, params in statements]
            finally:
                reader.conn.execute("COMMIT")

        return await self._read(run_all)

    async def fetch_page(
        self, page: Statement, count: Statement, params: Mapping[str, Any], limit: int, offset: int
    ) -> tuple[list[Row], int]:
        """Run the page query, and the count when needed, at once and in one read transaction."""

        def run_page(reader: _Connection) -> tuple[list[Row], int]:
            reader.conn.execute("BEGIN")
            try:
                rows = reader.rows(page, params)
                total = page_total(len(rows), limit, offset)
                if total is None:
                    total = reader.rows(count, params)[0]["total"]
                return rows, total
            finally:
                reader.conn.execute("COMMIT")

        return await self._read(run_page)

    async def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """Run one write on the writer thread."""
        async with self._write_lock:
            return await self._writer.run(self._writer.change, statement, params)

    async def append_events(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Journal event rows (at, masterid, keys, rtype, entity) in order, in one transaction; return their ids.

        Writes are serial on the writer thread, so ids are committed in order.
        """
        if len(rows) == 1:
            async with self._write_lock:
                inserted = await self._writer.run(self._writer.rows, _APPEND_EVENT, rows[0])
            return [inserted[0]["id"]]

        async def work(txn: ITransaction) -> list[int]:
            return [(await txn.fetch_all(_APPEND_EVENT, row))[0]["id"] for row in rows]

        return await self.transaction(work)

    def listen(self, callback: Callable[[], Any]) -> NoListener:
        """Nothing to listen to: a SQLite database has one master, which delivers its own events."""
        return NoListener()

    async def transaction(self, work: Callable[[ITransaction], Awaitable[T]]) -> T:
        """Run ``work`` in one IMMEDIATE transaction on the writer thread.

        The coroutine itself is started on the writer thread, where its statements run at once:
        a transaction that awaits only its own statements costs one thread hop in all, not one
        per statement.  If it awaits anything else, it is carried on from the reactor thread,
        its remaining statements hopping to the writer thread one by one.
        """
        async with self._write_lock:
            writer = self._writer
            txn = _WriterTransaction(writer)

            def begin_and_run() -> tuple[bool, Any, Any]:
                writer.command("BEGIN IMMEDIATE")
                try:
                    finished, value, steps = _advance(work(txn).__await__(), None, None)
                except BaseException:
                    writer.command("ROLLBACK")
                    raise
                if finished:
                    writer.command("COMMIT")
                return finished, value, steps

            finished, value, steps = await writer.run(begin_and_run)
            if finished:
                return cast(T, value)  # the work's own return value, carried through _advance untyped
            try:
                while not finished:
                    sent, thrown = None, None
                    try:
                        sent = await value  # what the work waits for, on the reactor thread
                    except BaseException as e:
                        thrown = e
                    finished, value, steps = _advance(steps, sent, thrown)
            except BaseException:
                await writer.run(writer.command, "ROLLBACK")
                raise
            await writer.run(writer.command, "COMMIT")
            return cast(T, value)


_APPEND_EVENT = sa.insert(schema.events).values(
    at=sa.bindparam("at"), masterid=sa.bindparam("masterid"), keys=sa.bindparam("keys"),
    rtype=sa.bindparam("rtype"), entity=sa.bindparam("entity"),
).returning(schema.events.c.id)


class NoListener:
    """What :meth:`SQLiteStorage.listen` returns: nothing to stop."""

    def stop(self) -> None:
        """Nothing to do."""


def _advance(steps: Any, sent: Any, thrown: BaseException | None) -> tuple[bool, Any, Any]:
    """Run a coroutine until it ends, ``(True, result, None)``, or waits, ``(False, awaited, steps)``."""
    try:
        awaited = steps.throw(thrown) if thrown is not None else steps.send(sent)
    except StopIteration as done:
        return True, done.value, None
    return False, awaited, steps


@implementer(ITransaction)
class _WriterTransaction:
    """Statements of a transaction: run at once on the writer thread, or sent there from another."""

    def __init__(self, writer: _Connection) -> None:
        self._writer = writer

    async def fetch_all(self, statement: Statement, params: Mapping[str, Any] | None = None) -> list[Row]:
        if self._writer.on_its_thread():
            return self._writer.rows(statement, params)
        return await self._writer.run(self._writer.rows, statement, params)

    async def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        if self._writer.on_its_thread():
            return self._writer.change(statement, params)
        return await self._writer.run(self._writer.change, statement, params)
