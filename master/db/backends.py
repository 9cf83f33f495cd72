"""Choose the storage backend for a database URL."""

from __future__ import annotations

from master.db.interfaces import IStorage, StorageError
from master.db.migrate import masked_url


def make_storage(url: str, retry_seconds: float | None = None) -> IStorage:
    """Return an unstarted backend for *url*: SQLite for ``sqlite:///``, PostgreSQL for ``postgresql://``.

    *retry_seconds*: how long PostgreSQL calls retry while the server is unreachable (default 30).
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    # a driver suffix (postgresql+psycopg2://) names the same database for SQLAlchemy users
    backend = scheme.split("+", 1)[0]
    if backend == "sqlite":
        from master.db.sqlite import SQLiteStorage

        return SQLiteStorage(url)
    if backend in ("postgresql", "postgres"):
        from master.db.postgres import PostgresStorage

        return PostgresStorage(url) if retry_seconds is None else PostgresStorage(url, retry_seconds=retry_seconds)
    raise StorageError(
        f"unsupported database URL {masked_url(url)}: expected sqlite:///path/to/file.sqlite "
        "or postgresql://user@host/dbname"
    )
