"""The PostgreSQL backend: asynchronous psycopg2 connections through txpostgres.

No threads are involved: txpostgres drives libpq's non-blocking protocol from the reactor.
A small pool of connections serves all statements; each call borrows one connection for
the duration of one statement, one :meth:`PostgresStorage.fetch_many` or one
:meth:`PostgresStorage.transaction`.  A connection found closed (the server restarted, a
network error) is reopened when it is next borrowed, and the call that found it is tried
again on the new connection, with growing pauses for up to ``RETRY_SECONDS`` while the
server is away: a restart of PostgreSQL is a pause for the master, not an error.  (A
statement that fails on a lost connection did not commit, unless the connection was lost
between the server's COMMIT and its answer: that one rare case may run twice.)

Availability: ``database_available`` turns false at the first call that finds the server
unreachable (REST then answers 503 at once instead of waiting) and true again at the first
call or probe that reaches it; while it is false a probe connects every ``PROBE_INTERVAL``
seconds.  Once the server has been away for longer than the retry window, calls fail at once
with :class:`DatabaseUnavailable` instead of each waiting out a window of its own.  Watchers
(:meth:`PostgresStorage.watch_availability`) hear of each change: the engine stops its builds
when an outage outlasts the window and reconciles when the database is back.

Events: :meth:`PostgresStorage.append_events` journals events and NOTIFYs every master's
:meth:`PostgresStorage.listen` connection, which reconnects by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
from sqlalchemy.dialects.postgresql import psycopg2 as pg_dialect
from sqlalchemy.engine import make_url
from twisted.internet import defer, error, main
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import txpostgres
from zope.interface import implementer

from master.db.compiler import StatementCompiler
from master.db.interfaces import (
    DatabaseUnavailable,
    IntegrityError,
    IStorage,
    ITransaction,
    Row,
    Statement,
    StorageError,
    page_total,
)
from master.db.migrate import masked_url

T = TypeVar("T")
log = Logger()

DEFAULT_CONNECT_TIMEOUT = 10.0

# psycopg2 returns bytea as memoryview; SQLite returns bytes.  The data layer should not care.
_BYTEA_OIDS = frozenset(psycopg2.BINARY.values)

# Dead peers (a pulled cable, a paused VM) are noticed by TCP keepalive within about a
# minute instead of the kernel's default two hours; a URL may override these.
_KEEPALIVE = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}

_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE
_POLL_OK = psycopg2.extensions.POLL_OK
_POLL_WRITE = psycopg2.extensions.POLL_WRITE

RETRY_SECONDS = 30.0
"""How long a call keeps retrying while the server cannot be reached (``db_retry_seconds``)."""

PROBE_INTERVAL = 1.0
"""Seconds between two connection attempts while the server is unreachable."""

EVENTS_CHANNEL = "ci_master_events"

# Appending takes a transaction-scoped advisory lock before the id is drawn, so events commit in
# id order on every master: a reader that saw id N has seen every id below N that will ever exist.
_APPEND_EVENT = f"""
WITH appended AS (
    INSERT INTO events (at, masterid, keys, rtype, entity)
    SELECT %(at)s, %(masterid)s, %(keys)s, %(rtype)s, %(entity)s
    FROM (SELECT pg_advisory_xact_lock(7263541)) AS serialized
    RETURNING id
)
SELECT id, pg_notify('{EVENTS_CHANNEL}', id::text) FROM appended
"""


def _is_connection_error(e: BaseException) -> bool:
    """Whether *e* means the server could not be reached or the connection broke (worth a retry)."""
    if isinstance(e, psycopg2.IntegrityError | psycopg2.ProgrammingError | psycopg2.DataError):
        return False
    return isinstance(
        e, psycopg2.OperationalError | psycopg2.InterfaceError | error.ConnectionDone | error.ConnectionLost
        | TimeoutError | error.ConnectError
    )


def connect_kwargs(url: str) -> tuple[dict[str, Any], float]:
    """Turn a ``postgresql://user:pass@host:port/dbname?opt=val`` URL into psycopg2 keywords.

    Query options are passed to libpq as they are (``sslmode``, ``host`` for a socket
    directory, ...).  Also return the connect timeout in seconds, which this backend
    enforces itself: libpq ignores ``connect_timeout`` on non-blocking connections.
    """
    try:
        parsed = make_url(url)
    except Exception as e:
        raise StorageError(f"bad database URL {masked_url(url)}: {e}") from None
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        raise StorageError(
            f"not a PostgreSQL URL: {masked_url(url)} (expected postgresql://user@host/dbname)"
        )
    kwargs: dict[str, Any] = {"application_name": "ci-master", **_KEEPALIVE}
    for key, value in parsed.query.items():
        # a repeated option arrives as a tuple; libpq takes one value, the last wins as in a DSN
        kwargs[key] = value[-1] if isinstance(value, tuple) else value
    for key, part in (
        ("dbname", parsed.database),
        ("user", parsed.username),
        ("password", parsed.password),
        ("host", parsed.host),
        ("port", parsed.port),
    ):
        if part is not None and part != "":
            kwargs[key] = part
    try:
        timeout = float(kwargs.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    except ValueError:
        value = kwargs["connect_timeout"]
        raise StorageError(f"bad connect_timeout in {masked_url(url)}: {value!r}") from None
    if timeout <= 0:  # libpq reads 0 as "wait forever"; a daemon must not
        timeout = DEFAULT_CONNECT_TIMEOUT
    kwargs["connect_timeout"] = str(max(1, int(timeout)))
    return kwargs, timeout


def _message(e: BaseException) -> str:
    """The driver's message on one line (psycopg2 puts DETAIL and HINT on lines of their own)."""
    lines = [" ".join(line.split()) for line in str(e).splitlines() if line.strip()]
    return "; ".join(lines) or type(e).__name__


def _storage_error(e: BaseException, url: str) -> BaseException:
    """Map a driver or connection exception to StorageError; return anything else unchanged."""
    if isinstance(e, psycopg2.IntegrityError):
        return IntegrityError(_message(e))
    if isinstance(e, psycopg2.OperationalError | psycopg2.InterfaceError):
        return StorageError(f"PostgreSQL connection to {url} failed: {_message(e)}")
    if isinstance(e, psycopg2.Error):
        return StorageError(f"PostgreSQL error: {_message(e)}")
    if isinstance(e, error.ConnectionDone | error.ConnectionLost):
        return StorageError(f"lost the connection to PostgreSQL at {url}")
    if isinstance(e, txpostgres.RollbackFailed):
        original = _storage_error(e.originalFailure.value, url)
        return StorageError(f"transaction failed ({original}) and could not be rolled back")
    return e


def _rows(cursor: Any) -> list[Row]:
    """The rows of the statement the cursor just ran, as dicts."""
    description = cursor.description
    if description is None:
        return []
    names = [column.name for column in description]
    binary = [i for i, column in enumerate(description) if column.type_code in _BYTEA_OIDS]
    rows = cursor.fetchall()
    if binary:
        rows = [list(row) for row in rows]
        for row in rows:
            for i in binary:
                if row[i] is not None:
                    row[i] = bytes(row[i])
    return [dict(zip(names, row)) for row in rows]  # noqa: B905 (a row has every column; strict costs a page)


class _Connection(txpostgres.Connection):
    """A txpostgres connection that can also run a callable on a bare cursor.

    ``runQuery`` hides the column names and ``runOperation`` the row count, and
    ``runInteraction`` costs a BEGIN and a COMMIT round trip: a single statement runs in
    its own implicit transaction anyway.
    """

    def runCursor(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """Run ``fn(cursor, *args)`` with the connection to itself; it may return a Deferred."""
        return self.lock.run(lambda: fn(self.cursor(), *args))

    def runInteraction(self, interaction: Callable[..., Any], *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        """Like txpostgres' ``runInteraction``, minus the ROLLBACK on a connection that is gone.

        txpostgres logs a traceback when that ROLLBACK fails, and reports RollbackFailed
        instead of what went wrong; but a server that lost the connection has already
        ended its transaction, so the failure of the interaction itself is the news.
        """
        return self.lock.run(self._interact, "BEGIN", interaction, *args, **kwargs)

    def runSnapshotInteraction(
        self, interaction: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> defer.Deferred[Any]:
        """``runInteraction`` in which every statement sees the same snapshot.

        READ COMMITTED takes a snapshot per statement; a page and the count of its
        collection must agree, as they do in SQLite's single read transaction.  Naming the
        level in the BEGIN saves a round trip over a separate SET TRANSACTION.
        """
        return self.lock.run(
            self._interact, "BEGIN ISOLATION LEVEL REPEATABLE READ", interaction, *args, **kwargs
        )

    def _interact(
        self, begin: str, interaction: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> defer.Deferred[Any]:
        cursor = self.cursor()
        d = cursor.execute(begin)
        d.addCallback(interaction, *args, **kwargs)

        def commit(result: Any) -> defer.Deferred[Any]:
            return cursor.execute("COMMIT").addCallback(lambda _: result)

        def rollback(failure: Any) -> Any:
            raw = self.pollable()
            if raw is None or raw.closed:
                return failure
            done = defer.maybeDeferred(cursor.execute, "ROLLBACK")
            done.addErrback(lambda _: defer.fail(txpostgres.RollbackFailed(self, failure)))
            return done.addCallback(lambda _: failure)

        d.addCallback(commit)
        return d.addErrback(rollback)

    _reading: tuple[Any, defer.Deferred[list[Row]]] | None = None
    """The cursor and Deferred of the :meth:`read_rows` in flight."""

    def read_rows(self, sql: str, args: Any) -> defer.Deferred[list[Row]]:
        """Run one statement and fire with its rows, in one round trip.

        As txpostgres' cursors do, the connection is off the reactor whenever libpq may
        close its socket (a stale descriptor would stay in the reactor's books otherwise),
        and back on it, for notifications, once idle; unlike them the result is handed over
        as soon as it is in, not on the reactor's next turn, and through one Deferred.  The
        caller has the connection to itself (the pool lends it), so no lock is taken.
        """
        raw = self._connection
        self.reactor.removeReader(self)
        try:
            cursor = raw.cursor()
            cursor.execute(sql, args)
        except Exception:
            self._idle()
            return defer.fail()
        done: defer.Deferred[list[Row]] = defer.Deferred()
        self._reading = (cursor, done)
        self._advance()
        return done

    def _idle(self) -> None:
        if not self._connection.closed:
            self.reactor.addReader(self)

    def _advance(self) -> None:
        assert self._reading is not None  # called by read_rows and doRead while a read is in flight
        cursor, done = self._reading
        try:
            state = self._connection.poll()
            if state == _POLL_OK:
                rows = _rows(cursor)
        except Exception:
            self._reading = None
            self._idle()
            done.errback()
            return
        if state == _POLL_OK:
            self._reading = None
            self._idle()
            done.callback(rows)
        elif state == _POLL_WRITE:
            self.reactor.addWriter(self)
        else:
            self.reactor.addReader(self)

    def doRead(self) -> Any:
        """Advance a read in flight; else report a connection the server closed as lost, not as an error."""
        if self._reading is not None:
            self.reactor.removeReader(self)
            self._advance()
            return None
        try:
            return super().doRead()
        except psycopg2.Error:
            # the reactor then calls connectionLost, which is all that is needed: the pool
            # reopens closed connections when they are next borrowed
            return main.CONNECTION_LOST

    def doWrite(self) -> Any:
        """Advance a read in flight whose query could not be sent at once."""
        if self._reading is not None:
            self.reactor.removeWriter(self)
            self._advance()
            return None
        return super().doWrite()

    def connectionLost(self, reason: Any) -> None:
        """Fail a read in flight, then let txpostgres clean up."""
        if self._reading is not None:
            _, done = self._reading
            self._reading = None
            done.errback(reason)
        super().connectionLost(reason)


class _Pool(txpostgres.ConnectionPool):
    """txpostgres' pool, lending a whole connection and reopening closed ones on the way."""

    connectionFactory = _Connection

    def __init__(self, size: int, timeout: float, **connkw: Any) -> None:
        super().__init__(None, min=size, **connkw)
        self.size = size
        self.connect_timeout = timeout

    async def connect_standalone(self, conn: _Connection) -> None:
        """Open *conn*, a connection outside the pool, with the pool's settings."""
        await self.connect(conn, discard=False)

    async def connect(self, conn: _Connection, discard: bool = True) -> None:
        """Open *conn*, giving up after ``connect_timeout`` seconds."""
        from twisted.internet import reactor

        timed_out = False

        def give_up() -> None:
            nonlocal timed_out
            timed_out = True
            # closing errbacks the connect Deferred, which ends the wait below
            conn.close()

        d = conn.connect(*self.connargs, **self.connkw)
        timer = reactor.callLater(self.connect_timeout, give_up)
        try:
            await d
        except Exception:
            if discard:
                self.discard(conn)
            if timed_out:
                raise TimeoutError(f"no answer within {self.connect_timeout:g}s") from None
            raise
        finally:
            if timer.active():
                timer.cancel()

    @staticmethod
    def is_open(conn: _Connection) -> bool:
        """Whether *conn* has a live libpq connection."""
        raw = conn.pollable()
        return raw is not None and not raw.closed

    @staticmethod
    def discard(conn: _Connection) -> None:
        """Close *conn* if it is open; it is reopened when next borrowed."""
        if conn.pollable() is not None:
            conn.close()

    def close(self) -> None:
        """Close every connection (txpostgres' own close fails on never-opened ones)."""
        for conn in self.connections:
            self.discard(conn)

    def run_with_connection(self, fn: Callable[[_Connection], defer.Deferred[T]]) -> defer.Deferred[T]:
        """Lend one connection to ``fn``, waiting for a free one if all are busy."""
        semaphore = self._semaphore
        if semaphore.tokens > 0 and not semaphore.waiting:
            # the common case, an open connection free now, without the semaphore's and a
            # coroutine's Deferreds: each read pays for these layers in CPU
            conn = self.connections.pop()
            if self.is_open(conn):
                semaphore.tokens -= 1
                return defer.maybeDeferred(fn, conn).addBoth(self._returned, conn)
            self.connections.add(conn)  # to be reopened on the way below
        return semaphore.run(lambda: defer.ensureDeferred(self._lend(fn)))

    def _returned(self, result: T, conn: _Connection) -> T:
        """A connection lent by the direct path of :meth:`run_with_connection` is back: pass *result* on."""
        self._give_back(conn)
        self._semaphore.release()
        return result

    async def _lend(self, fn: Callable[[_Connection], defer.Deferred[T]]) -> T:
        conn = self.connections.pop()
        try:
            if not self.is_open(conn):
                await self.connect(conn)
            return await fn(conn)
        finally:
            self._give_back(conn)

    def _give_back(self, conn: _Connection) -> None:
        # A connection left inside a transaction (a failed rollback, a cancelled
        # interaction) would leak that transaction into the next borrower's work.
        raw = conn.pollable()
        if raw is not None and not raw.closed and raw.get_transaction_status() != _IDLE:
            self.discard(conn)
        self.connections.add(conn)


@implementer(ITransaction)
class _Transaction:
    """Statements on the cursor of one interaction, one at a time."""

    def __init__(self, cursor: Any, storage: PostgresStorage) -> None:
        self._cursor = cursor
        self._storage = storage
        # libpq runs one query at a time per connection; work that gathers several
        # statements concurrently gets them queued instead of a driver error
        self._lock = defer.DeferredLock()
        self.done = False

    async def _run(self, statement: Statement, params: Mapping[str, Any] | None) -> Any:
        sql, args = self._storage.compiler.render(statement, params)
        async with self._lock:
            if self.done:
                raise StorageError("transaction already finished: statements must run inside its work")
            try:
                await self._cursor.execute(sql, args)
            except Exception as e:
                raise self._storage.storage_error(e) from None
            return self._cursor

    async def fetch_all(self, statement: Statement, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run a statement returning rows in this transaction."""
        return _rows(await self._run(statement, params))

    async def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement in this transaction; return the number of rows it changed."""
        return (await self._run(statement, params)).rowcount


@implementer(IStorage)
class PostgresStorage:
    """:class:`IStorage` on PostgreSQL, for sites with several masters or a lot of data."""

    dialect_name = "postgresql"
    round_trips_cost = True  # reads prefer one statement to several (master.data.query.paged)

    def __init__(
        self, url: str, pool_size: int = 4, connect_timeout: float | None = None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        if pool_size < 1:
            raise StorageError(f"PostgreSQL pool size must be at least 1, got {pool_size}")
        self.retry_seconds = retry_seconds
        self.database_available = True
        self.unavailable_since: float | None = None  # reactor time of the first failure of this outage
        self._watchers: list[Callable[[bool], Any]] = []
        self._probe: Any = None
        self.url = masked_url(url)
        kwargs, timeout = connect_kwargs(url)
        if connect_timeout is not None:
            timeout = connect_timeout
        self.pool_size = pool_size
        self.compiler = StatementCompiler(pg_dialect.dialect())
        self._pool = _Pool(pool_size, timeout, **kwargs)
        self._running = False
        self._stopping = False

    def storage_error(self, e: BaseException) -> BaseException:
        """The exception to raise for *e*: StorageError for driver and connection errors."""
        return _storage_error(e, self.url)

    async def start(self) -> None:
        """Open all pool connections; raise StorageError naming the URL if any cannot be opened."""
        pool = self._pool
        # Twisted types each result as the Deferreds' value; a failed one gives its Failure
        results: list[tuple[bool, Any]] = await defer.DeferredList(
            [defer.ensureDeferred(pool.connect(conn)) for conn in pool.connections], consumeErrors=True
        )
        failures = [result for ok, result in results if not ok and isinstance(result, Failure)]
        if failures:
            pool.close()
            reason = failures[0].value
            # libpq's first line says what failed; the rest is advice like "Is the server running?"
            text = _message(reason).split("; ")[0] if isinstance(reason, psycopg2.Error) else str(reason)
            raise StorageError(f"database unreachable at {self.url}: {text or type(reason).__name__}")
        self._running = True

    async def stop(self) -> None:
        """Wait until no connection is lent out, then close them all."""
        if self._stopping:
            return
        self._stopping = True
        # holding every token of the pool's semaphore means no statement is running;
        # the tokens are never given back, and _call refuses new work once stopping
        semaphore = self._pool._semaphore
        for _ in range(self.pool_size):
            await semaphore.acquire()
        self._stop_probe()
        self._pool.close()
        self._running = False

    # -- availability -----------------------------------------------------------------------

    def watch_availability(self, watcher: Callable[[bool], Any]) -> Callable[[], None]:
        """Call *watcher(available)* whenever the server becomes unreachable or reachable again."""
        self._watchers.append(watcher)
        return lambda: self._watchers.remove(watcher) if watcher in self._watchers else None

    @property
    def outage_outlasted_retries(self) -> bool:
        """Whether the server has been unreachable for longer than the retry window."""
        from twisted.internet import reactor

        since = self.unavailable_since
        return since is not None and reactor.seconds() - since >= self.retry_seconds

    def _unreachable(self, e: BaseException) -> None:
        if not self.database_available or self._stopping:
            return
        from twisted.internet import reactor, task

        self.database_available = False
        self.unavailable_since = reactor.seconds()
        log.warn("PostgreSQL at {url} is unreachable ({e}); REST answers 503 until it is back", url=self.url,
                 e=_message(e))
        self._probe = task.LoopingCall(lambda: defer.ensureDeferred(self._probe_once()))
        self._probe.start(PROBE_INTERVAL, now=False)
        self._tell(False)

    def _reachable(self) -> None:
        if self.database_available:
            return
        from twisted.internet import reactor

        away = reactor.seconds() - (self.unavailable_since or reactor.seconds())
        self.database_available = True
        self.unavailable_since = None
        self._stop_probe()
        log.info("PostgreSQL at {url} is reachable again after {s:.1f}s", url=self.url, s=away)
        self._tell(True)

    def _tell(self, available: bool) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(available)
            except Exception:
                log.failure("a database availability watcher failed")

    def _stop_probe(self) -> None:
        if self._probe is not None and self._probe.running:
            self._probe.stop()
        self._probe = None

    async def _probe_once(self) -> None:
        """Try a connection of its own (the pool's may all be busy retrying); reachable if it answers."""
        conn = _Connection()
        try:
            await self._pool.connect_standalone(conn)
            await conn.runOperation("SELECT 1")
        except Exception:
            return
        finally:
            _Pool.discard(conn)
        if not self._stopping:
            self._reachable()

    async def _call(self, fn: Callable[[_Connection], defer.Deferred[T]]) -> T:
        from twisted.internet import reactor

        if self._stopping or not self._running:
            raise StorageError(f"storage for {self.url} is not running")
        if self.outage_outlasted_retries:
            raise self._unavailable()
        deadline = reactor.seconds() + self.retry_seconds
        pause = 0.1
        while True:
            try:
                result = await _shielded(self._pool.run_with_connection(fn))
            except Exception as e:
                if _is_connection_error(e):
                    self._unreachable(e)
                    if not self._stopping and reactor.seconds() + pause < deadline:
                        await deferLater(reactor, pause, lambda: None)
                        pause = min(pause * 2, 2.0)
                        continue
                    if not self._stopping:
                        raise self._unavailable(e) from None
                mapped = self.storage_error(e)
                if mapped is e:
                    raise
                raise mapped from None
            if not self.database_available:
                self._reachable()
            return result

    def _unavailable(self, e: BaseException | None = None) -> DatabaseUnavailable:
        why = f": {_message(e)}" if e is not None else ""
        return DatabaseUnavailable(
            f"the database (PostgreSQL at {self.url}) has been unreachable for over {self.retry_seconds:g}s{why}"
        )

    async def append_events(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Journal event rows (at, masterid, keys, rtype, entity) in order, NOTIFY listeners; return their ids.

        One statement per row: each takes the journal's lock only for its own short transaction.
        """
        ids = []
        for values in rows:

            def run(cursor: Any, values: Mapping[str, Any] = values) -> defer.Deferred[list[Row]]:
                return cursor.execute(_APPEND_EVENT, dict(values)).addCallback(_rows)

            def lend(conn: _Connection, run: Callable[[Any], defer.Deferred[list[Row]]] = run) -> defer.Deferred[Any]:
                return conn.runCursor(run)

            ids.append((await self._call(lend))[0]["id"])
        return ids

    def listen(self, callback: Callable[[], Any]) -> EventListener:
        """Call *callback()* whenever any master appends events (and after each reconnection)."""
        listener = EventListener(self, callback)
        listener.start()
        return listener

    async def _fetch_one(self, sql: str, args: Any) -> list[Row]:
        return await self._call(lambda conn: conn.read_rows(sql, args))

    async def fetch_all(self, statement: Statement, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Run one statement in its own implicit transaction and return its rows."""
        return await self._fetch_one(*self.compiler.render(statement, params))

    async def fetch_many(
        self, statements: Sequence[tuple[Statement, Mapping[str, Any] | None]]
    ) -> list[list[Row]]:
        """Run several reads in one interaction on one connection, seeing one snapshot."""
        rendered = [self.compiler.render(statement, params) for statement, params in statements]
        if len(rendered) <= 1:  # one statement is its own snapshot: spare BEGIN and COMMIT
            return [await self._fetch_one(sql, args) for sql, args in rendered]

        async def run_all(cursor: Any) -> list[list[Row]]:
            results = []
            for sql, args in rendered:
                await cursor.execute(sql, args)
                results.append(_rows(cursor))
            return results

        def interaction(cursor: Any) -> defer.Deferred[list[list[Row]]]:
            return defer.ensureDeferred(run_all(cursor))

        return await self._call(lambda conn: conn.runSnapshotInteraction(interaction))

    async def fetch_page(
        self, page: Statement, count: Statement, params: Mapping[str, Any], limit: int, offset: int
    ) -> tuple[list[Row], int]:
        """Run the page and, only when the page cannot tell the total, the count, in one snapshot."""
        page_sql, page_args = self.compiler.render(page, params)

        async def run_page(cursor: Any) -> tuple[list[Row], int]:
            await cursor.execute(page_sql, page_args)
            rows = _rows(cursor)
            total = page_total(len(rows), limit, offset)
            if total is None:
                await cursor.execute(*self.compiler.render(count, params))
                total = _rows(cursor)[0]["total"]
            return rows, total

        def interaction(cursor: Any) -> defer.Deferred[tuple[list[Row], int]]:
            return defer.ensureDeferred(run_page(cursor))

        return await self._call(lambda conn: conn.runSnapshotInteraction(interaction))

    async def execute(self, statement: Statement, params: Mapping[str, Any] | None = None) -> int:
        """Run one write statement in its own implicit transaction; return its row count."""
        sql, args = self.compiler.render(statement, params)

        def run(cursor: Any) -> defer.Deferred[int]:
            return cursor.execute(sql, args).addCallback(lambda cur: cur.rowcount)

        return await self._call(lambda conn: conn.runCursor(run))

    async def transaction(self, work: Callable[[ITransaction], Awaitable[T]]) -> T:
        """Run ``work`` inside ``runInteraction``: committed if it returns, rolled back if it raises."""

        async def interact(cursor: Any) -> T:
            txn = _Transaction(cursor, self)
            try:
                return await work(txn)
            finally:
                txn.done = True

        def interaction(cursor: Any) -> defer.Deferred[T]:
            return defer.ensureDeferred(interact(cursor))

        return await self._call(lambda conn: conn.runInteraction(interaction))


class EventListener:
    """A connection of its own that LISTENs for appended events, reopened whenever it breaks.

    Notifications are hints: the callback reads the journal after the last id it saw, so
    several notifications may be answered by one read, and after a reconnection the
    callback runs once to catch up on what was appended while the connection was down.
    """

    CHECK_INTERVAL = 2.0

    def __init__(self, storage: PostgresStorage, callback: Callable[[], Any]) -> None:
        self._storage = storage
        self._callback = callback
        self._conn: _Connection | None = None
        self._checker: Any = None
        self._checking = False

    def start(self) -> None:
        """Connect and keep checking the connection."""
        from twisted.internet import task

        self._checker = task.LoopingCall(lambda: defer.ensureDeferred(self._check()))
        self._checker.start(self.CHECK_INTERVAL, now=True)

    def stop(self) -> None:
        """Stop listening and close the connection."""
        if self._checker is not None and self._checker.running:
            self._checker.stop()
        if self._conn is not None:
            _Pool.discard(self._conn)
            self._conn = None

    def _notified(self, notify: Any) -> None:
        self._callback()

    async def _check(self) -> None:
        if self._checking:
            return
        self._checking = True
        try:
            conn = self._conn
            if conn is not None and _Pool.is_open(conn):
                try:
                    await conn.runOperation("SELECT 1")
                    return
                except Exception:
                    _Pool.discard(conn)
            conn = self._conn = _Connection()
            pool = self._storage._pool
            try:
                await pool.connect_standalone(conn)
                conn.addNotifyObserver(self._notified)
                await conn.runOperation(f"LISTEN {EVENTS_CHANNEL}")
            except Exception as e:
                _Pool.discard(conn)
                self._conn = None
                if _is_connection_error(e):
                    self._storage._unreachable(e)  # said at once, even by a master with nothing to write
                return  # the next check tries again
            self._storage._reachable()
            self._callback()  # catch up on what was appended while not listening
        finally:
            self._checking = False


def _shielded(work: defer.Deferred[T]) -> defer.Deferred[T]:
    """A Deferred firing with *work*'s result that can be cancelled without cancelling *work*.

    A client hanging up cancels its request's Deferreds; cancelling a query in flight would
    hand its connection back to the pool while txpostgres still uses it, breaking the
    requests of others.  The query runs to its end instead, and its result is dropped.
    """
    result: defer.Deferred[T] = defer.Deferred()
    work.chainDeferred(result)
    return result
